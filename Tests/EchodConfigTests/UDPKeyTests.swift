import EchodTestSupport
import Testing

@testable import EchodConfig

@Suite("udp.* keys")
struct UDPKeyTests {
    @Test func offByDefaultAndEmptyIsAllowed() throws {
        #expect(try load(nil).settings.udpListen.isEmpty)
        #expect(try load("udp:\n  listen: []\n").settings.udpListen.isEmpty)
        #expect(try load(nil, env: ["ECHOD_UDP_LISTEN": ""]).settings.udpListen.isEmpty)
    }

    @Test func repeatedFlagReplacesTheList() throws {
        let loaded = try load("udp:\n  listen: ['127.0.0.1:9']\n", overrides: ConfigOverrides(udpListen: ["127.0.0.1:7007", "[::1]:7007"]))
        #expect(loaded.settings.udpListen.map(\.description) == ["127.0.0.1:7007", "[::1]:7007"])
        #expect(loaded.origins["udp.listen"] == .commandLine("--udp"))
    }

    @Test func duplicatesAndOverlapsAreErrors() {
        let twice = problem(nil, overrides: ConfigOverrides(udpListen: ["127.0.0.1:7007", "127.0.0.1:7007"]))
        #expect(twice?.key.hasPrefix("udp.listen") == true && twice?.reason.contains("listed twice") == true)
        let overlap = problem("udp:\n  listen: ['0.0.0.0:7007', '127.0.0.1:7007']\n")
        #expect(overlap?.reason.contains("wildcard") == true)
        // The same address for TCP and UDP is two different sockets: fine.
        #expect((try? load("listen: ['127.0.0.1:7007']\nudp:\n  listen: ['127.0.0.1:7007']\n")) != nil)
    }

    @Test func rangesAreChecked() {
        for (key, bad) in [
            ("min_source_port", "0"), ("min_source_port", "65536"), ("source_rate", "0"), ("source_burst", "100000001"),
            ("global_rate", "-1"), ("global_bandwidth", "0"), ("global_bandwidth", "2TiB"), ("source_table_size", "63"),
            ("source_table_size", "16777217"),
        ] {
            let found = problem("udp:\n  \(key): \(bad)\n")
            #expect(found?.key == "udp.\(key)", "\(key): \(bad)")
        }
        #expect((try? load("udp:\n  global_bandwidth: 100GiB\n"))?.settings.udpGlobalBandwidth == 100 << 30)
    }
}
