import EchodBench
import EchodEventLoop
import EchodSystem
import EchodTestSupport
import EchodText
import Testing

@Suite("latency percentiles")
struct LatencyTests {
    @Test("percentiles of 1...10000 µs are within the histogram's 0.1 %")
    func uniform() {
        var r = LatencyRecorder()
        for us in 1...10_000 { r.record(nanoseconds: UInt64(us) * 1000) }
        let s = r.summary
        #expect(s.count == 10_000)
        #expect(abs(s.p50 - 5000) <= 5)
        #expect(abs(s.p90 - 9000) <= 9)
        #expect(abs(s.p99 - 9900) <= 10)
        #expect(abs(s.p999 - 9990) <= 10)
        #expect(s.max == 10_000)
        #expect(abs(s.mean - 5000.5) < 0.001)
    }

    @Test("merging per-loop histograms gives the same percentiles as one histogram")
    func merge() {
        var all = LatencyRecorder()
        var a = LatencyRecorder()
        var b = LatencyRecorder()
        var rng = SeededRandom(seed: 12345)
        for i in 0..<50_000 {
            let v = UInt64.random(in: 10_000..<2_010_000, using: &rng)  // 10 µs ... 2 ms
            all.record(nanoseconds: v)
            if i % 3 == 0 { a.record(nanoseconds: v) } else { b.record(nanoseconds: v) }
        }
        a.merge(b)
        #expect(a.summary == all.summary)
        for p in [50.0, 90, 99, 99.9] { #expect(a.nanoseconds(atPercentile: p) == all.nanoseconds(atPercentile: p)) }
    }

    @Test("a skewed distribution: 99 % fast, 1 % slow")
    func tail() {
        var r = LatencyRecorder()
        for i in 0..<100_000 { r.record(nanoseconds: i % 100 == 99 ? 5_000_000 : 20_000) }
        let s = r.summary
        #expect(abs(s.p50 - 20) < 0.05)
        #expect(abs(s.p90 - 20) < 0.05)
        #expect(abs(s.p99 - 20) < 0.05)  // exactly 99 % are fast
        #expect(abs(s.p999 - 5000) < 5)
        #expect(s.max == 5000)
        #expect(abs(s.mean - (0.99 * 20 + 0.01 * 5000)) < 0.01)
    }

    @Test("empty and out-of-range values")
    func edges() {
        var r = LatencyRecorder()
        #expect(r.summary == BenchLatency())
        r.record(nanoseconds: 0)
        r.record(nanoseconds: 120_000_000_000)  // beyond 60 s: recorded at the top, max exact
        #expect(r.count == 2)
        #expect(r.summary.max == 120_000_000)
    }
}

@Suite("command-line values")
struct ParseTests {
    @Test("durations: the one grammar (Units), as in the configuration file")
    func durations() throws {
        #expect(try BenchParse.duration("10s") == .seconds(10))
        #expect(try BenchParse.duration("500ms") == .milliseconds(500))
        #expect(try BenchParse.duration("1.5s") == .milliseconds(1500))
        #expect(try BenchParse.duration("2m") == .seconds(120))
        #expect(try BenchParse.duration("250us") == .microseconds(250))
        #expect(try BenchParse.duration("3") == .seconds(3))
        #expect(try BenchParse.duration("0") == .zero)
        #expect(try BenchParse.duration("1m30s") == .seconds(90))
        #expect(try BenchParse.duration("1h30m") == .seconds(5400))
        for bad in ["", "s", "ten", "-1s", "5x", "1e400s", "1m 30s", "30s1m", "1m30", "169h"] {
            #expect(throws: InvalidValue.self, "\(bad)") { try BenchParse.duration(bad) }
        }
        // Within the range, bench takes exactly what the grammar takes, and refuses with the grammar's reason.
        for text in ["1m30s", "90", "0.5s", "1.5m", "100ns", "1h", "", "1m 30s", "5x", "1M", "-1s", "1.5ns"] {
            #expect(
                value { () throws(InvalidValue) in try BenchParse.duration(text) }
                    == value { () throws(InvalidValue) in try Units.parseDuration(text) }, "\(text)")
        }
    }

    @Test("sizes: the one grammar (Units): KiB/MiB/GiB are 1024s, KB/MB/GB 1000s, one-letter units refused")
    func sizes() throws {
        #expect(try BenchParse.byteCount("64") == 64)
        #expect(try BenchParse.byteCount("1KiB") == 1024)
        #expect(try BenchParse.byteCount("16KiB") == 16384)
        #expect(try BenchParse.byteCount("1MiB") == 1 << 20)
        #expect(try BenchParse.byteCount("4MiB") == 4 << 20)
        #expect(try BenchParse.byteCount("100b") == 100)
        #expect(try BenchParse.byteCount("1kb") == 1000)
        #expect(try BenchParse.byteCount("2GiB") == 2 << 30)
        for bad in ["", "k", "-1", "1x", "99G", "1k", "1M", "0", "3GiB"] {
            #expect(throws: InvalidValue.self, "\(bad)") { try BenchParse.byteCount(bad) }
        }
        let refusal = value { () throws(InvalidValue) in try BenchParse.byteCount("1k") }
        #expect(refusal == .refused("unknown size unit \"k\"; use B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000)"))
        #expect(value { () throws(InvalidValue) in try BenchParse.byteCount("0") } == .refused("out of range; must be between 1 and 2GiB"))
        for text in ["64", "64KiB", "64kb", "1.5KiB", "1MB", "", "1k", "4 KiB", "0.5", "1e3"] {
            #expect(
                value { () throws(InvalidValue) in try BenchParse.byteCount(text) }
                    == value { () throws(InvalidValue) in try Units.parseSize(text) }, "\(text)")
        }
    }

    @Test("targets: the one address grammar (HostPort), names resolved")
    func targets() throws {
        #expect(try BenchParse.target("127.0.0.1:8888") == SocketAddress(host: "127.0.0.1", port: 8888))
        #expect(try BenchParse.target("[::1]:7") == SocketAddress(host: "::1", port: 7))
        #expect(try BenchParse.target("localhost:7").port == 7)
        for bad in ["127.0.0.1", "127.0.0.1:", ":80", "::1:80", "[::1]80", "1.2.3.4:70000", "1.2.3.4:0", "no.such.host.invalid:1"] {
            #expect(throws: InvalidValue.self, "\(bad)") { try BenchParse.target(bad) }
        }
        #expect(
            value { () throws(InvalidValue) in try BenchParse.target("::1:80") }
                == value { () throws(InvalidValue) in try HostPort(parsing: "::1:80") })
        let unresolvable = value { () throws(InvalidValue) in try BenchParse.target("no.such.host.invalid:1") }
        guard case .refused(let reason) = unresolvable else {
            Issue.record("accepted")
            return
        }
        #expect(reason.hasPrefix("cannot resolve no.such.host.invalid: "))
    }

    @Test func optionProblems() {
        var o = BenchOptions(target: SocketAddress(host: "127.0.0.1", port: 1)!)
        #expect(o.problem == nil)
        o.connections = 0
        #expect(o.problem != nil)
        o.connections = 10
        o.threads = 50
        #expect(o.effectiveThreads == 10)
        o.size = 100
        #expect(o.effectiveWindow == 400)
        o.size = 8 << 20
        #expect(o.effectiveWindow == 8 << 20)
        o.size = 2 << 20
        #expect(o.effectiveWindow == 4 << 20)
        o.window = 10
        #expect(o.effectiveWindow == 2 << 20)
        #expect(o.problem == nil)
        o.mode = .stream
        o.size = 1
        o.window = 1 << 20
        #expect(o.problem?.contains("messages") == true)
        o.window = 65_536
        #expect(o.problem == nil)
    }
}

@Suite("report formatting")
struct ReportFormatTests {
    func sample() -> BenchReport {
        var errors = BenchErrors()
        errors.mismatch = 2
        errors.earlyClose = 1
        var latency = BenchLatency()
        latency.count = 1000
        latency.p50 = 12.5
        latency.p90 = 15
        latency.p99 = 30.25
        latency.p999 = 80
        latency.max = 1200
        latency.mean = 13.125
        return BenchReport(
            mode: .pingpong, target: "127.0.0.1:8888", connections: 50, size: 64, window: 0, threads: 2,
            durationSeconds: 2, warmupSeconds: 1, ops: 1000, opsAll: 1600, bytesSent: 64_000,
            bytesReceived: 64_000, latency: latency, errors: errors,
            errorDetails: ["connection 3: echoed byte \"x\" differs\n"])
    }

    @Test("JSON has every key, the right types, and the C client's names for bench/run.py")
    func json() throws {
        let text = sample().json()
        #expect(!text.contains("\n"))
        let object = try jsonObject(text)
        #expect(Set(object.keys).count == object.keys.count, "a key twice: \(object.keys)")
        for key in [
            "mode", "target", "connections", "size", "window", "threads", "duration_s", "warmup_s", "ops", "ops_all",
            "ops_per_s", "ops_per_sec", "bytes_sent", "bytes_received", "mb_per_s_out", "mb_per_s_in", "mb_per_sec",
            "latency_us", "errors", "errors_total", "setup_failed", "interrupted", "error_details",
        ] {
            #expect(object[key] != nil, "missing \(key)")
        }
        #expect(object["mode"]?.string == "pingpong")
        #expect(object["ops_per_s"]?.double == 500)
        #expect(object["mb_per_s_in"]?.double == 0.032)
        let latency = try #require(object["latency_us"])
        #expect(Set(latency.keys) == ["p50", "p90", "p99", "p999", "max", "mean"])
        #expect(latency.keys.allSatisfy { latency[$0]?.double != nil }, "every latency is a number")
        #expect(latency["p99"]?.double == 30.25)
        #expect(latency["mean"]?.double == 13.13 || latency["mean"]?.double == 13.12)
        let errors = try #require(object["errors"])
        #expect(Set(errors.keys) == ["mismatch", "early_close", "connect_failed", "lost", "no_eof", "other"])
        #expect(errors.keys.allSatisfy { errors[$0]?.int != nil }, "every error count is an integer")
        #expect(errors["mismatch"]?.int == 2)
        #expect(object["errors_total"]?.int == 3)
        #expect(object["error_details"]?.array?.first?.string == "connection 3: echoed byte \"x\" differs\n")
    }

    @Test("the table names the mode, the rates, the percentiles and what went wrong")
    func table() {
        let t = sample().table()
        #expect(t.contains("pingpong, 50 connections × 64 B, 2 threads"))
        #expect(t.contains("500.0 /s"))
        #expect(t.contains("p99 30.3") || t.contains("p99 30.2"))
        #expect(t.contains("ERRORS: 3 (mismatch 2, early close 1)"))
        #expect(t.contains("FAILED (exit status 1)"))
        var ok = sample()
        ok.errors = BenchErrors()
        #expect(ok.table().contains("no errors"))
        #expect(ok.exitCode == 0)
    }

    @Test func fixedPoint() {
        #expect(NumberText.fixed(0, decimals: 2) == "0.00")
        #expect(NumberText.fixed(1.005, decimals: 1) == "1.0")
        #expect(NumberText.fixed(-2.25, decimals: 1) == "-2.3" || NumberText.fixed(-2.25, decimals: 1) == "-2.2")
        #expect(NumberText.fixed(123456.789, decimals: 3) == "123456.789")
        #expect(NumberText.fixed(.nan, decimals: 2) == "0")
        #expect(NumberText.fixed(1.5, decimals: 3, trimZeros: true) == "1.5")
        #expect(NumberText.fixed(2, decimals: 3, trimZeros: true) == "2")
    }
}

/// What a parser made of a value, comparable across parsers of different result types: the value's description,
/// or the reason it was refused.
enum Parsed: Equatable {
    case accepted(String)
    case refused(String)
}

func value<T>(_ body: () throws(InvalidValue) -> T) -> Parsed {
    do throws(InvalidValue) {
        return .accepted("\(try body())")
    } catch {
        return .refused(error.reason)
    }
}
