import EchodProxyProtocol
import Testing

@Suite("PROXY protocol v1: the text line")
struct V1Tests {
    @Test func tcp4() throws {
        let line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        let parsed = try #require(header(parse(line)))
        #expect(parsed.version == .v1)
        #expect(parsed.command == .proxy)
        #expect(parsed.addresses == inet(v4(192, 168, 0, 1, port: 56324), v4(192, 168, 0, 11, port: 443)))
        #expect(parsed.length == line.utf8.count)
        #expect(parsed.tlvs == ProxyTLVs())
        #expect(header(parse(line, .v1)) == parsed)
    }

    @Test func tcp4Extremes() throws {
        let line = "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n"
        let parsed = try #require(header(parse(line)))
        #expect(parsed.addresses == inet(v4(255, 255, 255, 255, port: 65535), v4(0, 0, 0, 0, port: 0)))
        #expect(parsed.length == 44)
    }

    @Test(arguments: [
        ("::1", UInt128(1)),
        ("2001:db8::ff00:42:8329", 0x2001_0db8_0000_0000_0000_ff00_0042_8329),
        ("2001:DB8:0:0:0:0:0:1", 0x2001_0db8_0000_0000_0000_0000_0000_0001),
        ("::ffff:127.0.0.1", 0x0000_0000_0000_0000_0000_ffff_7f00_0001),
        ("fe80::", 0xfe80_0000_0000_0000_0000_0000_0000_0000),
        ("::", 0),
        ("1:2:3:4:5:6:7:8", 0x0001_0002_0003_0004_0005_0006_0007_0008),
        ("1:2:3:4:5:6:1.2.3.4", 0x0001_0002_0003_0004_0005_0006_0102_0304),
        ("1::8", 0x0001_0000_0000_0000_0000_0000_0000_0008),
    ])
    func tcp6(text: String, value: UInt128) throws {
        let line = "PROXY TCP6 \(text) ::1 1 2\r\n"
        let parsed = try #require(header(parse(line)))
        #expect(parsed.addresses == inet(ProxyAddress(ipv6: value, port: 1), ProxyAddress(ipv6: 1, port: 2)))
    }

    @Test func ipv6SameBytesAsTheKernel() {
        // in6_addr for 2001:db8::1 holds 20 01 0d b8 ... 00 01 in memory: `high` and `low` are those bytes loaded.
        let address = ProxyAddress(ipv6: 0x2001_0db8_0000_0000_0000_0000_0000_0001, port: 0)
        let bytes = withUnsafeBytes(of: (address.high, address.low)) { Array($0) }
        #expect(bytes == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        let v4bytes = withUnsafeBytes(of: v4(127, 0, 0, 1, port: 0).high) { Array($0) }
        #expect(v4bytes == [127, 0, 0, 1, 0, 0, 0, 0])
        #expect(address.value == 0x2001_0db8_0000_0000_0000_0000_0000_0001 && v4(127, 0, 0, 1, port: 0).value == 0x7f00_0001)
    }

    @Test(arguments: ["PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535\r\n", "PROXY UNKNOWN anything at all\r\n"])
    func unknown(line: String) throws {
        let parsed = try #require(header(parse(line)))
        #expect(parsed.addresses == .none)
        #expect(parsed.command == .proxy)
        #expect(parsed.length == line.utf8.count)
    }

    @Test func longestLineAccepted() throws {
        let line = "PROXY UNKNOWN " + String(repeating: "x", count: 107 - 16) + "\r\n"
        #expect(line.utf8.count == 107)
        #expect(header(parse(line))?.length == 107)
        let tooLong = "PROXY UNKNOWN " + String(repeating: "x", count: 108 - 16) + "\r\n"
        #expect(parse(tooLong) == .invalid(.v1LineTooLong))
        #expect(parse(String(tooLong.prefix(107))) == .invalid(.v1LineTooLong), "refused at byte 108, before any CRLF")
        #expect(parse(String(tooLong.prefix(106))) == .needMore(minimum: 107))
    }

    @Test func clientDataAfterTheLineIsKept() {
        let bytes = Array("PROXY TCP4 10.0.0.1 10.0.0.2 1000 7\r\nhello\n".utf8)
        guard case .complete(_, let consumed) = parse(bytes) else {
            Issue.record("not complete")
            return
        }
        #expect(Array(bytes[consumed...]) == Array("hello\n".utf8))
    }

    @Test(arguments: [
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 65535 0\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN x y\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "GET / HTTP/1.1\r\n",
        "PROXY TCP5 x\r\n",
    ])
    func sameDecisionAtEverySplit(line: String) {
        expectSameAtEverySplit(Array(line.utf8))
    }

    @Test(arguments: [
        ("hello\r\n", ProxyHeaderError.notProxyProtocol(firstByte: UInt8(ascii: "h"))),
        ("PROXI TCP4", .badV1Signature),
        ("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", .v1BadProtocol),
        ("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", .v1BadProtocol),
        ("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", .v1BadProtocol),
        ("PROXY TCP4\r\n", .v1ExpectedSpace(after: .proto)),
        ("PROXY UNKNOWNX\r\n", .v1BadProtocol),
        ("PROXY UNKNOWN\r\r\n", .v1MissingCRLF),
        ("PROXY UNKNOWN\n", .v1BadProtocol),
        ("PROXY UNKNOWN a\nb\r\n", .v1MissingCRLF),
        ("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", .v1BadAddress(.destinationAddress, .ipv4)),
        ("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", .v1BadPort(.sourcePort)),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", .v1BadPort(.destinationPort)),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", .v1MissingCRLF),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r", .v1MissingCRLF),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", .v1MissingCRLF),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", .v1PortOutOfRange(.sourcePort)),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", .v1PortOutOfRange(.destinationPort)),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", .v1PortLeadingZero(.sourcePort)),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", .v1PortLeadingZero(.destinationPort)),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1x 2\r\n", .v1ExpectedSpace(after: .sourcePort)),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", .v1BadPort(.sourcePort)),
        ("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv4)),
        ("PROXY TCP4 1.2.3.4 ::1 1 2\r\n", .v1BadAddress(.destinationAddress, .ipv4)),
        ("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv4)),
        ("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv4)),
        ("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv4)),
        ("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv4)),
        ("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv4)),
        ("PROXY TCP4 localhost 5.6.7.8 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv4)),
        ("PROXY TCP6 ::1::2 ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP6 12345:: ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP6 :1 ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP6 1: ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP6 ::1.2.3.4:5 ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP6 [::1] ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP6 fe80::1%lo ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
        ("PROXY TCP6 ::g ::1 1 2\r\n", .v1BadAddress(.sourceAddress, .ipv6)),
    ])
    func refused(line: String, reason: ProxyHeaderError) {
        #expect(parse(line) == .invalid(reason), "\(line.debugDescription)")
        expectSameAtEverySplit(Array(line.utf8))
    }

    @Test("a plain client is refused at its first byte; the signature at its first wrong byte")
    func refusedEarly() {
        #expect(parse("h") == .invalid(.notProxyProtocol(firstByte: UInt8(ascii: "h"))))
        #expect(parse("PRO") == .needMore(minimum: 4))
        #expect(parse("PRX") == .invalid(.badV1Signature))
        #expect(parse("PROXY TCP4 1.2.x") == .invalid(.v1BadAddress(.sourceAddress, .ipv4)))
        #expect(parse("PROXY TCP4 1.2.3.4 5.6.7.8 65536") == .invalid(.v1PortOutOfRange(.sourcePort)))
        #expect(parse("") == .needMore(minimum: 1))
    }

    @Test("the mode decides which versions are accepted")
    func modes() {
        let line = "PROXY UNKNOWN\r\n"
        #expect(parse(line, .v2) == .invalid(.versionNotAccepted(.v1)))
        #expect(parse("P", .v2) == .invalid(.versionNotAccepted(.v1)))
        #expect(header(parse(line, .v1)) != nil)
        #expect(parse("hello", .v1) == .invalid(.notProxyProtocol(firstByte: UInt8(ascii: "h"))))
    }

    @Test("every reason reads as a sentence for the log")
    func descriptions() {
        #expect(ProxyHeaderError.v1LineTooLong.description == "v1 line too long (no CRLF in the first 107 bytes)")
        #expect(ProxyHeaderError.v1PortOutOfRange(.sourcePort).description == "v1 source port is out of range (0-65535)")
        #expect(ProxyHeaderError.v1BadAddress(.destinationAddress, .ipv4).description == "v1 destination address is not an IPv4 address")
        #expect(ProxyHeaderError.notProxyProtocol(firstByte: 0x68).description == "not a PROXY protocol header (first byte 0x68)")
        #expect(ProxyHeaderError.versionNotAccepted(.v2).description == "a PROXY protocol v2 header where only v1 is accepted")
    }
}
