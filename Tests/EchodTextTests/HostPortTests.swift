import EchodText
import Testing

@Suite("HOST:PORT, the one address grammar")
struct HostPortTests {
    @Test(arguments: [
        ("127.0.0.1:8888", "127.0.0.1", UInt16(8888), false),
        ("[::1]:7", "::1", 7, true),
        ("localhost:65535", "localhost", 65535, false),
        ("0.0.0.0:1", "0.0.0.0", 1, false),
    ])
    func accepted(text: String, host: String, port: UInt16, bracketed: Bool) throws {
        let parsed = try HostPort(parsing: text)
        #expect(parsed == HostPort(host: host, port: port, bracketed: bracketed))
        #expect(parsed.description == text, "prints back in the form it accepts")
    }

    @Test(arguments: [
        ("", "empty address; expected HOST:PORT, e.g. 127.0.0.1:8888 or [::1]:8888"),
        ("127.0.0.1", "missing port; expected HOST:PORT, e.g. 127.0.0.1:8888"),
        ("::1:7", "an IPv6 address must be written in brackets, e.g. [::1]:8888"),
        (":7", "missing host; expected HOST:PORT, e.g. 127.0.0.1:7"),
        ("[::1", "missing \"]\" after the IPv6 address; expected [IPV6]:PORT, e.g. [::1]:8888"),
        ("[::1]7", "missing port; expected [IPV6]:PORT, e.g. [::1]:8888"),
        ("[]:7", "empty IPv6 address in brackets; e.g. [::1]:8888"),
        ("h:", "missing port after \":\""),
        ("h:x", "port \"x\" is not a number"),
        ("h:0", "port 0 is out of range: must be between 1 and 65535"),
        ("h:65536", "port 65536 is out of range: must be between 1 and 65535"),
        ("h:-1", "port \"-1\" is not a number"),
    ])
    func refused(text: String, reason: String) {
        #expect(throws: InvalidValue(reason: reason)) { try HostPort(parsing: text) }
    }

    @Test("a host with a colon is printed in brackets even when built without them")
    func bracketsIPv6() {
        #expect(HostPort(host: "::1", port: 7, bracketed: false).description == "[::1]:7")
    }
}

@Suite("Numbers as echod prints them")
struct NumberTextTests {
    @Test func fixed() {
        #expect(NumberText.fixed(0.214, decimals: 2) == "0.21")
        #expect(NumberText.fixed(0.215, decimals: 2) == "0.22" || NumberText.fixed(0.215, decimals: 2) == "0.21")  // binary 0.215
        #expect(NumberText.fixed(2.5, decimals: 0) == "3")
        #expect(NumberText.fixed(-0.0001, decimals: 2) == "0.00", "no negative zero")
        #expect(NumberText.fixed(-1.5, decimals: 1) == "-1.5")
        #expect(NumberText.fixed(2.50, decimals: 2, trimZeros: true) == "2.5")
        #expect(NumberText.fixed(3.0, decimals: 2, trimZeros: true) == "3")
        #expect(NumberText.fixed(.nan, decimals: 2) == "0")
        #expect(NumberText.fixed(.infinity, decimals: 1) == "0")
    }

    @Test func grouped() {
        #expect(NumberText.grouped(0) == "0")
        #expect(NumberText.grouped(999) == "999")
        #expect(NumberText.grouped(1000) == "1,000")
        #expect(NumberText.grouped(1_234_567) == "1,234,567")
    }
}

@Suite("Escaping for reports")
struct EscapingTests {
    @Test func jsonString() {
        #expect(Escaping.jsonString("plain") == #""plain""#)
        #expect(Escaping.jsonString("a\"b\\c") == #""a\"b\\c""#)
        #expect(Escaping.jsonString("l1\nl2\t\u{1}") == #""l1\nl2\t\u0001""#)
        #expect(Escaping.jsonString("\u{2028}é") == #""\u2028é""#)
    }
}
