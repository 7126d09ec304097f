import EchodBench
import EchodEventLoop
import EchodSystem
import EchodTestSupport
import Testing

/// Options for a short, bounded run against `server`: no warm-up, short drain, capped by time and count.
func quickOptions(
    _ server: TestEchoServer, _ mode: BenchMode, connections: Int = 4, size: Int = 64,
    threads: Int = 2, milliseconds: Int = 300
) -> BenchOptions {
    var o = BenchOptions(target: SocketAddress(host: "127.0.0.1", port: server.port)!)
    o.mode = mode
    o.connections = connections
    o.size = size
    o.threads = threads
    o.duration = .milliseconds(milliseconds)
    o.warmup = .zero
    o.drainTimeout = .milliseconds(500)
    o.connectTimeout = .seconds(5)
    o.maxOps = 2_000_000
    return o
}

/// Runs `options` against a fresh server with `behavior`, returns the report.
func bench(_ behavior: TestEchoServer.Behavior = .echo, _ configure: (TestEchoServer) -> BenchOptions) -> BenchReport {
    let server = TestEchoServer(behavior)
    defer { server.stop() }
    return BenchRunner.run(configure(server))
}

/// Load tests run one at a time: each owns a few threads and the machine may have only two cores.
@Suite("bench runs against an in-test echo server", .serialized)
struct BenchRunnerTests {
    @Test("pingpong counts round trips, latency and bytes, with zero errors", arguments: [1, 2])
    func pingpong(threads: Int) throws {
        let r = bench { quickOptions($0, .pingpong, connections: 4, threads: threads) }
        #expect(r.setupFailure == nil)
        #expect(r.errors.total == 0, "\(r.errorDetails)")
        #expect(r.exitCode == 0)
        #expect(r.ops > 10)
        #expect(r.opsAll >= r.ops)
        #expect(r.threads == threads)
        #expect(r.bytesSent >= r.ops * 64)
        #expect(r.bytesReceived >= r.ops * 64)
        #expect(r.latency.count == r.ops)
        #expect(r.latency.p50 > 0 && r.latency.p50 <= r.latency.p90 && r.latency.p90 <= r.latency.p99)
        #expect(r.latency.p99 <= r.latency.p999 && r.latency.p999 <= r.latency.max)
        #expect(r.durationSeconds > 0.25 && r.durationSeconds < 2.0)
        #expect(r.opsPerSecond > 0)
    }

    @Test("pingpong with messages larger than the socket buffers (partial writes while reading)")
    func pingpongLarge() throws {
        let r = bench { quickOptions($0, .pingpong, connections: 3, size: 300_000, threads: 1) }
        #expect(r.errors.total == 0, "\(r.errorDetails)")
        #expect(r.ops > 0)
        #expect(r.bytesReceived >= r.ops * 300_000)
    }

    @Test("stream keeps data in flight and verifies every byte", arguments: [(64 << 10, nil), (7, nil), (1 << 20, 4 << 20)] as [(Int, Int?)])
    func stream(size: Int, window: Int?) throws {
        let r = bench {
            var o = quickOptions($0, .stream, connections: 2, size: size, threads: 2)
            o.window = window
            return o
        }
        #expect(r.errors.total == 0, "\(r.errorDetails)")
        #expect(r.exitCode == 0)
        #expect(r.ops > 0)
        #expect(r.bytesSent > 0 && r.bytesReceived > 0)
        #expect(r.mbPerSecondIn > 0 && r.mbPerSecondOut > 0)
        #expect(r.window == max(window ?? BenchOptions.defaultWindow(size: size), size))
    }

    @Test("connect opens, echoes and closes connections over and over")
    func connect() throws {
        let server = TestEchoServer(.echo)
        defer { server.stop() }
        let r = BenchRunner.run(quickOptions(server, .connect, connections: 4, threads: 2))
        #expect(r.errors.total == 0, "\(r.errorDetails)")
        #expect(r.ops > 20)
        // Every operation is a new connection (plus one probe per connector at set-up).
        #expect(server.accepted >= Int(r.opsAll) + 4)
    }

    @Test("max-ops bounds the run by count")
    func maxOps() throws {
        let r = bench {
            var o = quickOptions($0, .pingpong, connections: 2, threads: 1, milliseconds: 10_000)
            o.maxOps = 500
            return o
        }
        #expect(r.errors.total == 0)
        #expect(r.ops >= 500 && r.ops <= 500 + 2 + 10)
        #expect(r.durationSeconds < 5)
    }

    @Test("a server that corrupts every 500th byte: mismatches counted, exit 1", arguments: BenchMode.allCases)
    func wrongEcho(mode: BenchMode) throws {
        let r = bench(.flipEvery(500)) { quickOptions($0, mode, connections: 2, size: 600, threads: 1, milliseconds: 200) }
        #expect(r.setupFailure == nil)
        #expect(r.errors.mismatch > 0)
        #expect(r.exitCode == 1)
        #expect(r.errorDetails.contains { $0.contains("echoed byte at stream offset 499 is") })
        #expect(r.table().contains("FAILED"))
    }

    @Test("a server that closes after 1000 bytes: early closes counted, exit 1", arguments: BenchMode.allCases)
    func earlyClose(mode: BenchMode) throws {
        let r = bench(.closeAfter(1000)) { quickOptions($0, mode, connections: 2, size: 600, threads: 1, milliseconds: 200) }
        if mode == .connect {
            // 600 bytes per connection fit under the limit: every connection is fine.
            #expect(r.errors.total == 0, "\(r.errorDetails)")
        } else {
            #expect(r.errors.earlyClose > 0)
            #expect(r.errors.earlyClose + r.errors.mismatch + r.errors.other == r.errors.total)
            #expect(r.exitCode == 1)
        }
    }

    @Test("connect mode: a server that closes before the echo is complete")
    func earlyCloseConnect() throws {
        let r = bench(.closeAfter(100)) { quickOptions($0, .connect, connections: 2, size: 600, threads: 1, milliseconds: 200) }
        #expect(r.errors.earlyClose > 0)
        #expect(r.ops == 0)
        #expect(r.exitCode == 1)
    }

    @Test("a server that never echoes: data lost at the drain timeout, exit 1")
    func lost() throws {
        let r = bench(.swallow) { quickOptions($0, .pingpong, connections: 3, threads: 1, milliseconds: 100) }
        #expect(r.ops == 0)
        #expect(r.errors.lost == 3)
        #expect(r.exitCode == 1)
    }

    @Test("a server that ignores our half-close: no_eof counted")
    func noEOF() throws {
        let r = bench(.neverClose) { quickOptions($0, .stream, connections: 2, threads: 1, milliseconds: 100) }
        #expect(r.ops > 0)
        #expect(r.errors.noEOF == 2)
        #expect(r.exitCode == 1)
    }

    @Test("nothing listening: set-up fails, exit 2, in every mode", arguments: BenchMode.allCases)
    func refused(mode: BenchMode) throws {
        var o = BenchOptions(target: SocketAddress(host: "127.0.0.1", port: unusedLoopbackPort())!)
        o.mode = mode
        o.connections = 3
        o.duration = .milliseconds(100)
        o.warmup = .zero
        let r = BenchRunner.run(o)
        #expect(r.exitCode == 2)
        #expect(r.setupFailure?.contains("Connection refused") == true)
        #expect(r.ops == 0)
        #expect(r.json().contains("\"setup_failed\":true"))
    }

    @Test("warm-up is not measured; progress is reported")
    func warmupAndProgress() throws {
        let seen = Locked<[BenchProgress]>([])
        let r = bench {
            var o = quickOptions($0, .pingpong, connections: 2, threads: 1, milliseconds: 1200)
            o.warmup = .milliseconds(300)
            o.progress = { p in seen.update { $0.append(p) } }
            return o
        }
        #expect(r.errors.total == 0)
        #expect(r.opsAll > r.ops)
        #expect(r.durationSeconds > 1.1 && r.durationSeconds < 3.0)
        #expect(seen.value.count >= 1)
        #expect(seen.value.first.map { $0.ops > 0 && $0.opsPerSecond > 0 } == true)
    }

    @Test("shouldStop ends the run early but still drains and reports")
    func interrupted() throws {
        let start = monotonicNow()
        let r = bench {
            var o = quickOptions($0, .stream, connections: 2, threads: 1, milliseconds: 30_000)
            o.shouldStop = { monotonicNow() - start > .milliseconds(200) }
            return o
        }
        #expect(r.interrupted)
        #expect(r.errors.total == 0, "\(r.errorDetails)")
        #expect(r.ops > 0)
        #expect(monotonicNow() - start < .seconds(5))
    }
}
