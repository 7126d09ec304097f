import EchodProxyProtocol
import EchodTestSupport
import EchodText
import Glibc
import Testing

typealias Writer = ProxyHeaderWriter

/// Parses `bytes` (which must be exactly one header) and returns what it says as the writer's values.
func readBack(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> (ProxyHeader, Writer.Addresses, Writer.TLVs)? {
    guard let parsed = header(parse(bytes), sourceLocation: sourceLocation) else { return nil }
    #expect(parsed.length == bytes.count, "the header is \(parsed.length) of \(bytes.count) bytes written", sourceLocation: sourceLocation)
    return bytes.withUnsafeBytes { (parsed, Writer.Addresses(parsed.addresses, in: $0), Writer.TLVs(parsed.tlvs, in: $0)) }
}

/// The text glibc's inet_ntop gives for an IPv6 address (the form v1 must use).
func inetNtop(_ value: UInt128) -> String {
    var address = in6_addr()
    withUnsafeMutableBytes(of: &address) { raw in
        for index in 0..<16 { raw[index] = UInt8(truncatingIfNeeded: value >> UInt128(8 * (15 - index))) }
    }
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
    return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

@Suite("PROXY protocol writer: what it writes, the parser reads back")
struct WriterTests {
    static let source4 = v4(198, 18, 0, 7, port: 40001)
    static let destination4 = v4(127, 0, 0, 1, port: 9000)
    static let source6 = ProxyAddress(ipv6: 0x2001_0002_0000_0000_0000_0000_0000_0007, port: 40001)
    static let destination6 = ProxyAddress(ipv6: 1, port: 9000)

    @Test("v1: TCP4, TCP6 and UNKNOWN, byte for byte, and parsed back equal")
    func v1() throws {
        let tcp4 = try Writer.v1(.inet(source: Self.source4, destination: Self.destination4))
        #expect(String(decoding: tcp4, as: UTF8.self) == "PROXY TCP4 198.18.0.7 127.0.0.1 40001 9000\r\n")
        let tcp6 = try Writer.v1(.inet(source: Self.source6, destination: Self.destination6))
        #expect(String(decoding: tcp6, as: UTF8.self) == "PROXY TCP6 2001:2::7 ::1 40001 9000\r\n")
        let unknown = try Writer.v1(.unspecified)
        #expect(String(decoding: unknown, as: UTF8.self) == "PROXY UNKNOWN\r\n")
        for (bytes, addresses) in [
            (tcp4, Writer.Addresses.inet(source: Self.source4, destination: Self.destination4)),
            (tcp6, .inet(source: Self.source6, destination: Self.destination6)), (unknown, .unspecified),
        ] {
            let (parsed, back, tlvs) = try #require(readBack(bytes))
            #expect(parsed.version == .v1 && parsed.command == .proxy)
            #expect(back == addresses)
            #expect(tlvs == Writer.TLVs())
        }
    }

    @Test("v1: the longest line fits the parser's 107 bytes, ports 0 and 65535, addresses 0 and all ones")
    func v1Extremes() throws {
        let ones = ProxyAddress(ipv6: .max, port: 65535)
        let longest = try Writer.v1(.inet(source: ProxyAddress(ipv6: 0xffff_ffff_ffff_ffff_ffff_ffff_0000_0000 | 0xffff_ffff, port: 65535), destination: ones))
        #expect(longest.count <= ProxyHeaderParser.v1MaximumLength)
        for addresses in [
            Writer.Addresses.inet(source: ones, destination: ones),
            .inet(source: ProxyAddress(ipv6: 0, port: 0), destination: ProxyAddress(ipv6: 0, port: 0)),
            .inet(source: v4(0, 0, 0, 0, port: 0), destination: v4(255, 255, 255, 255, port: 65535)),
        ] {
            let bytes = try Writer.v1(addresses)
            #expect(try #require(readBack(bytes)).1 == addresses, "\(String(decoding: bytes, as: UTF8.self))")
        }
    }

    @Test("v1 writes IPv6 as glibc's inet_ntop does (the specification's form), for edge cases and random addresses")
    func v1IPv6Text() throws {
        var rng = SeededRandom(seed: 13)
        var values: [UInt128] = [
            0, 1, .max, 0xffff_7f00_0001, 0x0102_0304, 0x0001_0000, 0x2001_0db8_0000_0000_0001_0000_0000_0001,
            0x2001_0db8_0000_0001_0000_0000_0000_0001, 0x0000_0000_0001_0000_0000_0000_0000_0000, 0xffff_0000_0000_0000_0000_0000_0000_0000,
            0x0001_0000_0000_0000_0000_0000_0000_0000, 0x0000_0000_0000_0000_0000_0000_ffff_0000, 0x0000_0000_0000_0000_0000_0001_0000_0001,
            0x0000_0000_0000_0000_0000_ffff_0000_0000, 0x0064_ff9b_0000_0000_0000_0000_c000_0201,
        ]
        for _ in 0..<2000 {
            // Random groups, each zero half of the time, so that runs of zeros of every length and place occur.
            var value: UInt128 = 0
            for _ in 0..<8 { value = value << 16 | (rng.next() & 1 == 0 ? 0 : UInt128(rng.next() & 0xffff)) }
            values.append(value)
        }
        for value in values {
            let line = try Writer.v1(.inet(source: ProxyAddress(ipv6: value, port: 1), destination: ProxyAddress(ipv6: 1, port: 2)))
            #expect(String(decoding: line, as: UTF8.self) == "PROXY TCP6 \(inetNtop(value)) ::1 1 2\r\n")
            #expect(try #require(readBack(line)).1 == .inet(source: ProxyAddress(ipv6: value, port: 1), destination: ProxyAddress(ipv6: 1, port: 2)))
        }
    }

    @Test("v1 refuses what it cannot say: mixed families, Unix addresses")
    func v1Refusals() {
        #expect(throws: Writer.Failure.mixedFamilies) { try Writer.v1(.inet(source: Self.source4, destination: Self.destination6)) }
        #expect(throws: Writer.Failure.unixInV1) { try Writer.v1(.unix(source: Array("/a".utf8), destination: [])) }
    }

    @Test("v2: PROXY over IPv4 and IPv6, LOCAL, UNSPEC, Unix, with and without TLVs, parsed back equal")
    func v2() throws {
        let ssl = Writer.SSL(client: 5, verify: 0x0102_0304, version: Array("TLSv1.3".utf8), commonName: Array("client".utf8), cipher: [])
        let tlvSets = [
            Writer.TLVs(), Writer.TLVs(authority: Array("echo.example".utf8)), Writer.TLVs(uniqueID: Array(repeating: 0x41, count: 128)),
            Writer.TLVs(authority: Array("a".utf8), uniqueID: Array("id-1".utf8), crc32c: true),
            Writer.TLVs(alpn: Array("h2".utf8), authority: [], uniqueID: [], netns: Array("blue".utf8), ssl: ssl, crc32c: true),
            Writer.TLVs(crc32c: true), Writer.TLVs(authority: Array(repeating: 0x62, count: 255)),
        ]
        let addressSets: [Writer.Addresses] = [
            .inet(source: Self.source4, destination: Self.destination4), .inet(source: Self.source6, destination: Self.destination6),
            .unspecified, .unix(source: Array("/run/client.sock".utf8), destination: Array("\0abstract".utf8)),
            .unix(source: Array(repeating: 0x70, count: 108), destination: []),
        ]
        for command in [ProxyCommand.proxy, .local] {
            for addresses in addressSets {
                for tlvs in tlvSets {
                    let bytes = try Writer.v2(command, addresses, tlvs: tlvs)
                    #expect(bytes.count == (try Writer.v2Length(addresses, tlvs: tlvs)))
                    let (parsed, back, backTLVs) = try #require(readBack(bytes))
                    #expect(parsed.version == .v2)
                    #expect(parsed.command == command)
                    // LOCAL: the receiver ignores the addresses sent (the connection's own endpoints stand).
                    #expect(back == (command == .local ? .unspecified : addresses), "\(command) \(addresses)")
                    #expect(backTLVs == tlvs)
                    expectSameAtEverySplit(bytes, .v2)
                }
            }
        }
    }

    @Test("v2 LOCAL with no addresses is HAProxy's 16-byte health check header")
    func v2Local() throws {
        #expect(try Writer.v2(.local, .unspecified) == HAProxyCaptureTests.bytes("v2-local"))
    }

    @Test("the writer gives HAProxy's own headers again, byte for byte (its captures, TLV order included)")
    func haproxyCaptures() throws {
        for name in HAProxyCaptureTests.captures.keys.sorted() {
            let capture = HAProxyCaptureTests.bytes(name)
            guard case .complete(_, let consumed) = parse(capture) else {
                Issue.record("\(name) does not parse")
                continue
            }
            let (parsed, addresses, tlvs) = try #require(readBack(Array(capture[0..<consumed])))
            let written = try parsed.version == .v1 ? Writer.v1(addresses) : Writer.v2(parsed.command, addresses, tlvs: tlvs)
            #expect(written == Array(capture[0..<consumed]), "\(name)")
        }
    }

    @Test("a CRC32C the writer computes is the one the parser verifies; a changed byte fails it")
    func crc() throws {
        var bytes = try Writer.v2(
            .proxy, .inet(source: Self.source4, destination: Self.destination4), tlvs: Writer.TLVs(uniqueID: Array("x".utf8), crc32c: true))
        let parsed = try #require(readBack(bytes)).0
        #expect(parsed.tlvs.crc32c != nil)
        bytes[bytes.count - 1] ^= 1
        guard case .invalid(.crc32cMismatch) = parse(bytes) else {
            Issue.record("a corrupted header parsed: \(parse(bytes))")
            return
        }
    }

    @Test("v2 refuses what the parser would refuse")
    func v2Refusals() {
        let inet = Writer.Addresses.inet(source: Self.source4, destination: Self.destination4)
        #expect(throws: Writer.Failure.mixedFamilies) { try Writer.v2(.proxy, .inet(source: Self.source4, destination: Self.destination6)) }
        #expect(throws: Writer.Failure.tlvTooLong(type: 2, length: 256)) {
            try Writer.v2(.proxy, inet, tlvs: Writer.TLVs(authority: Array(repeating: 0x61, count: 256)))
        }
        #expect(throws: Writer.Failure.tlvTooLong(type: 5, length: 129)) {
            try Writer.v2(.proxy, inet, tlvs: Writer.TLVs(uniqueID: Array(repeating: 0x61, count: 129)))
        }
        #expect(throws: Writer.Failure.unixPathTooLong(length: 109)) {
            try Writer.v2(.proxy, .unix(source: Array(repeating: 0x61, count: 109), destination: []))
        }
        #expect(throws: Writer.Failure.tlvTooLong(type: 1, length: 65536)) {
            try Writer.v2(.proxy, inet, tlvs: Writer.TLVs(alpn: Array(repeating: 0x61, count: 65536)))
        }
        let big = Array(repeating: UInt8(0x61), count: 40000)
        #expect(throws: Writer.Failure.headerTooLong(length: 16 + 12 + 80006)) { try Writer.v2(.proxy, inet, tlvs: Writer.TLVs(alpn: big, netns: big)) }
    }

    @Test("into a caller's buffer: the same bytes, and a short buffer is refused with what it needs")
    func intoBuffer() throws {
        let addresses = Writer.Addresses.inet(source: Self.source6, destination: Self.destination6)
        var buffer = [UInt8](repeating: 0xEE, count: 200)
        let v1Count = try buffer.withUnsafeMutableBytes { (raw) throws(Writer.Failure) -> Int in try Writer.v1(addresses, into: raw) }
        #expect(Array(buffer[0..<v1Count]) == (try Writer.v1(addresses)))
        #expect(buffer[v1Count] == 0xEE, "nothing written past the header")
        let v2Count = try buffer.withUnsafeMutableBytes { (raw) throws(Writer.Failure) -> Int in try Writer.v2(.proxy, addresses, into: raw) }
        #expect(v2Count == Writer.v2InetMaximumLength)
        #expect(Array(buffer[0..<v2Count]) == (try Writer.v2(.proxy, addresses)))
        var short = [UInt8](repeating: 0, count: 20)
        #expect(throws: Writer.Failure.bufferTooSmall(needed: 52, capacity: 20)) {
            try short.withUnsafeMutableBytes { (raw) throws(Writer.Failure) -> Int in try Writer.v2(.proxy, addresses, into: raw) }
        }
        #expect(throws: Writer.Failure.bufferTooSmall(needed: 37, capacity: 20)) {
            try short.withUnsafeMutableBytes { (raw) throws(Writer.Failure) -> Int in try Writer.v1(addresses, into: raw) }
        }
    }

    @Test("--proxy-protocol's values: v1 and v2, nothing else")
    func versionText() throws {
        #expect(try ProxyVersion(parsing: "v1") == .v1)
        #expect(try ProxyVersion(parsing: "v2") == .v2)
        for bad in ["", "1", "V1", "v3", "any", "off", " v1"] {
            #expect(throws: InvalidValue.self, "\(bad)") { try ProxyVersion(parsing: bad) }
        }
    }
}

@Suite("The writer allocates nothing into a caller's buffer")
struct WriterAllocationTests {
    /// Measured in release, like the parser's AllocationTests (its header says how to preload the counter).
    @Test(
        "v1 and v2 headers of IPv4 and IPv6 addresses (what bench writes per connection), and v2 with TLVs and a CRC32C",
        .enabled(if: threadAllocations != nil, "needs LD_PRELOAD of Tests/malloc-count/malloc_count.c"))
    func noAllocation() throws {
        let count = try #require(threadAllocations)
        let v4 = Writer.Addresses.inet(source: WriterTests.source4, destination: WriterTests.destination4)
        let v6 = Writer.Addresses.inet(source: WriterTests.source6, destination: WriterTests.destination6)
        let tlvs = Writer.TLVs(authority: Array("echo.example".utf8), uniqueID: Array("id-1".utf8), crc32c: true)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
        defer { buffer.deallocate() }
        _ = try Writer.v2(.proxy, v4, tlvs: tlvs, into: buffer)  // the CRC32C table, once per process
        let before = count()
        var written = 0
        for _ in 0..<100 {
            written += try Writer.v1(v4, into: buffer)
            written += try Writer.v1(v6, into: buffer)
            written += try Writer.v2(.proxy, v4, into: buffer)
            written += try Writer.v2(.proxy, v6, into: buffer)
            written += try Writer.v2(.local, .unspecified, into: buffer)
            written += try Writer.v2(.proxy, v4, tlvs: tlvs, into: buffer)
        }
        let allocated = count() - before
        #expect(allocated == 0, "\(allocated) allocations writing \(written) bytes")
    }
}
