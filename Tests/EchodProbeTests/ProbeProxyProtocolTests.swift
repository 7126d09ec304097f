import EchodProbe
import EchodProxyProtocol
import EchodTestSupport
import EchodText
import Testing

/// `echod probe --proxy-protocol`: the header a proxy's own health check sends, then the usual echo check.
@Suite("echod probe --proxy-protocol")
struct ProbeProxyProtocolTests {
    func probe(_ server: TestEchoServer, _ version: ProxyVersion, count: Int = 1) -> ProbeResult {
        Probe.run(ProbeOptions(target: .echo(host: "127.0.0.1", port: server.port), count: count, proxyProtocol: version))
    }

    @Test("v2 sends LOCAL and v1 PROXY UNKNOWN, exactly once, before the echo; the probe is healthy", arguments: [ProxyVersion.v1, .v2])
    func healthCheckHeader(version: ProxyVersion) throws {
        let server = TestEchoServer(.stripProxyHeader)
        let r = probe(server, version, count: 3)
        server.stop()
        #expect(r.outcome == .healthy, "\(r.line)")
        #expect(r.completed == 3)
        #expect(try jsonObject(r.json)["proxy_protocol"]?.string == version.description)
        let headers = server.proxyHeaders
        try #require(headers.count == 1)
        let bytes = headers[0].header
        switch version {
        case .v1: #expect(bytes == Array("PROXY UNKNOWN\r\n".utf8))
        case .v2: #expect(bytes == [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00])
        }
        guard case .complete(let header, let consumed) = ProxyHeaderParser.parse(bytes, mode: .any) else {
            Issue.record("the parser refuses \(bytes)")
            return
        }
        #expect(consumed == bytes.count)
        #expect(header.version == version)
        #expect(header.addresses == .none, "served as the proxy's own connection")
        #expect(header.command == (version == .v2 ? .local : .proxy))
    }

    @Test("a listener that echoes the header does not expect it: exit 1, and the line says why")
    func plainListener() throws {
        let server = TestEchoServer(.echo)
        let r = probe(server, .v1)
        #expect(r.exitCode == 1)
        #expect(r.reason?.contains("echo mismatch at byte 0") == true, "\(r.line)")
        #expect(r.reason?.contains("the PROXY protocol header came back") == true, "\(r.line)")
    }

    @Test("without --proxy-protocol nothing precedes the payload")
    func noHeader() throws {
        let server = TestEchoServer(.echo)
        let r = Probe.run(ProbeOptions(target: .echo(host: "127.0.0.1", port: server.port)))
        #expect(r.outcome == .healthy, "\(r.line)")
        #expect(try jsonObject(r.json)["proxy_protocol"] == nil)
    }

    @Test("--proxy-protocol: v1 or v2, the spelling bench takes; refused for udp:// and --http with a clear message")
    func options() throws {
        #expect(try ProbeOptions.parseProxyProtocol("v1") == .v1)
        #expect(try ProbeOptions.parseProxyProtocol("v2") == .v2)
        for bad in ["", "v3", "V1", "any", "2"] {
            #expect(reason { () throws(InvalidValue) in try ProbeOptions.parseProxyProtocol(bad) } == "expected v1 or v2", "\(bad)")
            #expect(
                reason { () throws(InvalidValue) in try ProbeOptions.parseProxyProtocol(bad) }
                    == reason { () throws(InvalidValue) in try ProxyVersion(parsing: bad) })
        }
        let udp = ProbeOptions(target: .udp(host: "127.0.0.1", port: 7), proxyProtocol: .v2)
        #expect(udp.problem?.hasPrefix("--proxy-protocol cannot be used with udp://") == true, "\(udp.problem ?? "")")
        let http = ProbeOptions(target: .http(HTTPURL(host: "127.0.0.1", port: 9, target: "/")), proxyProtocol: .v1)
        #expect(http.problem?.hasPrefix("--proxy-protocol cannot be used with --http") == true, "\(http.problem ?? "")")
        #expect(ProbeOptions(target: .echo(host: "h", port: 7), proxyProtocol: .v1).problem == nil)
        #expect(ProbeOptions(target: .unixEcho(try UnixPath(parsing: "unix:/run/x.sock")), proxyProtocol: .v2).problem == nil)
    }
}
