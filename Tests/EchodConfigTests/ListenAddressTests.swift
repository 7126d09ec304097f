import Testing

@testable import EchodConfig

@Suite("Listen addresses")
struct ListenAddressTests {
    @Test(arguments: [
        ("127.0.0.1:8888", "127.0.0.1", 8888, ListenAddress.Family.ipv4, "127.0.0.1:8888"),
        ("0.0.0.0:7", "0.0.0.0", 7, .ipv4, "0.0.0.0:7"),
        ("[::1]:8888", "::1", 8888, .ipv6, "[::1]:8888"),
        ("[::]:8888", "::", 8888, .ipv6, "[::]:8888"),
        ("[0:0::1]:1", "::1", 1, .ipv6, "[::1]:1"),
        ("[2001:DB8::1]:65535", "2001:db8::1", 65535, .ipv6, "[2001:db8::1]:65535"),
        ("[::ffff:127.0.0.1]:7", "::ffff:127.0.0.1", 7, .ipv6, "[::ffff:127.0.0.1]:7"),
    ])
    func valid(text: String, host: String, port: Int, family: ListenAddress.Family, description: String) throws {
        let address = try ListenAddress(parsing: text)
        #expect(address.host == host && Int(address.port) == port && address.family == family)
        #expect(address.description == description)
        #expect(try ListenAddress(parsing: address.description) == address)
    }

    @Test(arguments: [
        ("", "empty address"),
        ("127.0.0.1", "missing port"),
        ("127.0.0.1:", "missing port after \":\""),
        ("127.0.0.1:0", "between 1 and 65535"),
        ("127.0.0.1:65536", "between 1 and 65535"),
        ("127.0.0.1:http", "is not a number"),
        ("127.0.0.1:-1", "is not a number"),
        ("localhost:80", "\"localhost\" is a hostname; only numeric addresses"),
        ("example.com:80", "is a hostname"),
        ("256.1.1.1:80", "not a numeric IPv4 address"),
        ("127.1:80", "not a numeric IPv4 address"),
        ("::1:8888", "must be written in brackets"),
        ("[::1]", "missing port"),
        ("[::1]8888", "missing port"),
        ("[::1:8888", "missing \"]\""),
        ("[127.0.0.1]:80", "not a numeric IPv6 address"),
        ("[fe80::1%eth0]:80", "scope ids"),
        (":80", "missing host; use 0.0.0.0:80 for every IPv4 address or [::]:80"),
        ("[]:80", "empty IPv6 address in brackets"),
    ])
    func invalid(text: String, reason: String) {
        #expect {
            try ListenAddress(parsing: text)
        } throws: { error in
            let problem = error as! ConfigProblem
            return problem.value == text && problem.reason.contains(reason) && problem.source.isEmpty && problem.key.isEmpty
        }
    }

    @Test func duplicatesAreAnError() throws {
        let found = try #require(problem("listen: ['127.0.0.1:7', '[::1]:7', '127.0.0.1:7']\n"))
        #expect(found.key == "listen[2]" && found.value == "127.0.0.1:7" && found.reason == "listed twice (also item 0)")
    }

    @Test func twoSpellingsOfOneAddressAreDuplicates() throws {
        let found = try #require(problem("listen: ['[::1]:7', '[0::1]:7']\n"))
        #expect(found.key == "listen[1]" && found.reason.contains("listed twice"))
    }

    @Test func wildcardOverlapsASpecificAddressOfItsFamily() throws {
        let found = try #require(problem("listen: ['0.0.0.0:7', '127.0.0.1:7']\n"))
        #expect(found.key == "listen[1]" && found.reason.contains("wildcard"))
        // Different ports, or different families, do not collide.
        #expect(settings("listen: ['0.0.0.0:7', '127.0.0.1:8', '[::]:7']\n")?.listen.count == 3)
    }

    @Test func problemInABlockListPointsAtTheItemLine() throws {
        let found = try #require(problem("listen:\n  - 127.0.0.1:7\n  - 127.0.0.1:70000\n"))
        #expect(found.key == "listen[1]" && found.line == 3)
    }
}
