import EchodText

/// Error counts by kind. Any of them makes the run fail (exit status 1).
package struct BenchErrors: Sendable, Equatable {
    /// An echoed byte differed from the byte sent at that stream offset, or bytes came back that were never sent
    /// (`--udp`: a datagram that differs, or a second echo of one).
    package var mismatch: UInt64 = 0
    /// The server closed or reset the connection while echoes were outstanding.
    package var earlyClose: UInt64 = 0
    /// A connection could not be established (after set-up: `connect` mode's per-operation connects).
    package var connectFailed: UInt64 = 0
    /// Bytes sent never came back within the drain timeout (the connection stayed open); with `--udp`, datagrams
    /// not echoed within the loss timeout.
    package var lost: UInt64 = 0
    /// Everything came back, but the server did not close after our half-close within the drain timeout.
    package var noEOF: UInt64 = 0
    /// Anything else (an unexpected system call error).
    package var other: UInt64 = 0

    package init() {}

    package var total: UInt64 { mismatch + earlyClose + connectFailed + lost + noEOF + other }

    package mutating func add(_ o: BenchErrors) {
        mismatch += o.mismatch
        earlyClose += o.earlyClose
        connectFailed += o.connectFailed
        lost += o.lost
        noEOF += o.noEOF
        other += o.other
    }

    /// (JSON key, count) in a fixed order.
    package var named: [(String, UInt64)] {
        [
            ("mismatch", mismatch), ("early_close", earlyClose), ("connect_failed", connectFailed), ("lost", lost),
            ("no_eof", noEOF), ("other", other),
        ]
    }
}

/// The outcome of a bench run: what `BenchRunner.run` returns, printed as a table or as one JSON object.
package struct BenchReport: Sendable {
    package var mode: BenchMode
    /// `HOST:PORT` as connected to.
    package var target: String
    package var connections: Int
    package var size: Int
    /// Bytes in flight per connection (`stream` mode; 0 otherwise).
    package var window: Int
    package var threads: Int
    /// UDP datagrams instead of TCP connections.
    package var udp: Bool
    /// `udp`: echoes that came after their datagram had been counted lost (not errors: the loss was).
    package var late: UInt64 = 0
    /// The measured interval in seconds (excludes warm-up and drain).
    package var durationSeconds: Double
    package var warmupSeconds: Double
    /// Operations completed in the measured interval: round trips, stream messages, or connect-echo-close cycles.
    package var ops: UInt64
    /// Operations completed at all (warm-up and drain included): the divisor for server CPU per operation.
    package var opsAll: UInt64
    /// Payload bytes written and read (and verified) in the measured interval.
    package var bytesSent: UInt64
    package var bytesReceived: UInt64
    package var latency: BenchLatency
    package var errors: BenchErrors
    /// The first few errors, described (which connection, which offset, what was expected).
    package var errorDetails: [String]
    /// Set when the run could not start: nothing listening, connect timed out, no resources. Exit status 2.
    package var setupFailure: String?
    /// The user stopped the run early (SIGINT).
    package var interrupted: Bool
    /// `--proxy-protocol`: `v1` or `v2` when each connection sent a PROXY protocol header first.
    package var proxyProtocol: String?

    package init(
        mode: BenchMode, target: String, connections: Int, size: Int, window: Int, threads: Int, udp: Bool = false,
        durationSeconds: Double = 0, warmupSeconds: Double = 0, ops: UInt64 = 0, opsAll: UInt64 = 0,
        bytesSent: UInt64 = 0, bytesReceived: UInt64 = 0, latency: BenchLatency = BenchLatency(),
        errors: BenchErrors = BenchErrors(), errorDetails: [String] = [], setupFailure: String? = nil,
        interrupted: Bool = false
    ) {
        self.mode = mode
        self.target = target
        self.connections = connections
        self.size = size
        self.window = window
        self.threads = threads
        self.udp = udp
        self.durationSeconds = durationSeconds
        self.warmupSeconds = warmupSeconds
        self.ops = ops
        self.opsAll = opsAll
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.latency = latency
        self.errors = errors
        self.errorDetails = errorDetails
        self.setupFailure = setupFailure
        self.interrupted = interrupted
    }

    package var opsPerSecond: Double { durationSeconds > 0 ? Double(ops) / durationSeconds : 0 }
    /// 10^6 bytes per second written.
    package var mbPerSecondOut: Double { durationSeconds > 0 ? Double(bytesSent) / durationSeconds / 1e6 : 0 }
    /// 10^6 bytes per second echoed back (and verified).
    package var mbPerSecondIn: Double { durationSeconds > 0 ? Double(bytesReceived) / durationSeconds / 1e6 : 0 }

    /// 0: no errors; 1: errors were counted; 2: the run could not start (cannot connect).
    package var exitCode: Int32 {
        if setupFailure != nil { return 2 }
        return errors.total > 0 ? 1 : 0
    }

    // MARK: JSON

    /// Exactly one JSON object on one line. Keys: see the README section of `echod bench`; `ops_per_sec`,
    /// `mb_per_sec` and `errors_total` repeat `ops_per_s`, `mb_per_s_in` and the error sum under the names
    /// bench/client/echoclient uses, so bench/run.py reads both clients alike.
    package func json() -> String {
        var o = JSONObject()
        o.add("mode", string: mode.rawValue)
        o.add("transport", string: udp ? "udp" : "tcp")
        o.add("proxy_protocol", raw: proxyProtocol.map(Escaping.jsonString) ?? "null")
        o.add("target", string: target)
        o.add("connections", raw: String(connections))
        o.add("size", raw: String(size))
        o.add("window", raw: String(window))
        o.add("threads", raw: String(threads))
        o.add("duration_s", raw: NumberText.fixed(durationSeconds, decimals: 6))
        o.add("warmup_s", raw: NumberText.fixed(warmupSeconds, decimals: 6))
        o.add("ops", raw: String(ops))
        o.add("ops_all", raw: String(opsAll))
        o.add("ops_per_s", raw: NumberText.fixed(opsPerSecond, decimals: 1))
        o.add("ops_per_sec", raw: NumberText.fixed(opsPerSecond, decimals: 1))
        o.add("bytes_sent", raw: String(bytesSent))
        o.add("bytes_received", raw: String(bytesReceived))
        o.add("mb_per_s_out", raw: NumberText.fixed(mbPerSecondOut, decimals: 3))
        o.add("mb_per_s_in", raw: NumberText.fixed(mbPerSecondIn, decimals: 3))
        o.add("mb_per_sec", raw: NumberText.fixed(mbPerSecondIn, decimals: 3))
        var lat = JSONObject()
        lat.add("p50", raw: NumberText.fixed(latency.p50, decimals: 2))
        lat.add("p90", raw: NumberText.fixed(latency.p90, decimals: 2))
        lat.add("p99", raw: NumberText.fixed(latency.p99, decimals: 2))
        lat.add("p999", raw: NumberText.fixed(latency.p999, decimals: 2))
        lat.add("max", raw: NumberText.fixed(latency.max, decimals: 2))
        lat.add("mean", raw: NumberText.fixed(latency.mean, decimals: 2))
        o.add("latency_us", raw: lat.text)
        var errs = JSONObject()
        for (key, value) in errors.named { errs.add(key, raw: String(value)) }
        o.add("errors", raw: errs.text)
        o.add("errors_total", raw: String(errors.total))
        if udp { o.add("late", raw: String(late)) }
        o.add("setup_failed", raw: setupFailure == nil ? "false" : "true")
        o.add("interrupted", raw: interrupted ? "true" : "false")
        let details = (setupFailure.map { [$0] } ?? []) + errorDetails
        o.add("error_details", raw: "[" + details.map(Escaping.jsonString).joined(separator: ",") + "]")
        return o.text
    }

    // MARK: Table

    /// The human summary.
    package func table() -> String {
        if let setupFailure {
            return "echod bench: \(setupFailure)\n"
        }
        var lines: [String] = []
        let noun = udp ? "socket" : "connection"
        let conns = connections == 1 ? "1 \(noun)" : "\(connections) \(noun)s"
        let thr = threads == 1 ? "1 thread" : "\(threads) threads"
        var head = "echod bench \(target): \(mode.rawValue), \(conns) × \(formatBytes(UInt64(size))), \(thr)"
        if mode == .stream { head += ", window \(formatBytes(UInt64(window)))" }
        if let proxyProtocol { head += ", PROXY protocol \(proxyProtocol) header first" }
        lines.append(head)
        var timing = "  measured \(NumberText.fixed(durationSeconds, decimals: 2)) s"
        if warmupSeconds > 0 { timing += " after \(NumberText.fixed(warmupSeconds, decimals: 2, trimZeros: true)) s of warm-up" }
        if interrupted { timing += " (interrupted)" }
        lines.append(timing)
        lines.append("")
        let opName: String
        switch mode {
        case .pingpong: opName = "round trips"
        case .stream: opName = "messages echoed"
        case .connect: opName = "connections"
        }
        let rows: [(String, String, String)] = [
            (opName, NumberText.grouped(ops), formatRate(opsPerSecond) + " /s"),
            ("sent", formatMB(bytesSent), NumberText.fixed(mbPerSecondOut, decimals: 2) + " MB/s"),
            ("received", formatMB(bytesReceived), NumberText.fixed(mbPerSecondIn, decimals: 2) + " MB/s"),
        ]
        for (name, total, rate) in rows {
            lines.append("  " + pad(name, 18) + padLeft(total, 14) + "   " + padLeft(rate, 16))
        }
        let l = latency
        if l.count > 0 {
            lines.append(
                "  " + pad("latency (µs)", 18) + "p50 \(us(l.p50))  p90 \(us(l.p90))  p99 \(us(l.p99))  "
                    + "p99.9 \(us(l.p999))  max \(us(l.max))  mean \(us(l.mean))")
        } else {
            lines.append("  " + pad("latency (µs)", 18) + "no operation completed in the measured interval")
        }
        if udp {
            let lostText = NumberText.grouped(errors.lost) + " lost, " + NumberText.grouped(late) + " of them answered late"
            lines.append("  " + pad("datagrams", 18) + lostText + " (loss timeout ends the wait; each loss is an error)")
        }
        lines.append("")
        if errors.total == 0 {
            lines.append("  every echoed byte verified: no errors")
        } else {
            let parts = errors.named.filter { $0.1 > 0 }.map { "\($0.0.replacingUnderscores) \(NumberText.grouped($0.1))" }
            lines.append("  ERRORS: \(NumberText.grouped(errors.total)) (\(parts.joined(separator: ", ")))")
            for d in errorDetails { lines.append("    " + d) }
            if errors.total > UInt64(errorDetails.count) {
                lines.append("    …")
            }
            lines.append("  FAILED (exit status 1)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension BenchProgress {
    /// `[  3 s] measuring  123,456 ops  41,152/s  2.63 MB/s out  2.63 MB/s in  0 errors`
    package var line: String {
        "[" + padLeft(String(Int(elapsed.rounded())), 3) + " s] " + pad(phase.rawValue, 9) + "  "
            + NumberText.grouped(ops) + " ops  " + formatRate(opsPerSecond) + "/s  "
            + NumberText.fixed(mbPerSecondOut, decimals: 2) + " MB/s out  " + NumberText.fixed(mbPerSecondIn, decimals: 2) + " MB/s in  "
            + NumberText.grouped(errors) + (errors == 1 ? " error" : " errors")
    }
}

// MARK: Formatting without Foundation

/// A JSON object built field by field: keys and string values through the one JSON escaper
/// (``Escaping/jsonString(_:)``), numbers as the caller formatted them.
struct JSONObject {
    private var parts: [String] = []
    mutating func add(_ key: String, raw: String) { parts.append(Escaping.jsonString(key) + ":" + raw) }
    mutating func add(_ key: String, string: String) { add(key, raw: Escaping.jsonString(string)) }
    var text: String { "{" + parts.joined(separator: ",") + "}" }
}

func formatRate(_ x: Double) -> String {
    let tenths = UInt64(min(max(0, x) * 10, 1.8e19).rounded())
    return NumberText.grouped(tenths / 10) + "." + String(tenths % 10)
}

func formatMB(_ bytes: UInt64) -> String { NumberText.fixed(Double(bytes) / 1e6, decimals: 2) + " MB" }

func formatBytes(_ n: UInt64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
    if n >= 1024 && n % 1024 == 0 { return "\(n >> 10) KiB" }
    return "\(n) B"
}

private func us(_ x: Double) -> String {
    x >= 1000 ? NumberText.grouped(UInt64(x.rounded())) : NumberText.fixed(x, decimals: x >= 100 ? 0 : 1)
}

private func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

private func padLeft(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

extension String {
    var replacingUnderscores: String { String(map { $0 == "_" ? " " : $0 }) }
}
