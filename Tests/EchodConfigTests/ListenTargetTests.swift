import EchodText
import Testing

@testable import EchodConfig

@Suite("Unix listen entries and unix.* keys")
struct ListenTargetTests {
    @Test func unixEntriesSitBesideTCPOnes() throws {
        let s = try #require(settings("listen: ['127.0.0.1:7', 'unix:/run/echod/echo.sock', 'unix:@echod']\n"))
        #expect(
            s.listen.map(\.target) == [
                .ip(try ListenAddress(parsing: "127.0.0.1:7")), .unix(UnixPath(path: "/run/echod/echo.sock", isAbstract: false)),
                .unix(UnixPath(path: "echod", isAbstract: true)),
            ])
        #expect(s.listen.map(\.description) == ["127.0.0.1:7", "unix:/run/echod/echo.sock", "unix:@echod"])
    }

    @Test(arguments: [
        ("listen: ['unix:relative.sock']\n", "listen[0]", "must be absolute"),
        ("listen: ['unix:']\n", "listen[0]", "empty socket path"),
        ("listen: ['unix:@']\n", "listen[0]", "empty abstract socket name"),
        ("listen: ['unix:/" + String(repeating: "x", count: 120) + "']\n", "listen[0]", "path too long (121 bytes, the limit is 107)"),
        ("listen: ['unix:/a.sock', '127.0.0.1:7', 'unix:/a.sock']\n", "listen[2]", "listed twice (also item 0)"),
        ("listen: ['unix:@a', 'unix:@a']\n", "listen[1]", "listed twice (also item 0)"),
        ("unix:\n  mode: '0669'\n", "unix.mode", "not an octal mode"),
        ("unix:\n  mode: '1777'\n", "unix.mode", "out of range"),
        ("unix:\n  mode: rw\n", "unix.mode", "not an octal mode"),
        ("unix:\n  owner: 'bad name'\n", "unix.owner", "expected a user name"),
        ("unix:\n  group: '-x'\n", "unix.group", "expected a group name"),
        ("unix:\n  owner: '4294967295'\n", "unix.owner", "out of range"),
    ])
    func refused(yaml: String, key: String, reason: String) throws {
        let found = try #require(problem(yaml))
        #expect(found.key == key)
        #expect(found.reason.contains(reason), "\(found.reason)")
    }

    @Test func aPathAndAnAbstractNameOfTheSameTextDiffer() throws {
        #expect(settings("listen: ['unix:/a', 'unix:@/a']\n")?.listen.count == 2)
    }

    @Test(arguments: [("0660", 0o660), ("660", 0o660), ("0o600", 0o600), ("0", 0), ("0777", 0o777)])
    func modes(text: String, mode: Int) throws {
        let s = try #require(settings("unix:\n  mode: '\(text)'\n"))
        #expect(s.unixMode == UInt32(mode))
        #expect(Values.formatMode(s.unixMode).count == 4)
        #expect(try Values.octalMode(Values.formatMode(s.unixMode)) == s.unixMode)
    }

    @Test func ownerAndGroupTakeNamesOrIDs() throws {
        let s = try #require(settings("unix:\n  owner: '1000'\n  group: www-data\n"))
        #expect(s.unixOwner == "1000" && s.unixGroup == "www-data")
        #expect(EchodSettings.defaults.unixMode == 0o660 && EchodSettings.defaults.unixOwner == nil)
    }

    @Test func theAdminEndpointStaysTCPOnly() throws {
        let found = try #require(problem("admin:\n  listen: unix:/run/echod/admin.sock\n"))
        #expect(found.key == "admin.listen" && found.reason.contains("Unix sockets are not supported here"))
    }

    @Test func theAdminPortCheckIgnoresUnixEntries() throws {
        #expect(settings("listen: ['unix:/a.sock']\nadmin:\n  listen: 127.0.0.1:9090\n") != nil)
    }
}
