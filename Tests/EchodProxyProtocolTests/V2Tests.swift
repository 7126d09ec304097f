import EchodProxyProtocol
import Testing

@Suite("PROXY protocol v2: the binary header")
struct V2Tests {
    static let tcp4 = V2Header(addresses: V2Header.ipv4([192, 168, 0, 1], [192, 168, 0, 11], 56324, 443))
    static let ipv6Source: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]
    static let tcp6 = V2Header(
        familyTransport: 0x21, addresses: ipv6Source + [UInt8](repeating: 0, count: 15) + [1] + V2Header.be16(1234) + V2Header.be16(7))

    static func unix(_ source: String, _ destination: String) -> V2Header {
        func field(_ path: String) -> [UInt8] { Array(path.utf8) + [UInt8](repeating: 0, count: 108 - path.utf8.count) }
        return V2Header(familyTransport: 0x31, addresses: field(source) + field(destination))
    }

    @Test func tcp4Proxy() throws {
        let bytes = Self.tcp4.bytes
        let parsed = try #require(header(parse(bytes)))
        #expect(parsed.version == .v2)
        #expect(parsed.command == .proxy)
        #expect(parsed.addresses == inet(v4(192, 168, 0, 1, port: 56324), v4(192, 168, 0, 11, port: 443)))
        #expect(parsed.length == 28)
        #expect(header(parse(bytes, .v2)) == parsed)
    }

    @Test func tcp6Proxy() throws {
        let parsed = try #require(header(parse(Self.tcp6.bytes)))
        #expect(
            parsed.addresses
                == inet(ProxyAddress(ipv6: 0x2001_0db8_0000_0000_0000_0000_0000_0001, port: 1234), ProxyAddress(ipv6: 1, port: 7)))
        #expect(parsed.length == 52)
    }

    @Test func unixPaths() throws {
        let bytes = Self.unix("/run/client.sock", "/run/echod.sock").bytes
        let parsed = try #require(header(parse(bytes)))
        guard case .unix(let source, let destination) = parsed.addresses else {
            Issue.record("not unix: \(parsed.addresses)")
            return
        }
        #expect(text(source, in: bytes) == "/run/client.sock")
        #expect(text(destination, in: bytes) == "/run/echod.sock")
        #expect(parsed.length == 16 + 216)
    }

    @Test func unixAbstractAndUnnamed() throws {
        let bytes = Self.unix("\0abstract", "").bytes
        guard case .unix(let source, let destination) = try #require(header(parse(bytes))).addresses else {
            Issue.record("not unix")
            return
        }
        #expect(text(source, in: bytes) == "\0abstract")
        #expect(destination.isEmpty)
    }

    @Test func local() throws {
        let bytes = V2Header(versionCommand: 0x20, familyTransport: 0x00).bytes
        let parsed = try #require(header(parse(bytes)))
        #expect(parsed.command == .local)
        #expect(parsed.addresses == .none)
        #expect(parsed.length == 16)
    }

    @Test("LOCAL ignores the addresses it carries, and skips them to reach the TLVs")
    func localWithAddresses() throws {
        var local = Self.tcp4
        local.versionCommand = 0x20
        local.tlvs = V2Header.tlv(0x05, Array("id-1".utf8))
        let bytes = local.bytes
        let parsed = try #require(header(parse(bytes)))
        #expect(parsed.command == .local)
        #expect(parsed.addresses == .none)
        #expect(text(parsed.tlvs.uniqueID, in: bytes) == "id-1")
    }

    @Test("PROXY with AF_UNSPEC: the proxy could not tell; the connection's own endpoints stand")
    func proxyUnspecified() throws {
        let parsed = try #require(header(parse(V2Header(versionCommand: 0x21, familyTransport: 0x00).bytes)))
        #expect(parsed.command == .proxy)
        #expect(parsed.addresses == .none)
    }

    @Test func longerAddressBlockIsSkipped() throws {
        var padded = Self.tcp4
        padded.addresses += [0, 0]  // the length field covers more than the addresses: what follows must be TLVs
        #expect(parse(padded.bytes) == .invalid(.tlvTruncated(offset: 28)))
        padded.addresses = Self.tcp4.addresses + V2Header.tlv(0x04, [1, 2])
        #expect(header(parse(padded.bytes))?.length == 33)
    }

    @Test func tlvs() throws {
        var full = Self.tcp4
        full.tlvs =
            V2Header.tlv(0x01, Array("h2".utf8)) + V2Header.tlv(0x02, Array("echo.example".utf8))
            + V2Header.tlv(0x04, [0, 0, 0]) + V2Header.tlv(0x05, Array("unique".utf8)) + V2Header.tlv(0x30, Array("blue".utf8))
            + V2Header.tlv(0xEA, [0x01] + Array("vpce-0123".utf8))  // AWS's VPC endpoint id: unknown, skipped
            + V2Header.tlv(
                0x20,
                [0x07, 0, 0, 0, 0] + V2Header.tlv(0x21, Array("TLSv1.3".utf8)) + V2Header.tlv(0x22, Array("client".utf8))
                    + V2Header.tlv(0x23, Array("TLS_AES_256_GCM_SHA384".utf8)) + V2Header.tlv(0x25, Array("RSA2048".utf8)))
        full.crc = true
        let bytes = full.bytes
        let parsed = try #require(header(parse(bytes)))
        #expect(text(parsed.tlvs.alpn, in: bytes) == "h2")
        #expect(text(parsed.tlvs.authority, in: bytes) == "echo.example")
        #expect(text(parsed.tlvs.uniqueID, in: bytes) == "unique")
        #expect(text(parsed.tlvs.netns, in: bytes) == "blue")
        #expect(parsed.tlvs.crc32c != nil)
        let ssl = try #require(parsed.tlvs.ssl)
        #expect(ssl.client == 7 && ssl.verify == 0)
        #expect(text(ssl.version, in: bytes) == "TLSv1.3")
        #expect(text(ssl.commonName, in: bytes) == "client")
        #expect(text(ssl.cipher, in: bytes) == "TLS_AES_256_GCM_SHA384")
        expectSameAtEverySplit(bytes)
    }

    @Test func crc32cKnownAnswer() {
        // RFC 3720 B.4 and every CRC32C implementation's check value.
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32C.checksum($0) } == 0xE306_9283)
        #expect([UInt8](repeating: 0, count: 32).withUnsafeBytes { CRC32C.checksum($0) } == 0x8A91_36AA)
    }

    @Test func crc32cMismatchIsRefused() {
        var bad = Self.tcp4
        bad.crc = true
        let good = bad.bytes
        bad.crcOverride = 0x1234_5678
        guard case .invalid(.crc32cMismatch(sent: 0x1234_5678, _)) = parse(bad.bytes) else {
            Issue.record("a wrong checksum passed: \(parse(bad.bytes))")
            return
        }
        // One flipped bit of an address, checksum unchanged.
        var flipped = good
        flipped[16] ^= 1
        guard case .invalid(.crc32cMismatch) = parse(flipped) else {
            Issue.record("a changed header passed its checksum")
            return
        }
        #expect(header(parse(good)) != nil)
    }

    @Test func clientDataAfterTheHeaderIsKept() {
        let bytes = Self.tcp6.bytes + Array("hello".utf8)
        guard case .complete(let parsed, let consumed) = parse(bytes) else {
            Issue.record("not complete")
            return
        }
        #expect(consumed == parsed.length)
        #expect(Array(bytes[consumed...]) == Array("hello".utf8))
    }

    @Test func needMoreAsksForTheWholeHeaderOnceItsLengthIsKnown() {
        let bytes = Self.tcp6.bytes
        #expect(parse(Array(bytes[..<15])) == .needMore(minimum: 16))
        #expect(parse(Array(bytes[..<16])) == .needMore(minimum: 52))
        #expect(parse(Array(bytes[..<51])) == .needMore(minimum: 52))
        for header in [Self.tcp4.bytes, Self.tcp6.bytes, Self.unix("/a", "/b").bytes, V2Header(versionCommand: 0x20, familyTransport: 0).bytes] {
            expectSameAtEverySplit(header)
            expectSameAtEverySplit(header, .v2)
        }
    }

    @Test func limit() {
        var big = Self.tcp4
        big.tlvs = V2Header.tlv(0x04, [UInt8](repeating: 0, count: 4096))
        let bytes = big.bytes
        #expect(parse(Array(bytes[..<16])) == .invalid(.v2TooLong(length: 16 + 12 + 3 + 4096, limit: 4096)), "refused on its length field")
        #expect(header(parse(bytes, v2Limit: ProxyHeaderParser.v2MaximumLength))?.length == bytes.count)
        #expect(header(parse(bytes, v2Limit: bytes.count)) != nil)
        #expect(parse(bytes, v2Limit: bytes.count - 1) == .invalid(.v2TooLong(length: bytes.count, limit: bytes.count - 1)))
        var largest = Self.tcp4
        largest.tlvs = V2Header.tlv(0x04, [UInt8](repeating: 0, count: 65535 - 12 - 3))
        #expect(header(parse(largest.bytes, v2Limit: 1 << 20))?.length == 16 + 65535, "the protocol's own maximum")
    }

    static let malformed: [(String, [UInt8], ProxyHeaderError)] = [
        ("bad signature", [0x0D, 0x0A, 0x0D, 0x0A, 0x01], .badV2Signature),
        ("v1 signature start then binary", [0x0D, 0x0A, 0x0A], .badV2Signature),
        ("version 1 in the v2 format", V2Header(versionCommand: 0x11).bytes, .v2Version(1)),
        ("version 3", V2Header(versionCommand: 0x31).bytes, .v2Version(3)),
        ("command 2", V2Header(versionCommand: 0x22).bytes, .v2Command(2)),
        ("command 0xF", V2Header(versionCommand: 0x2F).bytes, .v2Command(0xF)),
        ("family 4", V2Header(familyTransport: 0x41).bytes, .v2Family(4)),
        ("transport 3", V2Header(familyTransport: 0x13).bytes, .v2Transport(3)),
        ("UDP over IPv4", V2Header(familyTransport: 0x12, addresses: [UInt8](repeating: 0, count: 12)).bytes, .v2Datagram),
        ("unix datagram", V2Header(familyTransport: 0x32, addresses: [UInt8](repeating: 0, count: 216)).bytes, .v2Datagram),
        ("AF_INET, transport UNSPEC", V2Header(familyTransport: 0x10, addresses: [UInt8](repeating: 0, count: 12)).bytes, .v2FamilyTransport(0x10)),
        ("AF_UNSPEC, STREAM", V2Header(familyTransport: 0x01).bytes, .v2FamilyTransport(0x01)),
        ("AF_INET with 4 bytes", V2Header(familyTransport: 0x11, addresses: [1, 2, 3, 4]).bytes, .v2AddressTooShort(length: 4, family: 1)),
        (
            "AF_INET6 with 12 bytes", V2Header(familyTransport: 0x21, addresses: [UInt8](repeating: 0, count: 12)).bytes,
            .v2AddressTooShort(length: 12, family: 2)
        ),
        (
            "AF_UNIX with 108 bytes", V2Header(familyTransport: 0x31, addresses: [UInt8](repeating: 0, count: 108)).bytes,
            .v2AddressTooShort(length: 108, family: 3)
        ),
        ("LOCAL AF_INET6 without addresses", V2Header(versionCommand: 0x20, familyTransport: 0x21).bytes, .v2AddressTooShort(length: 0, family: 2)),
        ("TLV overrun", V2Header(addresses: tcp4.addresses, tlvs: [0x02, 0x00, 0x10] + Array("short".utf8)).bytes, .tlvOverrun(type: 0x02)),
        ("TLV header cut", V2Header(addresses: tcp4.addresses, tlvs: [0x02, 0x00]).bytes, .tlvTruncated(offset: 28)),
        ("CRC32C of 3 bytes", V2Header(addresses: tcp4.addresses, tlvs: V2Header.tlv(0x03, [1, 2, 3])).bytes, .tlvBadLength(type: 3, length: 3)),
        (
            "unique id of 129 bytes", V2Header(addresses: tcp4.addresses, tlvs: V2Header.tlv(0x05, [UInt8](repeating: 65, count: 129))).bytes,
            .tlvBadLength(type: 5, length: 129)
        ),
        (
            "authority of 256 bytes", V2Header(addresses: tcp4.addresses, tlvs: V2Header.tlv(0x02, [UInt8](repeating: 97, count: 256))).bytes,
            .tlvBadLength(type: 2, length: 256)
        ),
        (
            "two authorities", V2Header(addresses: tcp4.addresses, tlvs: V2Header.tlv(0x02, [97]) + V2Header.tlv(0x02, [98])).bytes,
            .tlvDuplicate(type: 2)
        ),
        ("SSL of 4 bytes", V2Header(addresses: tcp4.addresses, tlvs: V2Header.tlv(0x20, [1, 0, 0, 0])).bytes, .tlvBadLength(type: 0x20, length: 4)),
        (
            "SSL sub-TLV overrun", V2Header(addresses: tcp4.addresses, tlvs: V2Header.tlv(0x20, [1, 0, 0, 0, 0, 0x21, 0, 9, 0x41])).bytes,
            .sslSubTLVOverrun(type: 0x21)
        ),
        ("TLV overrun in LOCAL", V2Header(versionCommand: 0x20, familyTransport: 0, tlvs: [0xEE, 0xFF, 0xFF]).bytes, .tlvOverrun(type: 0xEE)),
    ]

    @Test(arguments: malformed)
    func refused(name: String, bytes: [UInt8], reason: ProxyHeaderError) {
        #expect(parse(bytes) == .invalid(reason), "\(name)")
        expectSameAtEverySplit(bytes)
    }

    @Test("truncated headers wait; they are never taken for complete")
    func truncated() {
        let bytes = Self.tcp6.bytes
        for count in 0..<bytes.count {
            guard case .needMore = parse(Array(bytes[..<count])) else {
                Issue.record("\(count) of \(bytes.count) bytes: \(parse(Array(bytes[..<count])))")
                continue
            }
        }
    }

    @Test func modes() {
        #expect(parse(Self.tcp4.bytes, .v1) == .invalid(.versionNotAccepted(.v2)))
        #expect(parse([0x0D], .v1) == .invalid(.versionNotAccepted(.v2)))
        #expect(parse([0x16, 0x03, 0x01], .v2) == .invalid(.notProxyProtocol(firstByte: 0x16)), "a TLS ClientHello")
    }

    @Test func descriptions() {
        #expect(ProxyHeaderError.v2AddressTooShort(length: 4, family: 2).description == "address length 4 too short for AF_INET6")
        #expect(ProxyHeaderError.tlvOverrun(type: 2).description == "TLV 0x02 overruns the header")
        #expect(ProxyHeaderError.badV2Signature.description == "bad v2 signature")
        #expect(
            ProxyHeaderError.crc32cMismatch(sent: 0x1234_5678, computed: 0xDEAD_BEEF).description
                == "CRC32C mismatch: the header says 0x12345678, its bytes give 0xdeadbeef")
        #expect(ProxyHeaderError.v2TooLong(length: 70000, limit: 4096).description == "v2 header of 70000 bytes exceeds the limit of 4096")
    }
}
