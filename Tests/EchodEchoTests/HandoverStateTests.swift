import EchodEcho
import EchodSystem
import Foundation
import Testing

@Suite("Handover state codec")
struct HandoverStateTests {
    static let maxPending = 256 * 1024

    static func decode(_ bytes: [UInt8], maxPending: Int = maxPending) throws(HandoverStateError) -> [ConnectionSnapshot] {
        // withUnsafeBytes rethrows untyped errors: the result carries the typed one out.
        try bytes.withUnsafeBytes { raw in Result { () throws(HandoverStateError) in try HandoverState.decode(raw, maxPending: maxPending) } }.get()
    }

    /// The error decoding `bytes` gives; records an issue when it decodes.
    static func failure(_ bytes: [UInt8], maxPending: Int = maxPending, sourceLocation: SourceLocation = #_sourceLocation) -> HandoverStateError? {
        do {
            let decoded = try decode(bytes, maxPending: maxPending)
            Issue.record("decoded \(decoded.count) records from \(bytes.count) bytes", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    /// Snapshot `i` of a varied set: every family, counters and times over their whole range, prefixes and pending
    /// bytes of many lengths (0 included).
    static func snapshot(_ i: Int) -> ConnectionSnapshot {
        let h = UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15
        let families: [SocketAddress.Family] = [.ipv4, .ipv6, .unix]
        let peer = SocketAddress(family: families[i % 3], port: UInt16(truncatingIfNeeded: h >> 16), high: h, low: ~h)
        let proxy = i % 2 == 0 ? .unspecified : SocketAddress(family: families[(i + 1) % 3], port: UInt16(i), high: h >> 3, low: h << 5)
        return ConnectionSnapshot(
            inode: h, flags: UInt16(truncatingIfNeeded: h >> 40), bytesIn: h >> 1, bytesOut: h >> 2, openedAt: Int64(bitPattern: h),
            peer: peer, proxy: proxy, prefix: (0..<(i * 7) % 50).map { UInt8(truncatingIfNeeded: $0 &+ i) },
            pending: (0..<(i * 131) % 3000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) })
    }

    /// Offset of record `index`'s first byte in `encode(snapshots)`.
    static func offset(ofRecord index: Int, in snapshots: [ConnectionSnapshot]) -> Int {
        snapshots.prefix(index).reduce(HandoverState.headerSize) { $0 + HandoverState.minimumRecordSize + $1.prefix.count + $1.pending.count }
    }

    static func setU32(_ value: UInt32, at offset: Int, in bytes: inout [UInt8]) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }

    // Offsets inside a record (the format in HandoverState's doc comment).
    static let peerFamily = 34
    static let proxyFamily = 34 + 19
    static let prefixLength = 72

    @Test func emptyListIsTheHeaderAlone() throws {
        let bytes = HandoverState.encode([])
        #expect(bytes == Array("ECHODHS1".utf8) + [1, 0, 0, 0] + [0, 0, 0, 0])
        #expect(try Self.decode(bytes).isEmpty)
    }

    /// The layout the doc comment promises, byte for byte: little-endian integers, 19-byte addresses, u32 lengths.
    @Test func oneRecordLayout() throws {
        let s = ConnectionSnapshot(
            inode: 0x0102_0304_0506_0708, flags: 0x0A0B, bytesIn: 5, bytesOut: 6, openedAt: -2,
            peer: SocketAddress(family: .ipv6, port: 0x1F90, high: 0x11, low: 0x22), proxy: .unspecified, prefix: [0x41, 0x20],
            pending: [0xFF])
        let bytes = HandoverState.encode([s])
        let le64 = { (v: UInt64) in (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        var expected = Array("ECHODHS1".utf8) + [1, 0, 0, 0, 1, 0, 0, 0]
        expected += le64(0x0102_0304_0506_0708) + [0x0B, 0x0A] + le64(5) + le64(6) + le64(UInt64(bitPattern: -2))
        expected += [1, 0x90, 0x1F] + le64(0x11) + le64(0x22)
        expected += [0, 0, 0] + le64(0) + le64(0)
        expected += [2, 0, 0, 0, 0x41, 0x20, 1, 0, 0, 0, 0xFF]
        #expect(bytes == expected)
        #expect(bytes.count == HandoverState.headerSize + HandoverState.minimumRecordSize + 3)
        #expect(bytes[HandoverState.headerSize + Self.peerFamily] == 1 && bytes[HandoverState.headerSize + Self.prefixLength] == 2)
        #expect(try Self.decode(bytes) == [s])
    }

    @Test func manyRecordsRoundTrip() throws {
        let snapshots = (0..<1000).map(Self.snapshot)
        let bytes = HandoverState.encode(snapshots)
        #expect(bytes.count == Self.offset(ofRecord: snapshots.count, in: snapshots))
        #expect(try Self.decode(bytes) == snapshots)
    }

    @Test func boundsAreInclusive() throws {
        var s = Self.snapshot(1)
        s.prefix = [UInt8](repeating: 0x7A, count: HandoverState.maxPrefix)
        s.pending = [UInt8](repeating: 0x55, count: 4096)
        let bytes = HandoverState.encode([s])
        #expect(try Self.decode(bytes, maxPending: 4096) == [s])
        #expect(Self.failure(bytes, maxPending: 4095)?.reason == .tooLong(.pending, length: 4096, limit: 4095))
        s.pending = []
        #expect(try Self.decode(HandoverState.encode([s]), maxPending: 0) == [s])
    }

    /// Every cut of a valid state is refused, at or before the cut, as a truncation (or, when the cut leaves too
    /// few bytes for the records counted, at the count; in the magic, as a bad magic).
    @Test func everyTruncationIsRefused() {
        let snapshots = (0..<4).map(Self.snapshot) + [Self.snapshot(9)]
        let bytes = HandoverState.encode(snapshots)
        for cut in 0..<bytes.count {
            guard let error = Self.failure(Array(bytes[0..<cut])) else { continue }
            #expect(error.offset <= cut, "cut \(cut): \(error)")
            switch error.reason {
            case .badMagic: #expect(cut < 8, "cut \(cut)")
            case .truncated(let needed, let left): #expect(left == cut - error.offset && needed > left, "cut \(cut): \(error)")
            case .countTooLarge: #expect(error.offset == 12, "cut \(cut): \(error)")
            default: Issue.record("cut \(cut): \(error)")
            }
        }
    }

    @Test func badMagicIsRefused() {
        let bytes = HandoverState.encode([Self.snapshot(0)])
        for i in 0..<8 {
            var bad = bytes
            bad[i] ^= 0x20
            #expect(Self.failure(bad) == HandoverStateError(offset: 0, reason: .badMagic))
        }
        #expect(Self.failure([]) == HandoverStateError(offset: 0, reason: .badMagic))
    }

    @Test(arguments: [0, 2, 0x0100_0000, UInt32.max])
    func otherVersionsAreRefused(version: UInt32) {
        var bytes = HandoverState.encode([Self.snapshot(0)])
        Self.setU32(version, at: 8, in: &bytes)
        #expect(Self.failure(bytes) == HandoverStateError(offset: 8, reason: .unsupportedVersion(version)))
    }

    /// A count the bytes cannot hold is refused at the count, before anything is reserved for it.
    @Test func countOverTheBytesLeftIsRefused() {
        var bytes = HandoverState.encode([])
        Self.setU32(UInt32.max, at: 12, in: &bytes)
        #expect(Self.failure(bytes) == HandoverStateError(offset: 12, reason: .countTooLarge(count: Int(UInt32.max), bytesLeft: 0)))
        var one = HandoverState.encode([Self.snapshot(0)])
        Self.setU32(2, at: 12, in: &one)
        #expect(Self.failure(one)?.reason == .countTooLarge(count: 2, bytesLeft: HandoverState.minimumRecordSize))
    }

    @Test func lengthsOverTheirBoundsAreRefused() {
        var s = Self.snapshot(0)
        s.prefix = []
        s.pending = []
        let base = HandoverState.encode([s])
        let prefixAt = HandoverState.headerSize + Self.prefixLength
        // One byte over maxPrefix, with the bytes there: the bound refuses it, not the input's end.
        var prefix = base
        Self.setU32(UInt32(HandoverState.maxPrefix + 1), at: prefixAt, in: &prefix)
        prefix.insert(contentsOf: [UInt8](repeating: 0x41, count: HandoverState.maxPrefix + 1), at: prefixAt + 4)
        #expect(Self.failure(prefix) == HandoverStateError(offset: prefixAt, reason: .tooLong(.prefix, length: 2049, limit: 2048)))
        // A huge pending length with no bytes after it: over maxPending, or (with the largest maxPending) past the end.
        var huge = base
        Self.setU32(UInt32.max, at: prefixAt + 4, in: &huge)
        #expect(
            Self.failure(huge, maxPending: Int(UInt32.max))
                == HandoverStateError(offset: prefixAt + 8, reason: .truncated(needed: Int(UInt32.max), bytesLeft: 0)))
        #expect(
            Self.failure(huge) == HandoverStateError(offset: prefixAt + 4, reason: .tooLong(.pending, length: Int(UInt32.max), limit: Self.maxPending)))
        // Within the bound but past the end.
        var past = base
        Self.setU32(10, at: prefixAt, in: &past)
        #expect(Self.failure(past + [1, 2, 3]) == HandoverStateError(offset: prefixAt + 4, reason: .truncated(needed: 10, bytesLeft: 7)))
    }

    @Test(arguments: [3, 4, 0x80, 0xFF] as [UInt8])
    func unknownAddressFamiliesAreRefused(family: UInt8) {
        let snapshots = [Self.snapshot(0), Self.snapshot(1)]
        let bytes = HandoverState.encode(snapshots)
        let second = Self.offset(ofRecord: 1, in: snapshots)
        for at in [HandoverState.headerSize + Self.peerFamily, second + Self.peerFamily, second + Self.proxyFamily] {
            var bad = bytes
            bad[at] = family
            #expect(Self.failure(bad) == HandoverStateError(offset: at, reason: .badFamily(family)))
        }
    }

    @Test func duplicateInodeIsRefused() {
        var snapshots = (0..<3).map(Self.snapshot)
        snapshots[2].inode = snapshots[0].inode
        let at = Self.offset(ofRecord: 2, in: snapshots)
        #expect(Self.failure(HandoverState.encode(snapshots)) == HandoverStateError(offset: at, reason: .duplicateInode(snapshots[0].inode)))
    }

    @Test func bytesAfterTheLastRecordAreRefused() {
        for snapshots in [[], [Self.snapshot(3)]] {
            let bytes = HandoverState.encode(snapshots)
            #expect(Self.failure(bytes + [0]) == HandoverStateError(offset: bytes.count, reason: .trailingBytes(1)))
            #expect(Self.failure(bytes + bytes)?.reason == .trailingBytes(bytes.count))
        }
    }

    /// The fuzz seeds (Fuzz/corpus/FuzzHandoverState, written from the format's description, not by `encode`): the
    /// valid ones decode and encode back to the same bytes, the `bad-*` ones are refused.
    @Test func fuzzSeedsAgreeWithTheCodec() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let folder = repo.appendingPathComponent("Fuzz/corpus/FuzzHandoverState")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        #expect(names.count >= 10)
        for name in names {
            let bytes = [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
            if name.hasPrefix("bad-") {
                #expect(Self.failure(bytes) != nil, "\(name)")
            } else {
                let snapshots = try Self.decode(bytes)
                #expect(HandoverState.encode(snapshots) == bytes, "\(name)")
            }
        }
    }

    @Test func errorsSayWhereAndWhat() {
        #expect(HandoverStateError(offset: 0, reason: .badMagic).description == "handover state, byte 0: not a handover state (bad magic)")
        #expect(
            HandoverStateError(offset: 88, reason: .tooLong(.pending, length: 9, limit: 8)).description
                == "handover state, byte 88: pending of 9 bytes, over 8")
        #expect(HandoverStateError(offset: 16, reason: .duplicateInode(42)).description == "handover state, byte 16: inode 42 given twice")
    }
}
