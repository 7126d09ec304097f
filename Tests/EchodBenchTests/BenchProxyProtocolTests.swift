import EchodBench
import EchodProxyProtocol
import EchodSystem
import EchodTestSupport
import EchodText
import Testing

/// `echod bench --proxy-protocol`: every connection's first bytes are one header the parser accepts, claiming a client
/// address of its own with the connection's real port, and the workload after it is unchanged.
@Suite("bench --proxy-protocol", .serialized)
struct BenchProxyProtocolTests {
    /// Runs `mode` with headers of `version` against a server that takes them off; returns the report and the server.
    func run(_ mode: BenchMode, _ version: ProxyVersion, connections: Int = 4) -> (BenchReport, TestEchoServer) {
        let server = TestEchoServer(.stripProxyHeader)
        var options = quickOptions(server, mode, connections: connections, size: mode == .stream ? 4096 : 64)
        options.proxyProtocol = version
        if mode == .connect { options.maxOps = 300 }
        let report = BenchRunner.run(options)
        server.stop()
        return (report, server)
    }

    @Test("each mode sends one valid header per connection first, and the echo after it verifies", arguments: BenchMode.allCases, [ProxyVersion.v1, .v2])
    func everyModeAndVersion(mode: BenchMode, version: ProxyVersion) throws {
        let (report, server) = run(mode, version)
        #expect(report.setupFailure == nil, "\(report.setupFailure ?? "")")
        #expect(report.errors.total == 0, "\(report.errorDetails)")
        #expect(report.ops > 0)
        #expect(report.proxyProtocol == version.description)
        let headers = server.proxyHeaders
        #expect(headers.count == server.accepted, "a connection without a header")
        var sources: Set<UInt32> = []
        for (bytes, peerPort) in headers {
            guard case .complete(let header, let consumed) = ProxyHeaderParser.parse(bytes, mode: version == .v1 ? .v1 : .v2) else {
                Issue.record("not a \(version) header: \(bytes)")
                continue
            }
            #expect(consumed == bytes.count)
            #expect(header.command == .proxy)
            guard case .inet(let source, let destination) = header.addresses else {
                Issue.record("no addresses: \(header.addresses)")
                continue
            }
            #expect(destination == ProxyAddress(ipv4: 0x7f00_0001, port: server.port))
            #expect(source.port == peerPort, "the header claims the connection's own port")
            let value = UInt32(source.value)
            #expect(value >> 17 == 0xC612_0000 >> 17, "in 198.18.0.0/15: \(value)")
            sources.insert(value)
        }
        // Connect mode: connector N claims one address for all its connections, one at a time.
        #expect(sources.count == 4, "four connections (connectors) claim four addresses")
    }

    @Test("a server that does not expect the header echoes it: a failure that says why", arguments: BenchMode.allCases)
    func plainServer(mode: BenchMode) throws {
        let server = TestEchoServer(.echo)
        var options = quickOptions(server, mode, connections: 1)
        options.proxyProtocol = .v1
        let report = BenchRunner.run(options)
        server.stop()
        // Pingpong and stream see the echoed header during the set-up (exit 2); connect mode in its first operation.
        #expect(report.exitCode != 0)
        let said = ([report.setupFailure].compactMap { $0 } + report.errorDetails).joined(separator: "\n")
        #expect(said.contains("the PROXY protocol header came back"), "\(said)")
    }

    @Test("claimed addresses: the benchmarking ranges, of the target's family, one per connection")
    func claimedAddresses() throws {
        let v4 = try #require(SocketAddress(host: "127.0.0.1", port: 7))
        let v6 = try #require(SocketAddress(host: "::1", port: 7))
        #expect(BenchProxyHeader.source(id: 0, port: 9, like: v4) == ProxyAddress(ipv4: 0xC612_0001, port: 9))
        #expect(BenchProxyHeader.source(id: BenchProxyHeader.ipv4Count - 1, port: 9, like: v4) == ProxyAddress(ipv4: 0xC613_FFFE, port: 9))
        #expect(BenchProxyHeader.source(id: BenchProxyHeader.ipv4Count, port: 9, like: v4) == ProxyAddress(ipv4: 0xC612_0001, port: 9))
        #expect(BenchProxyHeader.source(id: 0, port: 9, like: v6) == ProxyAddress(ipv6: 0x2001_0002_0000_0000_0000_0000_0000_0001, port: 9))
        #expect(BenchProxyHeader.destination(v6) == ProxyAddress(ipv6: 1, port: 7))
        #expect(BenchProxyHeader.destination(v4) == ProxyAddress(ipv4: 0x7f00_0001, port: 7))
    }

    @Test("--proxy-protocol: v1 or v2 in the spelling probe takes; refused with --udp")
    func options() throws {
        #expect(try BenchParse.proxyProtocol("v1") == .v1)
        #expect(try BenchParse.proxyProtocol("v2") == .v2)
        for bad in ["", "2", "V2", "any", "off", "v2 "] {
            #expect(throws: InvalidValue.self, "\(bad)") { try BenchParse.proxyProtocol(bad) }
            #expect(
                value { () throws(InvalidValue) in try BenchParse.proxyProtocol(bad) }
                    == value { () throws(InvalidValue) in try ProxyVersion(parsing: bad) }, "\(bad)")
        }
        var o = BenchOptions(target: SocketAddress(host: "127.0.0.1", port: 1)!)
        o.proxyProtocol = .v2
        #expect(o.problem == nil)
        o.mode = .connect
        #expect(o.problem == nil)
        o.mode = .pingpong
        o.udp = true
        #expect(o.problem?.contains("--proxy-protocol cannot be used with --udp") == true, "\(o.problem ?? "")")
    }

    @Test("the report says a header went first")
    func report() throws {
        var r = BenchReport(mode: .connect, target: "127.0.0.1:1", connections: 1, size: 64, window: 0, threads: 1)
        #expect(try jsonObject(r.json())["proxy_protocol"] == .null)
        r.proxyProtocol = "v2"
        #expect(try jsonObject(r.json())["proxy_protocol"]?.string == "v2")
        #expect(r.table().contains("PROXY protocol v2 header first"))
    }
}
