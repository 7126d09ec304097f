import EchodProbe
import EchodTestSupport
import EchodText
import Testing

@Suite("echod probe")
struct ProbeTests {
    func echo(_ port: UInt16, host: String = "127.0.0.1", timeout: Duration = .seconds(2), size: Int = 64, count: Int = 1) -> ProbeResult {
        Probe.run(ProbeOptions(target: .echo(host: host, port: port), timeout: timeout, payloadSize: size, count: count))
    }

    func http(_ port: UInt16, _ path: String = "/readyz", timeout: Duration = .seconds(2)) -> ProbeResult {
        Probe.run(ProbeOptions(target: .http(HTTPURL(host: "127.0.0.1", port: port, target: path)), timeout: timeout))
    }

    @Test("a correct echo is healthy: exit 0 and an ok line")
    func healthy() throws {
        let server = TestEchoServer(.echo)
        let r = echo(server.port)
        #expect(r.outcome == .healthy, "\(r.line)")
        #expect(r.exitCode == 0)
        #expect(r.line.hasPrefix("ok 127.0.0.1:\(server.port) 64 bytes in "))
        #expect(r.line.hasSuffix(" ms"))
        #expect(r.address == "127.0.0.1:\(server.port)")
        let json = try jsonObject(r.json)
        #expect(json["ok"] == .bool(true))
        #expect(json["exit_code"]?.int == 0)
        #expect(json["bytes"]?.int == 64)
        #expect(json["count"]?.int == 1)
        #expect(json["mode"]?.string == "echo")
        #expect(json["rtt_ms"]?.double != nil)
        #expect(json["error"] == .null)
    }

    @Test("several round trips of a payload larger than the socket buffers")
    func largeAndRepeated() throws {
        let server = TestEchoServer(.echo)
        let r = echo(server.port, timeout: .seconds(10), size: 3 << 20, count: 3)
        #expect(r.outcome == .healthy, "\(r.line)")
        #expect(r.completed == 3)
        #expect(r.line.hasPrefix("ok 127.0.0.1:\(server.port) 3x\(3 << 20) bytes in "))
        #expect(r.line.contains("(min "))
    }

    @Test("a wrong byte is exit 1 with the offset")
    func corrupt() throws {
        let server = TestEchoServer(.flipByte(at: 17))
        let r = echo(server.port)
        #expect(r.exitCode == 1)
        #expect(r.line.hasPrefix("fail 127.0.0.1:\(server.port): echo mismatch at byte 17 of 64"), "\(r.line)")
        let json = try jsonObject(r.json)
        #expect(json["ok"] == .bool(false))
        #expect(json["exit_code"]?.int == 1)
        #expect(json["error"]?.string?.contains("mismatch") == true)
    }

    @Test("no echo within the timeout is exit 1, on time")
    func timeout() throws {
        let server = TestEchoServer(.swallow)
        let start = monotonicNow()
        let r = echo(server.port, timeout: .milliseconds(300))
        let elapsed = monotonicNow() - start
        #expect(r.exitCode == 1)
        #expect(r.reason?.contains("timed out after 300 ms") == true, "\(r.line)")
        #expect(elapsed >= .milliseconds(290) && elapsed < .seconds(2))
    }

    @Test("a short echo and a close is exit 1")
    func short() throws {
        let server = TestEchoServer(.closeAfter(10))
        let r = echo(server.port)
        #expect(r.exitCode == 1)
        #expect(r.reason?.contains("closed by the server after 10 of 64") == true, "\(r.line)")
    }

    @Test("bytes beyond the echo are exit 1")
    func extra() throws {
        let server = TestEchoServer(.extraByte)
        let r = echo(server.port, count: 1)
        #expect(r.exitCode == 1, "\(r.line)")
    }

    @Test("nothing listening is exit 2")
    func refused() throws {
        let port = unusedLoopbackPort()
        let r = echo(port)
        #expect(r.exitCode == 2)
        #expect(r.line == "fail 127.0.0.1:\(port): cannot connect: 127.0.0.1:\(port): Connection refused")
        let json = try jsonObject(r.json)
        #expect(json["exit_code"]?.int == 2)
        #expect(json["address"] == .null)
    }

    @Test("an unresolvable name is exit 2")
    func unresolvable() {
        let r = echo(7, host: "no-such-host.invalid")
        #expect(r.exitCode == 2)
        #expect(r.reason?.hasPrefix("cannot resolve no-such-host.invalid") == true, "\(r.line)")
    }

    @Test("localhost resolves; each address is tried until one answers")
    func localhost() throws {
        let server = TestEchoServer(.echo)
        let r = echo(server.port, host: "localhost")
        #expect(r.outcome == .healthy, "\(r.line)")
        #expect(r.line.hasPrefix("ok localhost:\(server.port) "))
        #expect(r.address == "127.0.0.1:\(server.port)")
    }

    @Test("--http: 200 is healthy, anything else exit 1 with the status and the body's first line")
    func httpStatus() throws {
        let ok = TestEchoServer(.http("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"))
        let good = http(ok.port)
        #expect(good.exitCode == 0, "\(good.line)")
        #expect(good.line.hasPrefix("ok http://127.0.0.1:\(ok.port)/readyz 200 in "))
        #expect(try jsonObject(good.json)["status"]?.int == 200)

        let unready = TestEchoServer(.http("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 14\r\nConnection: close\r\n\r\nfailed: phase\n"))
        let bad = http(unready.port)
        #expect(bad.exitCode == 1)
        #expect(bad.line == "fail http://127.0.0.1:\(unready.port)/readyz: status 503: failed: phase")
        #expect(try jsonObject(bad.json)["status"]?.int == 503)

        let noLength = TestEchoServer(.http("HTTP/1.0 200 OK\r\n\r\nok"))
        #expect(http(noLength.port).exitCode == 0)
    }

    @Test("--http: refused is exit 2, silence is exit 1, a non-HTTP answer is exit 1")
    func httpFailures() throws {
        #expect(http(unusedLoopbackPort()).exitCode == 2)
        let silent = TestEchoServer(.swallow)
        let r = http(silent.port, timeout: .milliseconds(300))
        #expect(r.exitCode == 1)
        #expect(r.reason?.contains("timed out") == true)
        let echo = TestEchoServer(.echo)
        let garbled = http(echo.port, timeout: .milliseconds(500))
        #expect(garbled.exitCode == 1)
        #expect(garbled.reason?.hasPrefix("not an HTTP response") == true, "\(garbled.line)")
    }

    @Test("HOST:PORT parsing: the one address grammar (HostPort), names allowed")
    func hostPort() throws {
        #expect(try ProbeTarget.echo(parsing: "127.0.0.1:8888") == .echo(host: "127.0.0.1", port: 8888))
        #expect(try ProbeTarget.echo(parsing: "[::1]:7") == .echo(host: "::1", port: 7))
        #expect(try ProbeTarget.echo(parsing: "localhost:7") == .echo(host: "localhost", port: 7))
        for bad in ["127.0.0.1", "::1:7", ":7", "host:0", "host:70000", "[::1]7", "host:x"] {
            #expect(throws: InvalidValue.self, "\(bad)") { try ProbeTarget.echo(parsing: bad) }
            // The grammar's own refusal, word for word.
            #expect(
                reason { () throws(InvalidValue) in try ProbeTarget.echo(parsing: bad) }
                    == reason { () throws(InvalidValue) in try HostPort(parsing: bad) }, "\(bad)")
        }
    }

    @Test("URL parsing")
    func urls() throws {
        #expect(try HTTPURL(parsing: "http://127.0.0.1:9090/readyz") == HTTPURL(host: "127.0.0.1", port: 9090, target: "/readyz"))
        #expect(try HTTPURL(parsing: "http://localhost:9090/livez?verbose") == HTTPURL(host: "localhost", port: 9090, target: "/livez?verbose"))
        #expect(try HTTPURL(parsing: "http://[::1]:9090") == HTTPURL(host: "::1", port: 9090, target: "/"))
        #expect(try HTTPURL(parsing: "http://example") == HTTPURL(host: "example", port: 80, target: "/"))
        #expect(try HTTPURL(parsing: "HTTP://h:1?x#frag") == HTTPURL(host: "h", port: 1, target: "/?x"))
        #expect(try HTTPURL(parsing: "http://[::1]:9090/x").description == "http://[::1]:9090/x")
        for bad in ["https://h/readyz", "h:1/readyz", "http://", "http://u@h:1/", "http://h:99999/"] {
            #expect(throws: InvalidValue.self, "\(bad)") { try HTTPURL(parsing: bad) }
        }
    }

    @Test("--timeout: the one duration grammar (Units), 1ms...1h")
    func durations() throws {
        #expect(try ProbeOptions.parseTimeout("2s") == .seconds(2))
        #expect(try ProbeOptions.parseTimeout("500ms") == .milliseconds(500))
        #expect(try ProbeOptions.parseTimeout("1.5s") == .milliseconds(1500))
        #expect(try ProbeOptions.parseTimeout("3") == .seconds(3))
        #expect(try ProbeOptions.parseTimeout("1m") == .seconds(60))
        #expect(try ProbeOptions.parseTimeout("1m30s") == .seconds(90))
        #expect(try ProbeOptions.parseTimeout("1h") == .seconds(3600))
        for bad in ["", "0", "-1s", "abc", "2h", "10us", "1m 30s", "30s1m"] {
            #expect(throws: InvalidValue.self, "\(bad)") { try ProbeOptions.parseTimeout(bad) }
        }
        #expect(reason { () throws(InvalidValue) in try ProbeOptions.parseTimeout("2h") } == "out of range; must be between 1ms and 1h")
        // A grammar refusal is the grammar's own reason.
        for bad in ["", "-1s", "abc", "1m 30s", "30s1m", "5x"] {
            #expect(
                reason { () throws(InvalidValue) in try ProbeOptions.parseTimeout(bad) }
                    == reason { () throws(InvalidValue) in try Units.parseDuration(bad) }, "\(bad)")
        }
    }

    @Test("--payload-size: the one size grammar (Units), 1...16MiB")
    func payloadSizes() throws {
        #expect(try ProbeOptions.parsePayloadSize("64") == 64)
        #expect(try ProbeOptions.parsePayloadSize("16KiB") == 16384)
        #expect(try ProbeOptions.parsePayloadSize("1kb") == 1000)
        #expect(try ProbeOptions.parsePayloadSize("16MiB") == 16 << 20)
        for bad in ["0", "17MiB", "1k", "-1", "x"] {
            #expect(throws: InvalidValue.self, "\(bad)") { try ProbeOptions.parsePayloadSize(bad) }
        }
        #expect(reason { () throws(InvalidValue) in try ProbeOptions.parsePayloadSize("1k") }?.contains("KiB") == true)
    }

    @Test("JSON strings are escaped")
    func jsonEscaping() throws {
        var r = ProbeResult(outcome: .unhealthy, mode: "echo", target: "a\"b\\c\n\u{1}")
        r.reason = "tab\there"
        let json = try jsonObject(r.json)
        #expect(json["target"]?.string == "a\"b\\c\n\u{1}")
        #expect(json["error"]?.string == "tab\there")
    }
}

/// The reason `body` refused its value, or nil when it accepted it.
func reason<T>(_ body: () throws(InvalidValue) -> T) -> String? {
    do throws(InvalidValue) {
        _ = try body()
        return nil
    } catch {
        return error.reason
    }
}
