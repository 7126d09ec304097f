import Glibc

/// The bytes every connection sends, so that every echoed byte can be checked without keeping a copy of what was
/// sent: a table of seeded pseudo-random bytes with a prime period, read at `(start + stream offset) mod period`.
///
/// Each connection starts at its own position, so data delivered to the wrong connection, lost, duplicated or
/// reordered fails the comparison unless the shift is an exact multiple of the period (64 KiB). The table is
/// `period + maxChunk` long so that any chunk up to `maxChunk` bytes is contiguous: a write sends straight from
/// it and a read is checked with one `memcmp`, with no copy and no allocation per message. Shared read-only by
/// every loop thread.
final class BenchPattern: @unchecked Sendable {
    /// Largest prime below 2^16: the table stays in the L2 cache.
    static let period = 65_521
    /// The most bytes one `write` or `read` handles.
    let maxChunk: Int
    private let bytes: UnsafeMutablePointer<UInt8>
    private let length: Int

    init(maxChunk: Int, seed: UInt64 = 0x6563_686F_6462_656E) {
        self.maxChunk = maxChunk
        length = Self.period + maxChunk
        bytes = .allocate(capacity: length)
        var state = seed
        for i in 0..<Self.period {
            // splitmix64
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            bytes[i] = UInt8(truncatingIfNeeded: z ^ (z >> 31))
        }
        for i in Self.period..<length { bytes[i] = bytes[i % Self.period] }
    }

    deinit { bytes.deallocate() }

    /// Where connection number `id` starts its stream (distinct for the first `period` connections).
    /// `round` varies it per connection in `connect` mode.
    @inline(__always)
    static func start(id: Int, round: UInt64 = 0) -> UInt64 {
        (UInt64(id) &* 7_919 &+ round &* 104_729) % UInt64(period)
    }

    /// The byte at stream offset `offset` of a stream starting at `start`, and the next `maxChunk - 1` bytes.
    @inline(__always)
    func pointer(start: UInt64, offset: UInt64) -> UnsafeMutablePointer<UInt8> {
        bytes + Int((start &+ offset) % UInt64(Self.period))
    }

    /// The byte at stream offset `offset`.
    func byte(start: UInt64, offset: UInt64) -> UInt8 {
        pointer(start: start, offset: offset).pointee
    }
}
