import EchodSystem
import Glibc

/// Per-source-address token buckets in a table of fixed size: allocated once, never grown, whatever the number of
/// sources (a spoofed flood can bring millions).
///
/// Set-associative, like a CPU cache: an address hashes (keyed with a per-table random seed, so that a sender cannot
/// pick addresses that all land in one set) to a set of ``ways`` entries; a new source takes a free entry of its set
/// or evicts the set's least recently seen one. Lookup and insert cost at most ``ways`` comparisons, with no
/// pointers, no deletion and no resizing. An evicted source comes back with a full bucket: the price of bounded
/// memory, which the global cap covers (``DatagramGuard``).
///
/// The memory is `calloc`ed: the kernel maps zero pages lazily, so a large table costs resident memory only where
/// sources have landed. One owner (the loop serving the socket); not thread-safe.
package struct SourceTable {
    /// Entries per set.
    package static let ways = 8
    /// Bytes per entry, for the documentation of `udp.source_table_size`.
    package static var entryBytes: Int { MemoryLayout<Entry>.stride }

    struct Entry {
        var high: UInt64
        var low: UInt64
        var bucket: TokenBucket
        /// 0: free; 1: IPv4; 2: IPv6.
        var family: UInt8
    }

    /// Entries (a multiple of ``ways``, at most the size asked for).
    package let capacity: Int
    private let sets: Int
    private let seed: UInt64
    private let entries: UnsafeMutablePointer<Entry>
    /// Entries in use, for tests and the bound check.
    package private(set) var count = 0

    /// A table of at most `size` entries (at least one set).
    package init(size: Int, seed: UInt64) {
        sets = max(1, size / Self.ways)
        capacity = sets * Self.ways
        self.seed = seed
        guard let memory = calloc(capacity, MemoryLayout<Entry>.stride) else {
            fatalError("cannot allocate the UDP source table (\(capacity) entries)")
        }
        entries = memory.bindMemory(to: Entry.self, capacity: capacity)
    }

    /// Frees the table. Call once, when the owner is done with it.
    package func deallocate() { free(entries) }

    /// Spends one token of `address`'s bucket (created full if new): whether it had one.
    @inline(__always)
    package mutating func take(_ address: HostKey, _ rate: TokenBucket.Rate, now: Int64) -> Bool {
        let family: UInt8 = address.family == .ipv4 ? 1 : 2
        let base = entries + set(of: address) * Self.ways
        var victim = base
        var i = 0
        while i < Self.ways {
            let e = base + i
            i += 1
            if e.pointee.family == family && e.pointee.high == address.high && e.pointee.low == address.low {
                return e.pointee.bucket.take(1, rate, now: now)
            }
            // Entries are filled in order and never freed, so the first free one ends the set's used part.
            if e.pointee.family == 0 {
                victim = e
                break
            }
            if e.pointee.bucket.updated < victim.pointee.bucket.updated { victim = e }
        }
        if victim.pointee.family == 0 { count += 1 }
        victim.pointee = Entry(high: address.high, low: address.low, bucket: TokenBucket(full: rate, now: now), family: family)
        return victim.pointee.bucket.take(1, rate, now: now)
    }

    /// The number of entries in use, counted (tests: it must equal ``count`` and never pass ``capacity``).
    package func countInUse() -> Int {
        var n = 0
        for i in 0..<capacity where entries[i].family != 0 { n += 1 }
        return n
    }

    @inline(__always)
    private func set(of address: HostKey) -> Int {
        // Two rounds of a 64-bit multiply-xorshift mix (as in splitmix64/wyhash), keyed by the seed.
        var h = (address.high ^ seed) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        h = (h ^ address.low ^ UInt64(address.family.rawValue)) &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 32
        return Int(h % UInt64(sets))
    }
}
