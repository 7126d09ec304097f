import EchodSystem
import Testing

@Suite("CIDR address ranges")
struct AddressRangeTests {
    static func address(_ host: String) -> SocketAddress {
        SocketAddress(host: host, port: 4242)!
    }

    static func range(_ text: String) throws -> AddressRange {
        try AddressRange(parsing: text)
    }

    @Test(arguments: [
        ("10.0.0.0/8", "10.0.0.0/8", 8),
        ("127.0.0.1/32", "127.0.0.1/32", 32),
        ("127.0.0.1", "127.0.0.1/32", 32),
        ("0.0.0.0/0", "0.0.0.0/0", 0),
        ("::1/128", "::1/128", 128),
        ("::1", "::1/128", 128),
        ("2001:db8::/32", "2001:db8::/32", 32),
        ("2001:0db8:0000::/48", "2001:db8::/48", 48),
        ("::/0", "::/0", 0),
        ("fe80::/10", "fe80::/10", 10),
        ("192.168.1.0/024", "192.168.1.0/24", 24),
    ])
    func parsesAndPrintsBack(text: String, printed: String, length: Int) throws {
        let parsed = try Self.range(text)
        #expect(parsed.description == printed)
        #expect(parsed.prefixLength == length)
        #expect(try Self.range(parsed.description) == parsed)
    }

    @Test(arguments: [
        ("", "empty range"),
        ("10.0.0.1/8", "host bits set; did you mean 10.0.0.0/8?"),
        ("10.0.0.0/33", "bad prefix length \"33\": an IPv4 prefix is 0 to 32"),
        ("::/129", "bad prefix length \"129\": an IPv6 prefix is 0 to 128"),
        ("10.0.0.0/", "missing prefix length after \"/\"; e.g. 10.0.0.0/32"),
        ("10.0.0.0/-1", "bad prefix length \"-1\""),
        ("10.0.0.0/+8", "bad prefix length \"+8\""),
        ("10.0.0.0/8/8", "bad prefix length \"8/8\""),
        ("10.0.0.0/1000", "bad prefix length \"1000\""),
        ("/8", "missing address before \"/\""),
        ("10.0.0/8", "\"10.0.0\" is not a numeric IPv4 or IPv6 address"),
        ("localhost/32", "\"localhost\" is not a numeric IPv4 or IPv6 address"),
        ("[::1]/128", "without brackets"),
        ("fe80::1%eth0/128", "scope ids"),
        ("10.0.0.0\u{0}junk/8", "is not a numeric"),
        (" 10.0.0.0/8", "is not a numeric"),
        ("2001:db8::1/32", "host bits set; did you mean 2001:db8::/32?"),
        ("::ffff:10.0.0.0/104", "an IPv4-mapped range; write it as IPv4, 10.0.0.0/8"),
        ("::ffff:10.0.0.1/104", "an IPv4-mapped range; write it as IPv4, 10.0.0.0/8"),
        ("::ffff:127.0.0.1", "write it as IPv4, 127.0.0.1/32"),
    ])
    func refused(text: String, reason: String) {
        #expect {
            try AddressRange(parsing: text)
        } throws: { error in
            let found = (error as! AddressRange.ParseError).reason
            return found.contains(reason)
        }
    }

    @Test func ipv4Containment() throws {
        let range = try Self.range("10.0.0.0/8")
        #expect(range.contains(Self.address("10.0.0.0")))
        #expect(range.contains(Self.address("10.255.255.255")))
        #expect(range.contains(Self.address("10.1.2.3")))
        #expect(!range.contains(Self.address("11.0.0.0")))
        #expect(!range.contains(Self.address("9.255.255.255")))
        #expect(!range.contains(Self.address("::1")))
    }

    /// What a dual-stack `[::]` listener reports for an IPv4 client is matched as that IPv4 address, and only there.
    @Test func mappedPeersAreTheirIPv4Address() throws {
        let range = try Self.range("10.0.0.0/8")
        #expect(range.contains(Self.address("::ffff:10.1.2.3")))
        #expect(!range.contains(Self.address("::ffff:11.1.2.3")))
        #expect(try Self.range("0.0.0.0/0").contains(Self.address("::ffff:192.0.2.1")))
        #expect(try Self.range("127.0.0.1/32").contains(Self.address("::ffff:127.0.0.1")))
        #expect(try !Self.range("::/0").contains(Self.address("::ffff:10.1.2.3")))
        #expect(try !Self.range("::/0").contains(Self.address("10.1.2.3")))
        // Not mapped: the IPv4-compatible form and its neighbours stay IPv6.
        #expect(try !Self.range("10.0.0.0/8").contains(Self.address("::10.1.2.3")))
        #expect(try !Self.range("10.0.0.0/8").contains(Self.address("::fffe:10.1.2.3")))
        #expect(try Self.range("::/0").contains(Self.address("::fffe:10.1.2.3")))
    }

    @Test func unixPeersAreInNoRange() throws {
        let peer = SocketAddress.unixPeer(uid: 0, gid: 0, pid: 1)
        for text in ["0.0.0.0/0", "::/0", "0.0.0.0/32", "::/128"] {
            #expect(try !Self.range(text).contains(peer), "\(text)")
        }
    }

    @Test func portIsIgnored() throws {
        let range = try Self.range("192.0.2.7/32")
        #expect(range.contains(SocketAddress(host: "192.0.2.7", port: 1)!))
        #expect(range.contains(SocketAddress(host: "192.0.2.7", port: 65535)!))
    }

    /// Each boundary: the first and last address inside, and the neighbours just outside when they exist.
    @Test(arguments: [
        ("0.0.0.0/0", ["0.0.0.0", "255.255.255.255", "128.0.0.0"], [String]()),
        ("0.0.0.0/1", ["0.0.0.0", "127.255.255.255"], ["128.0.0.0", "255.255.255.255"]),
        ("128.0.0.0/1", ["128.0.0.0", "255.255.255.255"], ["127.255.255.255", "0.0.0.0"]),
        ("192.0.2.0/31", ["192.0.2.0", "192.0.2.1"], ["192.0.2.2", "192.0.1.255"]),
        ("192.0.2.1/32", ["192.0.2.1"], ["192.0.2.0", "192.0.2.2"]),
        ("255.255.255.255/32", ["255.255.255.255"], ["255.255.255.254"]),
        ("::/0", ["::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "8000::"], []),
        ("::/1", ["::", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], ["8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
        ("8000::/1", ["8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], ["7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::"]),
        ("2001:db8::/63", ["2001:db8::", "2001:db8:0:1:ffff:ffff:ffff:ffff"], ["2001:db8:0:2::", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"]),
        ("2001:db8::/64", ["2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"], ["2001:db8:0:1::", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"]),
        ("2001:db8::/65", ["2001:db8::", "2001:db8::7fff:ffff:ffff:ffff"], ["2001:db8::8000:0:0:0", "2001:db8:0:1::"]),
        ("2001:db8::/127", ["2001:db8::", "2001:db8::1"], ["2001:db8::2", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"]),
        ("2001:db8::1/128", ["2001:db8::1"], ["2001:db8::", "2001:db8::2", "2001:db9::1"]),
        ("::1/128", ["::1"], ["::", "::2", "::ffff:0.0.0.1"]),
    ])
    func boundaries(range text: String, inside: [String], outside: [String]) throws {
        let range = try Self.range(text)
        for host in inside { #expect(range.contains(Self.address(host)), "\(host) should be in \(text)") }
        for host in outside { #expect(!range.contains(Self.address(host)), "\(host) should not be in \(text)") }
    }

    /// The mapped form of every IPv4 boundary answers as the IPv4 address does.
    @Test(arguments: ["0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1", "192.0.2.0/31", "192.0.2.1/32", "10.0.0.0/8"])
    func mappedAgreesWithIPv4(range text: String) throws {
        let range = try Self.range(text)
        for host in ["0.0.0.0", "127.255.255.255", "128.0.0.0", "192.0.2.0", "192.0.2.1", "192.0.2.2", "10.9.8.7", "255.255.255.255"] {
            #expect(range.contains(Self.address(host)) == range.contains(Self.address("::ffff:" + host)), "\(host) in \(text)")
        }
    }

    @Test func equalRangesHashAlike() throws {
        #expect(try Self.range("2001:db8::/32") == Self.range("2001:0DB8:0::/32"))
        #expect(try Self.range("10.0.0.0/8") != Self.range("10.0.0.0/9"))
        #expect(Set([try Self.range("::1"), try Self.range("::1/128")]).count == 1)
    }
}
