import EchodText
import Testing

@Suite("Unix socket addresses")
struct UnixPathTests {
    @Test(arguments: [
        ("unix:/run/echod/echo.sock", "/run/echod/echo.sock", false, "/run/echod/echo.sock"),
        ("unix:/s", "/s", false, "/s"),
        ("unix:@echod", "echod", true, "@echod"),
        ("unix:@with space/and:colon", "with space/and:colon", true, "@with space/and:colon"),
    ])
    func valid(text: String, path: String, abstract: Bool, display: String) throws {
        let parsed = try UnixPath(parsing: text)
        #expect(parsed.path == path && parsed.isAbstract == abstract && parsed.displayName == display)
        #expect(parsed.description == text)
        #expect(try UnixPath(parsing: parsed.description) == parsed)
    }

    @Test(arguments: [
        ("unix:", "empty socket path"),
        ("unix:@", "empty abstract socket name"),
        ("unix:echo.sock", "must be absolute"),
        ("unix:./echo.sock", "must be absolute"),
        ("unix:/run/echod/", "names a directory"),
        ("unix:/run/\u{0}x", "NUL"),
        ("127.0.0.1:7", "expected unix:/PATH"),
        ("unix:/" + String(repeating: "a", count: 107), "path too long (108 bytes, the limit is 107)"),
        ("unix:@" + String(repeating: "b", count: 108), "path too long (108 bytes, the limit is 107)"),
    ])
    func invalid(text: String, reason: String) {
        #expect {
            try UnixPath(parsing: text)
        } throws: { error in
            (error as! InvalidValue).reason.contains(reason)
        }
    }

    @Test func longestPathAndNameFit() throws {
        // sun_path is 108 bytes: 107 for the path and its NUL, or the abstract name after its NUL.
        #expect(try UnixPath(parsing: "unix:/" + String(repeating: "a", count: 106)).path.utf8.count == 107)
        #expect(try UnixPath(parsing: "unix:@" + String(repeating: "b", count: 107)).path.utf8.count == 107)
        // Counted in bytes, not characters: "é" is two.
        #expect(throws: InvalidValue.self) { try UnixPath(parsing: "unix:/" + String(repeating: "é", count: 54)) }
    }

    @Test func onlyTheUnixPrefixSelectsThisGrammar() {
        #expect(UnixPath.isUnix("unix:/x") && UnixPath.isUnix("unix:@x"))
        #expect(!UnixPath.isUnix("127.0.0.1:7") && !UnixPath.isUnix("[::1]:7") && !UnixPath.isUnix("UNIX:/x"))
    }
}
