/// Version 2: a 16-byte fixed part (signature, version and command, family and transport, length), the addresses of
/// the family, then TLVs to the end of the length.
enum V2Parser {
    static let fixedLength = 16

    static func parse(_ bytes: UnsafeRawBufferPointer, limit: Int) -> ProxyHeaderParser.Result {
        // The signature, byte by byte as it arrives, so that a wrong byte is refused without waiting for the rest.
        let signatureMatched = withUnsafeBytes(of: ProxyHeaderParser.v2Signature) { signature in
            zip(bytes, signature).allSatisfy { $0 == $1 }
        }
        guard signatureMatched else { return .invalid(.badV2Signature) }
        guard bytes.count > 12 else { return .needMore(minimum: bytes.count + 1) }
        let version = bytes[12] >> 4
        let commandBits = bytes[12] & 0x0F
        guard version == 2 else { return .invalid(.v2Version(version)) }
        guard commandBits <= 1 else { return .invalid(.v2Command(commandBits)) }
        let command: ProxyCommand = commandBits == 0 ? .local : .proxy
        guard bytes.count > 13 else { return .needMore(minimum: bytes.count + 1) }
        let family = bytes[13] >> 4
        let transport = bytes[13] & 0x0F
        guard family <= 3 else { return .invalid(.v2Family(family)) }
        guard transport <= 2 else { return .invalid(.v2Transport(transport)) }
        // LOCAL ignores the family and transport (the connection's own endpoints stand), but they still say how long the
        // address block is, before the TLVs.
        if command == .proxy {
            if transport == 2 { return .invalid(.v2Datagram) }
            if (family == 0) != (transport == 0) { return .invalid(.v2FamilyTransport(bytes[13])) }
        }
        guard bytes.count >= fixedLength else { return .needMore(minimum: bytes.count + 1) }
        let length = fixedLength + (Int(bytes[14]) << 8 | Int(bytes[15]))
        guard length <= limit else { return .invalid(.v2TooLong(length: length, limit: limit)) }
        let addressLength = addressBlockLength(family: family, transport: transport)
        guard length - fixedLength >= addressLength else {
            return .invalid(.v2AddressTooShort(length: length - fixedLength, family: family))
        }
        guard bytes.count >= length else { return .needMore(minimum: length) }

        let header = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
        var tlvs = ProxyTLVs()
        do throws(ProxyHeaderError) {
            try TLVWalk.walk(header, from: fixedLength + addressLength, into: &tlvs)
        } catch {
            return .invalid(error)
        }
        let addresses = command == .local ? ProxyAddresses.none : decodeAddresses(header, family: family)
        return .complete(ProxyHeader(version: .v2, command: command, addresses: addresses, length: length, tlvs: tlvs), consumed: length)
    }

    /// 4-byte addresses and 2-byte ports for AF_INET, 16-byte addresses for AF_INET6, two 108-byte paths for AF_UNIX;
    /// nothing when the family or the transport is UNSPEC.
    static func addressBlockLength(family: UInt8, transport: UInt8) -> Int {
        guard transport != 0 else { return 0 }
        switch family {
        case 1: return 12
        case 2: return 36
        case 3: return 216
        default: return 0
        }
    }

    private static func decodeAddresses(_ header: UnsafeRawBufferPointer, family: UInt8) -> ProxyAddresses {
        let base = fixedLength
        switch family {
        case 1:
            let source = ProxyAddress(family: .ipv4, port: port(header, base + 8), high: UInt64(load32(header, base)), low: 0)
            let destination = ProxyAddress(family: .ipv4, port: port(header, base + 10), high: UInt64(load32(header, base + 4)), low: 0)
            return .inet(source: source, destination: destination)
        case 2:
            let source = ProxyAddress(family: .ipv6, port: port(header, base + 32), high: load64(header, base), low: load64(header, base + 8))
            let destination = ProxyAddress(
                family: .ipv6, port: port(header, base + 34), high: load64(header, base + 16), low: load64(header, base + 24))
            return .inet(source: source, destination: destination)
        case 3:
            return .unix(source: unixPath(header, base), destination: unixPath(header, base + 108))
        default:
            return .none
        }
    }

    /// The bytes in memory order, as `SocketAddress` holds them (network order in memory).
    private static func load32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
    }

    private static func load64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
    }

    private static func port(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    /// A path ends at its first NUL; an abstract socket's name (a leading NUL) ends before its trailing NULs.
    private static func unixPath(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> Range<Int> {
        let field = offset..<(offset + 108)
        if bytes[offset] == 0 {
            var end = field.upperBound
            while end > offset + 1, bytes[end - 1] == 0 { end -= 1 }
            return end == offset + 1 ? offset..<offset : offset..<end
        }
        var end = offset
        while end < field.upperBound, bytes[end] != 0 { end += 1 }
        return offset..<end
    }
}
