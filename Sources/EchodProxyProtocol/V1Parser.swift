/// Version 1: `PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n`, `TCP6` likewise, `PROXY UNKNOWN ...\r\n`.
///
/// Read left to right one byte at a time, each checked as it arrives, so that a wrong byte is refused without waiting
/// for the CRLF; running out of bytes is `needMore`, reaching byte 108 without the CRLF is `v1LineTooLong`.
enum V1Parser {
    static func parse(_ bytes: UnsafeRawBufferPointer) -> ProxyHeaderParser.Result {
        var reader = Reader(bytes: bytes)
        do throws(ParseStop) {
            let (addresses, length) = try line(&reader)
            let header = ProxyHeader(version: .v1, command: .proxy, addresses: addresses, length: length)
            return .complete(header, consumed: length)
        } catch {
            switch error {
            case .needMore: return .needMore(minimum: bytes.count + 1)
            case .invalid(let reason): return .invalid(reason)
            }
        }
    }

    private static func line(_ r: inout Reader) throws(ParseStop) -> (ProxyAddresses, Int) {
        for expected in "PROXY ".utf8 where try r.next() != expected { throw .invalid(.badV1Signature) }
        let family: ProxyAddress.Family
        switch try r.next() {
        case UInt8(ascii: "T"):
            for expected in "CP".utf8 where try r.next() != expected { throw .invalid(.v1BadProtocol) }
            switch try r.next() {
            case UInt8(ascii: "4"): family = .ipv4
            case UInt8(ascii: "6"): family = .ipv6
            default: throw .invalid(.v1BadProtocol)
            }
            guard try r.next() == UInt8(ascii: " ") else { throw .invalid(.v1ExpectedSpace(after: .proto)) }
        case UInt8(ascii: "U"):
            for expected in "NKNOWN".utf8 where try r.next() != expected { throw .invalid(.v1BadProtocol) }
            try unknownRest(&r)
            return (.none, r.position)
        default:
            throw .invalid(.v1BadProtocol)
        }
        let source = try address(&r, family, .sourceAddress)
        let destination = try address(&r, family, .destinationAddress)
        let sourcePort = try port(&r, .sourcePort, terminator: UInt8(ascii: " "))
        let destinationPort = try port(&r, .destinationPort, terminator: UInt8(ascii: "\r"))
        guard try r.next() == UInt8(ascii: "\r"), try r.next() == UInt8(ascii: "\n") else { throw .invalid(.v1MissingCRLF) }
        let addresses = ProxyAddresses.inet(
            source: ProxyAddress(family: family, port: sourcePort, high: source.high, low: source.low),
            destination: ProxyAddress(family: family, port: destinationPort, high: destination.high, low: destination.low))
        return (addresses, r.position)
    }

    /// After `UNKNOWN`: CRLF, or a space and anything up to the CRLF (ignored, as the specification says); a lone CR or
    /// LF in it is not a line end and is refused.
    private static func unknownRest(_ r: inout Reader) throws(ParseStop) {
        switch try r.next() {
        case UInt8(ascii: "\r"): break
        case UInt8(ascii: " "):
            while true {
                let byte = try r.next()
                if byte == UInt8(ascii: "\r") { break }
                if byte == UInt8(ascii: "\n") { throw .invalid(.v1MissingCRLF) }
            }
        default: throw .invalid(.v1BadProtocol)
        }
        guard try r.next() == UInt8(ascii: "\n") else { throw .invalid(.v1MissingCRLF) }
    }

    /// An address and the single space after it. The token's characters are checked as they arrive (digits and dots
    /// for IPv4, hex digits, colons and dots for IPv6), its value once the space ends it.
    private static func address(_ r: inout Reader, _ family: ProxyAddress.Family, _ field: ProxyHeaderError.V1Field) throws(ParseStop)
        -> (high: UInt64, low: UInt64)
    {
        let bad = ParseStop.invalid(.v1BadAddress(field, family))
        let start = r.position
        // inet_ntop's longest forms: 255.255.255.255 and ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255.
        let longest = family == .ipv4 ? 15 : 45
        while true {
            let byte = try r.next()
            if byte == UInt8(ascii: " ") { break }
            let allowed = family == .ipv4 ? TextAddress.isDecimal(byte) || byte == UInt8(ascii: ".") : TextAddress.isIPv6Character(byte)
            guard allowed, r.position - start <= longest else { throw bad }
        }
        let token = UnsafeRawBufferPointer(rebasing: r.bytes[start..<(r.position - 1)])
        switch family {
        case .ipv4:
            guard let value = TextAddress.ipv4(token) else { throw bad }
            return (UInt64(UInt32(bigEndian: value)), 0)
        case .ipv6:
            guard let value = TextAddress.ipv6(token) else { throw bad }
            let address = ProxyAddress(ipv6: value, port: 0)
            return (address.high, address.low)
        }
    }

    /// A port, decimal 0-65535 without leading zeros, up to its terminator (left for the caller when it is the CR).
    private static func port(_ r: inout Reader, _ field: ProxyHeaderError.V1Field, terminator: UInt8) throws(ParseStop) -> UInt16 {
        var value: UInt32 = 0
        var digits = 0
        while true {
            let byte = try r.peek()
            if byte == terminator, digits > 0 { break }
            guard TextAddress.isDecimal(byte) else {
                if digits == 0 { throw .invalid(.v1BadPort(field)) }
                throw .invalid(terminator == UInt8(ascii: "\r") ? .v1MissingCRLF : .v1ExpectedSpace(after: field))
            }
            if digits == 1, value == 0 { throw .invalid(.v1PortLeadingZero(field)) }
            value = value * 10 + UInt32(byte - UInt8(ascii: "0"))
            digits += 1
            if value > 65535 { throw .invalid(.v1PortOutOfRange(field)) }
            r.position += 1
        }
        if terminator == UInt8(ascii: " ") { r.position += 1 }
        return UInt16(value)
    }

    struct Reader {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        mutating func next() throws(ParseStop) -> UInt8 {
            let byte = try peek()
            position += 1
            return byte
        }

        func peek() throws(ParseStop) -> UInt8 {
            if position >= ProxyHeaderParser.v1MaximumLength { throw .invalid(.v1LineTooLong) }
            if position >= bytes.count { throw .needMore }
            return bytes[position]
        }
    }
}
