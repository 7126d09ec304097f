import EchodSystem

/// What one established connection needs beyond its file descriptor to carry on in the next echod after an orderly
/// restart (issue 14): the fd itself travels through systemd's fd store under the name `echod-conn-<inode>`, and
/// this record, found by the same inode, travels in the `echod-state` memfd (``HandoverState``).
package struct ConnectionSnapshot: Equatable, Sendable {
    /// The socket's identity: `st_ino` of `fstat` on it, the same in every process that holds the socket.
    package var inode: UInt64
    /// `Connection.Flags` raw bits, as the writer had them; the codec does not interpret them.
    package var flags: UInt16
    package var bytesIn: UInt64
    package var bytesOut: UInt64
    /// When the connection was accepted, in `CLOCK_MONOTONIC` nanoseconds: one clock for every process of a boot,
    /// so the next echod reads the same age.
    package var openedAt: Int64
    /// The client: the real peer, or the address a PROXY header named.
    package var peer: SocketAddress
    /// With a PROXY header, the proxy that sent it (the real peer); otherwise whatever the writer keeps there.
    package var proxy: SocketAddress
    /// `tag: prefix`: the rendered line prefix, at most ``HandoverState/maxPrefix`` bytes.
    package var prefix: [UInt8]
    /// Bytes read from the peer but not yet echoed back, in order.
    package var pending: [UInt8]

    package init(
        inode: UInt64, flags: UInt16, bytesIn: UInt64, bytesOut: UInt64, openedAt: Int64, peer: SocketAddress, proxy: SocketAddress,
        prefix: [UInt8] = [], pending: [UInt8] = []
    ) {
        self.inode = inode
        self.flags = flags
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.openedAt = openedAt
        self.peer = peer
        self.proxy = proxy
        self.prefix = prefix
        self.pending = pending
    }
}

/// The handover state: every connection's ``ConnectionSnapshot``, as one byte string that an echod stopping for a
/// restart writes into a sealed memfd (`echod-state` in systemd's fd store) and the next echod reads back.
///
/// The next echod may be another build (an upgrade), so the format is fixed here rather than being a memory dump;
/// and it reads bytes a memfd handed to it, so `decode` trusts nothing: every length is checked against the bytes
/// left and the bounds before anything is allocated for it.
///
/// Format, every integer fixed-width little-endian:
///
///     header   magic "ECHODHS1" (8 bytes), version u32 (= 1), record count u32
///     record   inode u64, flags u16, bytesIn u64, bytesOut u64, openedAt i64,
///              peer address, proxy address,
///              prefix length u32, prefix bytes, pending length u32, pending bytes
///     address  family u8 (SocketAddress.Family: 0 IPv4, 1 IPv6, 2 Unix peer), port u16, high u64, low u64
///
/// `high` and `low` are the values ``SocketAddress`` holds (an address in network byte order, loaded as the host's
/// integers; a Unix peer's credentials), written as u64: the state never leaves the machine and boot that wrote it.
/// A record is at least ``minimumRecordSize`` (80) bytes. After the last record the input ends.
package enum HandoverState {
    package static let magic: [UInt8] = Array("ECHODHS1".utf8)
    package static let version: UInt32 = 1
    /// The longest prefix a record may hold: a `tag_text` is cut at 1024 bytes, so a rendered prefix is well within.
    package static let maxPrefix = 2048
    /// Magic, version, count.
    package static let headerSize = 16
    /// A record with an empty prefix and nothing pending: the fixed fields, two 19-byte addresses and two lengths.
    package static let minimumRecordSize = 8 + 2 + 8 + 8 + 8 + 2 * addressSize + 4 + 4
    static let addressSize = 1 + 2 + 8 + 8

    /// The state of `snapshots`, in their order. Each prefix must be at most ``maxPrefix`` bytes (a prefix is a
    /// rendered tag, so a longer one is a bug); `decode` gives the list back when no two snapshots share an inode and
    /// each pending count is within the reader's `maxPending`.
    package static func encode(_ snapshots: [ConnectionSnapshot]) -> [UInt8] {
        precondition(snapshots.count <= Int(UInt32.max), "\(snapshots.count) snapshots do not fit a u32 count")
        var size = headerSize
        for s in snapshots {
            precondition(s.prefix.count <= maxPrefix, "a prefix of \(s.prefix.count) bytes, over \(maxPrefix)")
            precondition(s.pending.count <= Int(UInt32.max), "\(s.pending.count) pending bytes do not fit a u32 length")
            size += minimumRecordSize + s.prefix.count + s.pending.count
        }
        var out: [UInt8] = []
        out.reserveCapacity(size)
        out += magic
        append(version, to: &out)
        append(UInt32(snapshots.count), to: &out)
        for s in snapshots {
            append(s.inode, to: &out)
            append(s.flags, to: &out)
            append(s.bytesIn, to: &out)
            append(s.bytesOut, to: &out)
            append(s.openedAt, to: &out)
            append(s.peer, to: &out)
            append(s.proxy, to: &out)
            append(UInt32(s.prefix.count), to: &out)
            out += s.prefix
            append(UInt32(s.pending.count), to: &out)
            out += s.pending
        }
        assert(out.count == size)
        return out
    }

    /// The snapshots `bytes` holds, or why it is not a valid handover state: wrong magic or version, a count or
    /// length that the bytes left cannot hold, a prefix over ``maxPrefix`` or pending bytes over `maxPending`, an
    /// unknown address family, an inode given twice, or bytes after the last record. Allocates only for what the
    /// input holds: a count is checked against the bytes left (at ``minimumRecordSize`` each) before any capacity is
    /// reserved for it.
    package static func decode(_ bytes: UnsafeRawBufferPointer, maxPending: Int) throws(HandoverStateError) -> [ConnectionSnapshot] {
        precondition(maxPending >= 0, "maxPending \(maxPending) is negative")
        var reader = Reader(bytes: bytes)
        guard bytes.count >= magic.count, magic.withUnsafeBytes({ $0.elementsEqual(bytes.prefix(magic.count)) }) else {
            throw HandoverStateError(offset: 0, reason: .badMagic)
        }
        reader.offset = magic.count
        let versionOffset = reader.offset
        let found = try reader.u32()
        guard found == version else { throw HandoverStateError(offset: versionOffset, reason: .unsupportedVersion(found)) }
        let countOffset = reader.offset
        let count = Int(try reader.u32())
        guard count <= reader.left / minimumRecordSize else {
            throw HandoverStateError(offset: countOffset, reason: .countTooLarge(count: count, bytesLeft: reader.left))
        }
        var snapshots: [ConnectionSnapshot] = []
        snapshots.reserveCapacity(count)
        var inodes = Set<UInt64>(minimumCapacity: count)
        for _ in 0..<count {
            let start = reader.offset
            let inode = try reader.u64()
            guard inodes.insert(inode).inserted else { throw HandoverStateError(offset: start, reason: .duplicateInode(inode)) }
            let flags = try reader.u16()
            let bytesIn = try reader.u64()
            let bytesOut = try reader.u64()
            let openedAt = Int64(bitPattern: try reader.u64())
            let peer = try reader.address()
            let proxy = try reader.address()
            let prefix = try reader.lengthPrefixed(limit: maxPrefix, field: .prefix)
            let pending = try reader.lengthPrefixed(limit: maxPending, field: .pending)
            snapshots.append(
                ConnectionSnapshot(
                    inode: inode, flags: flags, bytesIn: bytesIn, bytesOut: bytesOut, openedAt: openedAt, peer: peer, proxy: proxy,
                    prefix: prefix, pending: pending))
        }
        guard reader.left == 0 else { throw HandoverStateError(offset: reader.offset, reason: .trailingBytes(reader.left)) }
        return snapshots
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out += $0 }
    }

    private static func append(_ address: SocketAddress, to out: inout [UInt8]) {
        out.append(address.family.rawValue)
        append(address.port, to: &out)
        append(address.high, to: &out)
        append(address.low, to: &out)
    }

    /// Reads the input front to back; every read checks the bytes left first.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var left: Int { bytes.count - offset }

        mutating func take(_ count: Int) throws(HandoverStateError) -> UnsafeRawBufferPointer {
            guard count <= left else { throw HandoverStateError(offset: offset, reason: .truncated(needed: count, bytesLeft: left)) }
            defer { offset += count }
            return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(HandoverStateError) -> T {
            T(littleEndian: try take(MemoryLayout<T>.size).loadUnaligned(as: T.self))
        }

        mutating func u16() throws(HandoverStateError) -> UInt16 { try integer(UInt16.self) }
        mutating func u32() throws(HandoverStateError) -> UInt32 { try integer(UInt32.self) }
        mutating func u64() throws(HandoverStateError) -> UInt64 { try integer(UInt64.self) }

        mutating func address() throws(HandoverStateError) -> SocketAddress {
            let familyOffset = offset
            let raw = try take(1)[0]
            guard let family = SocketAddress.Family(rawValue: raw) else {
                throw HandoverStateError(offset: familyOffset, reason: .badFamily(raw))
            }
            let port = try u16()
            let high = try u64()
            return SocketAddress(family: family, port: port, high: high, low: try u64())
        }

        /// A u32 length, at most `limit`, then that many bytes.
        mutating func lengthPrefixed(limit: Int, field: HandoverStateError.Field) throws(HandoverStateError) -> [UInt8] {
            let lengthOffset = offset
            let length = Int(try u32())
            guard length <= limit else {
                throw HandoverStateError(offset: lengthOffset, reason: .tooLong(field, length: length, limit: limit))
            }
            return Array(try take(length))
        }
    }
}

/// Why bytes are not a handover state, and where: the offset of the field that is wrong (for a truncation, where the
/// missing bytes should have begun).
package struct HandoverStateError: Error, Equatable, Sendable, CustomStringConvertible {
    package enum Field: Equatable, Sendable {
        case prefix, pending
    }

    package enum Reason: Equatable, Sendable {
        /// Not the 8 bytes of ``HandoverState/magic`` (also when the input is shorter).
        case badMagic
        case unsupportedVersion(UInt32)
        /// A field needs more bytes than are left.
        case truncated(needed: Int, bytesLeft: Int)
        /// More records than the bytes left could hold even at ``HandoverState/minimumRecordSize`` each.
        case countTooLarge(count: Int, bytesLeft: Int)
        /// A length over its bound (``HandoverState/maxPrefix``, or the reader's `maxPending`).
        case tooLong(Field, length: Int, limit: Int)
        /// Not a ``SocketAddress/Family`` raw value.
        case badFamily(UInt8)
        case duplicateInode(UInt64)
        /// Bytes after the last record.
        case trailingBytes(Int)
    }

    package var offset: Int
    package var reason: Reason

    package init(offset: Int, reason: Reason) {
        self.offset = offset
        self.reason = reason
    }

    package var description: String {
        let what =
            switch reason {
            case .badMagic: "not a handover state (bad magic)"
            case .unsupportedVersion(let version): "version \(version), expected \(HandoverState.version)"
            case .truncated(let needed, let left): "truncated: \(needed) bytes needed, \(left) left"
            case .countTooLarge(let count, let left): "\(count) records cannot fit in the \(left) bytes left"
            case .tooLong(let field, let length, let limit): "\(field == .prefix ? "prefix" : "pending") of \(length) bytes, over \(limit)"
            case .badFamily(let raw): "unknown address family \(raw)"
            case .duplicateInode(let inode): "inode \(inode) given twice"
            case .trailingBytes(let count): "\(count) bytes after the last record"
            }
        return "handover state, byte \(offset): \(what)"
    }
}
