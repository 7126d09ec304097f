/// Version 1: `PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n`, `TCP6` likewise, `PROXY UNKNOWN ...\r\n`.
///
/// Read left to right one byte at a time, each checked as it arrives, so that a wrong byte is refused without waiting
/// for the CRLF; running out of bytes is `needMore`, reaching byte 108 without the CRLF is `v1LineTooLong`.
enum V1Parser {
    // Not written with `throws`: a thrown error, typed or not, is boxed on the heap by this toolchain (one allocation
    // per throw, measured), and a header split across reads stops once per read. A stop is kept in the reader instead.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> ProxyHeaderParser.Result {
        var reader = Reader(bytes: bytes)
        if let addresses = line(&reader) {
            let header = ProxyHeader(version: .v1, command: .proxy, addresses: addresses, length: reader.position)
            return .complete(header, consumed: reader.position)
        }
        if let reason = reader.invalid { return .invalid(reason) }
        return .needMore(minimum: bytes.count + 1)
    }

    private static func line(_ r: inout Reader) -> ProxyAddresses? {
        guard r.expect("PROXY ", else: .badV1Signature) else { return nil }
        let family: ProxyAddress.Family
        switch r.next() {
        case nil: return nil
        case UInt8(ascii: "T"):
            guard r.expect("CP", else: .v1BadProtocol) else { return nil }
            switch r.next() {
            case nil: return nil
            case UInt8(ascii: "4"): family = .ipv4
            case UInt8(ascii: "6"): family = .ipv6
            default: return r.fail(.v1BadProtocol)
            }
            guard r.expect(" ", else: .v1ExpectedSpace(after: .proto)) else { return nil }
        case UInt8(ascii: "U"):
            guard r.expect("NKNOWN", else: .v1BadProtocol), unknownRest(&r) else { return nil }
            return ProxyAddresses.none
        default:
            return r.fail(.v1BadProtocol)
        }
        guard let source = address(&r, family, .sourceAddress),
            let destination = address(&r, family, .destinationAddress),
            let sourcePort = port(&r, .sourcePort, terminator: UInt8(ascii: " ")),
            let destinationPort = port(&r, .destinationPort, terminator: UInt8(ascii: "\r")),
            r.expect("\r\n", else: .v1MissingCRLF)
        else { return nil }
        return .inet(
            source: ProxyAddress(family: family, port: sourcePort, high: source.high, low: source.low),
            destination: ProxyAddress(family: family, port: destinationPort, high: destination.high, low: destination.low))
    }

    /// After `UNKNOWN`: CRLF, or a space and anything up to the CRLF (ignored, as the specification says); a lone CR or
    /// LF in it is not a line end and is refused.
    private static func unknownRest(_ r: inout Reader) -> Bool {
        switch r.next() {
        case nil: return false
        case UInt8(ascii: "\r"): break
        case UInt8(ascii: " "):
            while true {
                guard let byte = r.next() else { return false }
                if byte == UInt8(ascii: "\r") { break }
                if byte == UInt8(ascii: "\n") { return r.fail(.v1MissingCRLF) ?? false }
            }
        default: return r.fail(.v1BadProtocol) ?? false
        }
        return r.expect("\n", else: .v1MissingCRLF)
    }

    /// An address and the single space after it. The token's characters are checked as they arrive (digits and dots
    /// for IPv4, hex digits, colons and dots for IPv6), its value once the space ends it.
    private static func address(_ r: inout Reader, _ family: ProxyAddress.Family, _ field: ProxyHeaderError.V1Field)
        -> (high: UInt64, low: UInt64)?
    {
        let bad = ProxyHeaderError.v1BadAddress(field, family)
        let start = r.position
        // inet_ntop's longest forms: 255.255.255.255 and ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255.
        let longest = family == .ipv4 ? 15 : 45
        while true {
            guard let byte = r.next() else { return nil }
            if byte == UInt8(ascii: " ") { break }
            let allowed = family == .ipv4 ? TextAddress.isDecimal(byte) || byte == UInt8(ascii: ".") : TextAddress.isIPv6Character(byte)
            guard allowed, r.position - start <= longest else { return r.fail(bad) }
        }
        let token = UnsafeRawBufferPointer(rebasing: r.bytes[start..<(r.position - 1)])
        switch family {
        case .ipv4:
            guard let value = TextAddress.ipv4(token) else { return r.fail(bad) }
            return (UInt64(UInt32(bigEndian: value)), 0)
        case .ipv6:
            guard let value = TextAddress.ipv6(token) else { return r.fail(bad) }
            let address = ProxyAddress(ipv6: value, port: 0)
            return (address.high, address.low)
        }
    }

    /// A port, decimal 0-65535 without leading zeros, up to its terminator (left for the caller when it is the CR).
    private static func port(_ r: inout Reader, _ field: ProxyHeaderError.V1Field, terminator: UInt8) -> UInt16? {
        var value: UInt32 = 0
        var digits = 0
        while true {
            guard let byte = r.peek() else { return nil }
            if byte == terminator, digits > 0 { break }
            guard TextAddress.isDecimal(byte) else {
                if digits == 0 { return r.fail(.v1BadPort(field)) }
                return r.fail(terminator == UInt8(ascii: "\r") ? .v1MissingCRLF : .v1ExpectedSpace(after: field))
            }
            if digits == 1, value == 0 { return r.fail(.v1PortLeadingZero(field)) }
            value = value * 10 + UInt32(byte - UInt8(ascii: "0"))
            digits += 1
            if value > 65535 { return r.fail(.v1PortOutOfRange(field)) }
            r.position += 1
        }
        if terminator == UInt8(ascii: " ") { r.position += 1 }
        return UInt16(value)
    }

    /// The bytes so far, read left to right. `nil` from `next` or `peek` means stop: out of bytes (`invalid` is nil:
    /// need more) or at byte 108 without a CRLF (`invalid` says so); `fail` records any other reason.
    struct Reader {
        let bytes: UnsafeRawBufferPointer
        var position = 0
        private(set) var invalid: ProxyHeaderError?

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func next() -> UInt8? {
            let byte = peek()
            if byte != nil { position += 1 }
            return byte
        }

        mutating func peek() -> UInt8? {
            if position >= ProxyHeaderParser.v1MaximumLength { return fail(.v1LineTooLong) }
            if position >= bytes.count { return nil }
            return bytes[position]
        }

        /// Reads `text`'s bytes; false when they differ (recording `reason`) or run out.
        mutating func expect(_ text: StaticString, else reason: ProxyHeaderError) -> Bool {
            for index in 0..<text.utf8CodeUnitCount {
                guard let byte = next() else { return false }
                if byte != text.utf8Start[index] { return fail(reason) ?? false }
            }
            return true
        }

        mutating func fail<T>(_ reason: ProxyHeaderError) -> T? {
            invalid = reason
            return nil
        }
    }
}
