import EchodText

/// The PROXY protocol header *writer* (HAProxy's proxy-protocol.txt, versions 1 and 2): the sender's side of
/// ``ProxyHeaderParser``, for echod's clients (`echod bench` and `echod probe` with `--proxy-protocol`) and for tests.
///
/// Everything it writes, the parser reads back to the same values (Tests/EchodProxyProtocolTests/WriterTests and
/// Fuzz/FuzzProxyProtocol check it): what the parser would refuse (a v1 line with mixed families, an authority over
/// 255 bytes, a unique id over 128, a Unix path over 108, a header over 16 + 65,535 bytes) is refused here instead.
/// The `into:` forms write into the caller's buffer without a heap allocation (WriterAllocationTests counts none in
/// release) so that a client can build a header per connection; the others return a new array.
package enum ProxyHeaderWriter {
    /// The addresses a header claims.
    package enum Addresses: Equatable, Sendable {
        /// None: v1 `PROXY UNKNOWN`, v2 AF_UNSPEC (with LOCAL, the usual health check; with PROXY, "the proxy
        /// could not tell").
        case unspecified
        /// TCP over IPv4 or IPv6: both of the same family.
        case inet(source: ProxyAddress, destination: ProxyAddress)
        /// AF_UNIX stream (v2 only): each path at most 108 bytes, written NUL-padded; an abstract name starts with
        /// its NUL. Without NULs inside a path and trailing NULs on an abstract name, or the parser reads it shorter.
        case unix(source: [UInt8], destination: [UInt8])
    }

    /// The v2 TLVs the parser decodes (``ProxyTLVs``), as values; nil leaves one out.
    package struct TLVs: Equatable, Sendable {
        package var alpn: [UInt8]?
        /// At most 255 bytes (a host name).
        package var authority: [UInt8]?
        /// At most 128 bytes (the specification's bound).
        package var uniqueID: [UInt8]?
        package var netns: [UInt8]?
        package var ssl: SSL?
        /// Adds PP2_TYPE_CRC32C holding the CRC32C of the whole header (computed here).
        package var crc32c = false

        package init(
            alpn: [UInt8]? = nil, authority: [UInt8]? = nil, uniqueID: [UInt8]? = nil, netns: [UInt8]? = nil, ssl: SSL? = nil,
            crc32c: Bool = false
        ) {
            self.alpn = alpn
            self.authority = authority
            self.uniqueID = uniqueID
            self.netns = netns
            self.ssl = ssl
            self.crc32c = crc32c
        }
    }

    /// PP2_TYPE_SSL (``ProxySSL``) as values.
    package struct SSL: Equatable, Sendable {
        package var client: UInt8
        package var verify: UInt32
        package var version: [UInt8]?
        package var commonName: [UInt8]?
        package var cipher: [UInt8]?

        package init(client: UInt8, verify: UInt32, version: [UInt8]? = nil, commonName: [UInt8]? = nil, cipher: [UInt8]? = nil) {
            self.client = client
            self.verify = verify
            self.version = version
            self.commonName = commonName
            self.cipher = cipher
        }
    }

    /// Why a header cannot be written.
    package enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// A v1 line or a v2 block with an IPv4 and an IPv6 address.
        case mixedFamilies
        /// v1 has no Unix addresses.
        case unixInV1
        case unixPathTooLong(length: Int)
        case tlvTooLong(type: UInt8, length: Int)
        /// Over 16 + 65,535 bytes, the most the length field can say.
        case headerTooLong(length: Int)
        /// The caller's buffer holds fewer bytes than the header needs.
        case bufferTooSmall(needed: Int, capacity: Int)

        package var description: String {
            switch self {
            case .mixedFamilies: "the source and destination addresses are not of the same family"
            case .unixInV1: "PROXY protocol v1 cannot carry Unix socket addresses"
            case .unixPathTooLong(let length): "a Unix path of \(length) bytes does not fit in 108"
            case .tlvTooLong(let type, let length): "TLV \(type) of \(length) bytes is longer than allowed"
            case .headerTooLong(let length): "a v2 header of \(length) bytes is longer than the 65,551 allowed"
            case .bufferTooSmall(let needed, let capacity): "the header needs \(needed) bytes, the buffer holds \(capacity)"
            }
        }
    }

    /// The longest v1 line (``ProxyHeaderParser/v1MaximumLength``): a buffer this long holds any v1 header.
    package static let v1MaximumLength = ProxyHeaderParser.v1MaximumLength
    /// A v2 header with IPv6 addresses and no TLVs (52 bytes): a buffer this long holds any v2 header without TLVs
    /// other than a Unix one.
    package static let v2InetMaximumLength = 16 + 36

    // MARK: Version 1

    /// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n` (`TCP6` with IPv6 addresses, as inet_ntop writes them), or
    /// `PROXY UNKNOWN\r\n` for `.unspecified`.
    package static func v1(_ addresses: Addresses) throws(Failure) -> [UInt8] {
        try array(capacity: v1MaximumLength) { (buffer) throws(Failure) in try v1(addresses, into: buffer) }
    }

    /// Writes the v1 line at the start of `buffer`; returns its length. ``v1MaximumLength`` bytes always suffice.
    package static func v1(_ addresses: Addresses, into buffer: UnsafeMutableRawBufferPointer) throws(Failure) -> Int {
        var out = Output(buffer)
        out.append("PROXY ")
        switch addresses {
        case .unspecified:
            out.append("UNKNOWN\r\n")
        case .unix:
            throw .unixInV1
        case .inet(let source, let destination):
            guard source.family == destination.family else { throw .mixedFamilies }
            out.append(source.family == .ipv4 ? "TCP4 " : "TCP6 ")
            out.appendAddress(source)
            out.append(" ")
            out.appendAddress(destination)
            out.append(" ")
            out.appendDecimal(UInt32(source.port))
            out.append(" ")
            out.appendDecimal(UInt32(destination.port))
            out.append("\r\n")
        }
        return try out.finish()
    }

    // MARK: Version 2

    /// The binary header: signature, version 2 with `command`, the family of `addresses` over STREAM, the addresses,
    /// then `tlvs`.
    package static func v2(_ command: ProxyCommand, _ addresses: Addresses, tlvs: TLVs = TLVs()) throws(Failure) -> [UInt8] {
        try array(capacity: v2Length(addresses, tlvs: tlvs)) { (buffer) throws(Failure) in try v2(command, addresses, tlvs: tlvs, into: buffer) }
    }

    /// Writes the v2 header at the start of `buffer`; returns its length (``v2Length(_:tlvs:)``).
    package static func v2(_ command: ProxyCommand, _ addresses: Addresses, tlvs: TLVs = TLVs(), into buffer: UnsafeMutableRawBufferPointer)
        throws(Failure) -> Int
    {
        let length = try v2Length(addresses, tlvs: tlvs)
        guard length <= buffer.count else { throw .bufferTooSmall(needed: length, capacity: buffer.count) }
        var out = Output(buffer)
        withUnsafeBytes(of: ProxyHeaderParser.v2Signature) { out.append($0) }
        out.append(command == .local ? 0x20 : 0x21)
        switch addresses {
        case .unspecified:
            out.append(0x00)
        case .inet(let source, _):
            out.append(source.family == .ipv4 ? 0x11 : 0x21)
        case .unix:
            out.append(0x31)
        }
        out.appendBigEndian(UInt16(length - V2Parser.fixedLength))
        switch addresses {
        case .unspecified:
            break
        case .inet(let source, let destination):
            out.appendRaw(source)
            out.appendRaw(destination)
            out.appendBigEndian(source.port)
            out.appendBigEndian(destination.port)
        case .unix(let source, let destination):
            out.appendPath(source)
            out.appendPath(destination)
        }
        // HAProxy's order (its captures in the tests are written again byte for byte): the checksum first, as zeros
        // until the whole header is there, then ALPN, authority, unique id, SSL, netns.
        let crcAt = out.position + 3
        if tlvs.crc32c {
            out.append(TLVWalk.crc32c)
            out.appendBigEndian(UInt16(4))
            out.appendZeros(4)
        }
        out.appendTLV(TLVWalk.alpn, tlvs.alpn)
        out.appendTLV(TLVWalk.authority, tlvs.authority)
        out.appendTLV(TLVWalk.uniqueID, tlvs.uniqueID)
        if let ssl = tlvs.ssl {
            out.append(TLVWalk.ssl)
            out.appendBigEndian(UInt16(sslLength(ssl)))
            out.append(ssl.client)
            out.appendBigEndian(UInt16(ssl.verify >> 16))
            out.appendBigEndian(UInt16(ssl.verify & 0xFFFF))
            out.appendTLV(TLVWalk.sslVersion, ssl.version)
            out.appendTLV(TLVWalk.sslCommonName, ssl.commonName)
            out.appendTLV(TLVWalk.sslCipher, ssl.cipher)
        }
        out.appendTLV(TLVWalk.netns, tlvs.netns)
        if tlvs.crc32c {
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[0..<length]))
            let end = out.position
            out.position = crcAt
            out.appendBigEndian(UInt16(crc >> 16))
            out.appendBigEndian(UInt16(crc & 0xFFFF))
            out.position = end
        }
        return try out.finish()
    }

    /// The length of the v2 header of these addresses and TLVs, or why it cannot be written.
    package static func v2Length(_ addresses: Addresses, tlvs: TLVs) throws(Failure) -> Int {
        var length = V2Parser.fixedLength
        switch addresses {
        case .unspecified:
            break
        case .inet(let source, let destination):
            guard source.family == destination.family else { throw .mixedFamilies }
            length += source.family == .ipv4 ? 12 : 36
        case .unix(let source, let destination):
            let longest = max(source.count, destination.count)
            guard longest <= 108 else { throw .unixPathTooLong(length: longest) }
            length += 216
        }
        func add(_ type: UInt8, _ value: [UInt8]?, limit: Int = 65535) throws(Failure) {
            guard let value else { return }
            guard value.count <= limit else { throw .tlvTooLong(type: type, length: value.count) }
            length += 3 + value.count
        }
        try add(TLVWalk.alpn, tlvs.alpn)
        try add(TLVWalk.authority, tlvs.authority, limit: 255)
        try add(TLVWalk.uniqueID, tlvs.uniqueID, limit: 128)
        try add(TLVWalk.netns, tlvs.netns)
        if let ssl = tlvs.ssl {
            let value = sslLength(ssl)
            guard value <= 65535 else { throw .tlvTooLong(type: TLVWalk.ssl, length: value) }
            length += 3 + value
        }
        if tlvs.crc32c { length += 7 }
        guard length <= ProxyHeaderParser.v2MaximumLength else { throw .headerTooLong(length: length) }
        return length
    }

    /// The bytes `write` puts into a buffer of `capacity` (its result: how many).
    private static func array(capacity: Int, _ write: (UnsafeMutableRawBufferPointer) throws(Failure) -> Int) throws(Failure) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: capacity)
        let written = bytes.withUnsafeMutableBytes { buffer in Result { () throws(Failure) in try write(buffer) } }
        bytes.removeLast(capacity - (try written.get()))
        return bytes
    }

    private static func sslLength(_ ssl: SSL) -> Int {
        func sub(_ value: [UInt8]?) -> Int { value.map { 3 + $0.count } ?? 0 }
        return 5 + sub(ssl.version) + sub(ssl.commonName) + sub(ssl.cipher)
    }
}

extension ProxyHeaderWriter.Addresses {
    /// What a parsed header says, as values to write again: the inverse of the writer's addresses. `bytes` are the
    /// ones the header was parsed from (its Unix paths are ranges of them).
    package init(_ parsed: ProxyAddresses, in bytes: UnsafeRawBufferPointer) {
        switch parsed {
        case .none: self = .unspecified
        case .inet(let source, let destination): self = .inet(source: source, destination: destination)
        case .unix(let source, let destination): self = .unix(source: Array(bytes[source]), destination: Array(bytes[destination]))
        }
    }
}

extension ProxyHeaderWriter.TLVs {
    /// What a parsed header's TLVs say, as values to write again (``ProxyHeaderWriter/Addresses/init(_:in:)``).
    package init(_ parsed: ProxyTLVs, in bytes: UnsafeRawBufferPointer) {
        func value(_ range: Range<Int>?) -> [UInt8]? { range.map { Array(bytes[$0]) } }
        self.init(
            alpn: value(parsed.alpn), authority: value(parsed.authority), uniqueID: value(parsed.uniqueID), netns: value(parsed.netns),
            ssl: parsed.ssl.map {
                ProxyHeaderWriter.SSL(
                    client: $0.client, verify: $0.verify, version: value($0.version), commonName: value($0.commonName), cipher: value($0.cipher))
            },
            crc32c: parsed.crc32c != nil)
    }
}

extension ProxyVersion {
    /// `--proxy-protocol v1|v2` of `echod bench` and `echod probe`: the one spelling of the versions they send.
    package init(parsing text: String) throws(InvalidValue) {
        switch text {
        case "v1": self = .v1
        case "v2": self = .v2
        default: throw InvalidValue(reason: "expected v1 or v2")
        }
    }
}

/// The bytes written so far into the caller's buffer. Writes past its end are counted but not stored, so that a
/// short buffer is one check at the end (`finish`) rather than one per byte.
private struct Output {
    let buffer: UnsafeMutableRawBufferPointer
    var position = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

    mutating func append(_ byte: UInt8) {
        if position < buffer.count { buffer[position] = byte }
        position += 1
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        for byte in bytes { append(byte) }
    }

    mutating func append(_ text: StaticString) {
        append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    mutating func appendZeros(_ count: Int) {
        for _ in 0..<count { append(0) }
    }

    mutating func appendBigEndian(_ value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(value & 0xFF))
    }

    mutating func appendTLV(_ type: UInt8, _ value: [UInt8]?) {
        guard let value else { return }
        append(type)
        appendBigEndian(UInt16(value.count))
        value.withUnsafeBytes { append($0) }
    }

    /// Decimal without leading zeros.
    mutating func appendDecimal(_ value: UInt32) {
        var divisor: UInt32 = 1
        while divisor <= value / 10 { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            append(UInt8(ascii: "0") + UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }

    mutating func appendHex(_ value: UInt16) {
        var shift = 12
        while shift > 0, value >> UInt16(shift) == 0 { shift -= 4 }
        while shift >= 0 {
            let digit = UInt8((value >> UInt16(shift)) & 0xF)
            append(digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10)
            shift -= 4
        }
    }

    mutating func appendIPv4(_ value: UInt32) {
        var shift: UInt32 = 24
        while true {
            appendDecimal(value >> shift & 0xFF)
            if shift == 0 { return }
            append(".")
            shift -= 8
        }
    }

    /// An address's bytes in network order (4 for IPv4, 16 for IPv6), as ``ProxyAddress`` holds them in memory.
    mutating func appendRaw(_ address: ProxyAddress) {
        withUnsafeBytes(of: (address.high, address.low)) {
            append(UnsafeRawBufferPointer(rebasing: $0[0..<(address.family == .ipv4 ? 4 : 16)]))
        }
    }

    /// A Unix path in its 108-byte field, NUL-padded.
    mutating func appendPath(_ path: [UInt8]) {
        path.withUnsafeBytes { append($0) }
        appendZeros(108 - path.count)
    }

    /// An address as inet_ntop writes it (what the specification asks of v1): IPv4 dotted; IPv6 in lower-case hex
    /// groups with the longest run of two or more zero groups (the first, on a tie) as `::`, and glibc's dotted tail
    /// for IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) addresses.
    mutating func appendAddress(_ address: ProxyAddress) {
        let value = address.value
        guard address.family == .ipv6 else {
            appendIPv4(UInt32(truncatingIfNeeded: value))
            return
        }
        func group(_ index: Int) -> UInt16 { UInt16(truncatingIfNeeded: value >> UInt128(16 * (7 - index))) }
        var best = (start: -1, count: 0)
        var index = 0
        while index < 8 {
            var end = index
            while end < 8, group(end) == 0 { end += 1 }
            if end - index > best.count { best = (index, end - index) }
            index = end + 1
        }
        if best.count < 2 { best = (-1, 0) }
        if best.start == 0, best.count == 6 || (best.count == 5 && group(5) == 0xFFFF) {
            append(best.count == 6 ? "::" : "::ffff:")
            appendIPv4(UInt32(truncatingIfNeeded: value))
            return
        }
        index = 0
        while index < 8 {
            if index == best.start {
                append("::")
                index += best.count
                continue
            }
            if index > 0, index != best.start + best.count { append(":") }
            appendHex(group(index))
            index += 1
        }
    }

    func finish() throws(ProxyHeaderWriter.Failure) -> Int {
        guard position <= buffer.count else { throw .bufferTooSmall(needed: position, capacity: buffer.count) }
        return position
    }
}
