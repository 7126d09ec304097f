import EchodProbe
import EchodTestSupport
import EchodText
import Testing

@Suite("echod probe udp://")
struct UDPProbeTests {
    func probe(
        _ server: TestDatagramEchoServer, timeout: Duration = .seconds(2), size: Int = 64, count: Int = 1, retries: Int = 2
    ) -> ProbeResult {
        let target = ProbeTarget.udp(host: "127.0.0.1", port: server.port)
        return Probe.run(ProbeOptions(target: target, timeout: timeout, payloadSize: size, count: count, retries: retries))
    }

    @Test("a faithful UDP echo is healthy: exit 0, the TCP probe's line and JSON shapes")
    func healthy() throws {
        let server = TestDatagramEchoServer(.echo)
        let r = probe(server)
        #expect(r.outcome == .healthy, "\(r.line)")
        #expect(r.exitCode == 0)
        #expect(r.line.hasPrefix("ok udp://127.0.0.1:\(server.port) 64 bytes in "), "\(r.line)")
        #expect(r.line.hasSuffix(" ms"))
        let json = try jsonObject(r.json)
        #expect(json["ok"] == .bool(true))
        #expect(json["mode"]?.string == "udp")
        #expect(json["bytes"]?.int == 64)
        #expect(json["resent"]?.int == 0)
        #expect(json["address"]?.string == "127.0.0.1:\(server.port)")
        #expect(json["rtt_ms"]?.double != nil)
    }

    @Test("several round trips, up to the largest IPv4 datagram")
    func repeatedAndLarge() throws {
        let server = TestDatagramEchoServer(.echo)
        let r = probe(server, size: ProbeOptions.maximumDatagramPayload, count: 5)
        #expect(r.outcome == .healthy, "\(r.line)")
        #expect(r.completed == 5)
        #expect(server.received == 5)
    }

    @Test("a changed byte is exit 1 with its offset")
    func corrupt() throws {
        let server = TestDatagramEchoServer(.flipByte(at: 17))
        let r = probe(server)
        #expect(r.exitCode == 1)
        #expect(r.line.hasPrefix("fail udp://127.0.0.1:\(server.port): reply differs at byte 17 of 64"), "\(r.line)")
    }

    @Test("a longer reply is exit 1, not a match of its first bytes")
    func longer() throws {
        let r = probe(TestDatagramEchoServer(.longer))
        #expect(r.exitCode == 1)
        #expect(r.reason == "reply longer than the datagram of 64 bytes", "\(r.line)")
    }

    @Test("a second echo of one datagram is exit 1")
    func twice() throws {
        let r = probe(TestDatagramEchoServer(.twice), count: 2)
        #expect(r.exitCode == 1)
        #expect(r.reason == "the server echoed a datagram twice", "\(r.line)")
    }

    @Test("no reply at all is exit 1 after every retry, on time")
    func silent() throws {
        let server = TestDatagramEchoServer(.swallow)
        let start = monotonicNow()
        let r = probe(server, timeout: .milliseconds(300), retries: 2)
        let elapsed = monotonicNow() - start
        #expect(r.exitCode == 1)
        #expect(r.reason == "no reply within 300 ms (3 datagram(s) of 64 bytes sent)", "\(r.line)")
        #expect(server.received == 3)
        #expect(elapsed >= .milliseconds(290) && elapsed < .seconds(2))
    }

    @Test("a lost datagram is sent again with new bytes, and the probe is healthy")
    func retried() throws {
        let server = TestDatagramEchoServer(.dropFirst(1))
        let r = probe(server, timeout: .milliseconds(600), retries: 2)
        #expect(r.outcome == .healthy, "\(r.line)")
        #expect(r.resent == 1)
        #expect(r.line.hasSuffix(" (1 resent)"), "\(r.line)")
        #expect(try jsonObject(r.json)["resent"]?.int == 1)
    }

    @Test("without retries a lost datagram is a failure")
    func noRetries() throws {
        let r = probe(TestDatagramEchoServer(.dropFirst(1)), timeout: .milliseconds(200), retries: 0)
        #expect(r.exitCode == 1, "\(r.line)")
    }

    @Test("a late reply to the first datagram is recognised and ignored, the second one's echo counts")
    func late() throws {
        let server = TestDatagramEchoServer(.holdFirst)
        let r = probe(server, timeout: .milliseconds(600), retries: 2)
        #expect(r.outcome == .healthy, "\(r.line)")
        #expect(r.resent == 1)
    }

    @Test("ICMP port unreachable is exit 2 and says so")
    func refused() throws {
        let port = TestSocket.udp().port  // bound, then closed when released: nothing listens there
        let r = Probe.run(ProbeOptions(target: .udp(host: "127.0.0.1", port: port), timeout: .seconds(2)))
        #expect(r.exitCode == 2)
        #expect(r.reason?.contains("port unreachable (ICMP)") == true, "\(r.line)")
        #expect(try jsonObject(r.json)["exit_code"]?.int == 2)
    }

    @Test("udp:// targets parse in the one address grammar")
    func parsing() throws {
        #expect(try ProbeTarget.parsing("udp://127.0.0.1:7") == .udp(host: "127.0.0.1", port: 7))
        #expect(try ProbeTarget.parsing("UDP://[::1]:8888") == .udp(host: "::1", port: 8888))
        #expect(try ProbeTarget.parsing("udp://localhost:9") == .udp(host: "localhost", port: 9))
        #expect(try ProbeTarget.parsing("127.0.0.1:7") == .echo(host: "127.0.0.1", port: 7))
        #expect(throws: InvalidValue.self) { try ProbeTarget.parsing("udp://127.0.0.1") }
        #expect(throws: InvalidValue.self) { try ProbeTarget.parsing("udp://127.0.0.1:0") }
    }

    @Test("a payload larger than one datagram is refused before anything is sent")
    func tooLarge() throws {
        let options = ProbeOptions(target: .udp(host: "127.0.0.1", port: 7), payloadSize: ProbeOptions.maximumDatagramPayload + 1)
        #expect(options.problem?.contains("at most 65507 bytes") == true)
        #expect(ProbeOptions(target: .echo(host: "127.0.0.1", port: 7), payloadSize: 1 << 20).problem == nil)
    }
}
