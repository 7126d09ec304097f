import EchodAdmin
import EchodEventLoop
import EchodTestSupport
import Foundation
import Testing

/// Parses exposition text into `series → value` (`name{labels}` exactly as written, label order as emitted).
func parseExposition(_ text: String) -> [String: Double] {
    var values: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " ") else { continue }
        values[String(line[..<space])] = Double(line[line.index(after: space)...])
    }
    return values
}

func sampleSnapshot(scale: UInt64 = 1) -> MetricsSnapshot {
    var s = MetricsSnapshot()
    s.loops = [
        MetricsSnapshot.LoopSample(
            index: 0, events: 100 * scale, turns: 60 * scale, busySeconds: 0.25 * Double(scale), turnBuckets: [10, 20, 15, 10, 3, 2, 0].map { $0 * scale }),
        MetricsSnapshot.LoopSample(
            index: 1, events: 7 * scale, turns: 5 * scale, busySeconds: 0.001 * Double(scale), turnBuckets: [5, 0, 0, 0, 0, 0, 0].map { $0 * scale }),
    ]
    s.accepted = 40 * scale
    s.active = 3
    s.closedByReason = [
        "peer_closed": 30 * scale, "reset": 2 * scale, "idle_timeout": 1 * scale, "drain_timeout": 0, "connection_limit": 4 * scale, "per_ip_limit": 0,
    ]
    s.rejectedByLimit = ["max_connections": 4 * scale, "max_connections_per_ip": 0]
    s.proxyHeaderErrors = ["invalid": 6 * scale, "timeout": 1 * scale, "untrusted": 0]
    s.bytesIn = 123_456 * scale
    s.bytesOut = 123_400 * scale
    s.reads = 999 * scale
    s.acceptPauses = 2 * scale
    s.datagrams.received = 500 * scale
    s.datagrams.sent = 480 * scale
    s.datagrams.bytesReceived = 64_000 * scale
    s.datagrams.bytesSent = 61_440 * scale
    s.datagrams.dropped = ["reserved_port": 15 * scale, "source_rate": 5 * scale, "truncated": 0]
    s.logWritten = 50 * scale
    s.logDropped = 1 * scale
    s.reloadsOK = 3 * scale
    s.reloadsFailed = 1 * scale
    return s
}

@Suite("Metrics exporter")
struct MetricsExporterTests {
    @Test("every documented family is in the output, with HELP and TYPE")
    func families() {
        let exporter = MetricsExporter(version: "1.2.3")
        let text = String(decoding: exporter.render(sampleSnapshot()), as: UTF8.self)
        for family in MetricsExporter.families {
            #expect(text.contains("# TYPE \(family.name) \(family.type)\n"), "\(family.name)")
            #expect(text.contains("# HELP \(family.name) "), "\(family.name)")
            #expect(family.name.hasPrefix("echod_"))
            if family.type == "counter" { #expect(family.name.hasSuffix("_total")) }
        }
        let v = parseExposition(text)
        #expect(v[#"echod_build_info{version="1.2.3"}"#] == 1)
        #expect(v["echod_connections_accepted_total"] == 40)
        #expect(v["echod_connections_active"] == 3)
        #expect(v[#"echod_connections_closed_total{reason="peer_closed"}"#] == 30)
        #expect(v[#"echod_connections_closed_total{reason="drain_timeout"}"#] == 0)
        #expect(v[#"echod_connections_rejected_total{limit="max_connections"}"#] == 4)
        #expect(v[#"echod_proxy_header_errors_total{reason="invalid"}"#] == 6)
        #expect(v["echod_received_bytes_total"] == 123_456)
        #expect(v["echod_sent_bytes_total"] == 123_400)
        #expect(v["echod_reads_total"] == 999)
        #expect(v["echod_accept_pauses_total"] == 2)
        #expect(v["echod_accepting_paused"] == 0)
        #expect(v["echod_log_records_written_total"] == 50)
        #expect(v["echod_log_records_dropped_total"] == 1)
        #expect(v[#"echod_config_reloads_total{result="success"}"#] == 3)
        #expect(v[#"echod_config_reloads_total{result="failure"}"#] == 1)
        #expect(v[#"echod_loop_events_total{loop="0"}"#] == 100)
        #expect(v[#"echod_loop_turns_total{loop="1"}"#] == 5)
        #expect(v[#"echod_loop_busy_seconds_total{loop="0"}"#] == 0.25)
        #expect(v["echod_udp_datagrams_received_total"] == 500)
        #expect(v["echod_udp_datagrams_sent_total"] == 480)
        #expect(v["echod_udp_bytes_received_total"] == 64_000)
        #expect(v["echod_udp_bytes_sent_total"] == 61_440)
        #expect(v[#"echod_udp_dropped_total{reason="reserved_port"}"#] == 15)
        #expect(v[#"echod_udp_dropped_total{reason="truncated"}"#] == 0)
    }

    @Test("turn-duration buckets are cumulative, end in +Inf = all turns")
    func buckets() {
        let exporter = MetricsExporter(version: "x")
        let v = parseExposition(String(decoding: exporter.render(sampleSnapshot()), as: UTF8.self))
        let bounds = ["1e-05", "0.0001", "0.001", "0.01", "0.1", "1.0", "+Inf"]
        let expected: [Double] = [10, 30, 45, 55, 58, 60, 60]
        for (bound, value) in zip(bounds, expected) {
            #expect(v[#"echod_loop_turns_by_duration_total{loop="0",upper_bound="\#(bound)"}"#] == value, "\(bound)")
        }
        #expect(v[#"echod_loop_turns_by_duration_total{loop="1",upper_bound="+Inf"}"#] == 5)
        #expect(LoopStats.turnBucketBounds.count + 1 == bounds.count)
    }

    @Test("counters follow the snapshot totals and never go down")
    func monotonic() {
        let exporter = MetricsExporter(version: "x")
        let first = parseExposition(String(decoding: exporter.render(sampleSnapshot(scale: 1)), as: UTF8.self))
        let second = parseExposition(String(decoding: exporter.render(sampleSnapshot(scale: 3)), as: UTF8.self))
        #expect(second["echod_received_bytes_total"] == Double(3 * 123_456))
        #expect(second[#"echod_connections_closed_total{reason="reset"}"#] == 6)
        #expect(second[#"echod_loop_busy_seconds_total{loop="0"}"#] == 0.75)
        // A total that goes down (a bug elsewhere) must not make the exported counter go down.
        let third = parseExposition(String(decoding: exporter.render(sampleSnapshot(scale: 2)), as: UTF8.self))
        for (series, value) in second where series.contains("_total") && !series.hasPrefix("echod_process") {
            #expect(third[series]! >= value, "\(series)")
            #expect(value >= first[series]!, "\(series)")
        }
        // Counting resumes from the lower value: +1 scale from there adds one scale's worth.
        let fourth = parseExposition(String(decoding: exporter.render(sampleSnapshot(scale: 4)), as: UTF8.self))
        #expect(fourth["echod_received_bytes_total"] == Double((3 + 2) * 123_456))
        // Gauges are simply set.
        var paused = sampleSnapshot()
        paused.active = 0
        paused.acceptingPaused = true
        let fifth = parseExposition(String(decoding: exporter.render(paused), as: UTF8.self))
        #expect(fifth["echod_connections_active"] == 0)
        #expect(fifth["echod_accepting_paused"] == 1)
    }

    @Test("process metrics come from /proc/self and look sane")
    func process() throws {
        let sample = ProcessSample.read()
        let rss = try #require(sample.residentBytes)
        #expect(rss > 1 << 20)
        #expect(try #require(sample.virtualBytes) >= rss)
        let fds = try #require(sample.openFDs)
        #expect(fds >= 3)
        #expect(try #require(sample.maxFDs) >= fds)
        let start = try #require(sample.startTimeSeconds)
        let now = Date().timeIntervalSince1970
        #expect(start <= now + 1 && start > now - 3600)
        #expect(sample.cpuTicks != nil)
        let exporter = MetricsExporter(version: "x")
        let v = parseExposition(String(decoding: exporter.render(MetricsSnapshot()), as: UTF8.self))
        #expect((v["echod_process_resident_memory_bytes"] ?? 0) > 1_048_576.0)
        #expect((v["echod_process_open_fds"] ?? 0) >= 3)
        #expect((v["echod_process_start_time_seconds"] ?? 0) > now - 3600)
        #expect(v["echod_process_cpu_seconds_total"] != nil)
    }

    @Test("echod_io_backend names the backend the loops run on, epoll by default")
    func ioBackend() {
        let v = parseExposition(String(decoding: MetricsExporter(version: "0").render(MetricsSnapshot()), as: UTF8.self))
        #expect(v["echod_io_backend{backend=\"epoll\"}"] == 1)
        var s = MetricsSnapshot()
        s.ioBackend = .ioUring
        let ring = parseExposition(String(decoding: MetricsExporter(version: "0").render(s), as: UTF8.self))
        #expect(ring["echod_io_backend{backend=\"io_uring\"}"] == 1)
        #expect(ring["echod_io_backend{backend=\"epoll\"}"] == nil)
    }

    @Test("a snapshot without values still renders valid exposition")
    func emptySnapshot() throws {
        let text = String(decoding: MetricsExporter(version: "0").render(MetricsSnapshot()), as: UTF8.self)
        #expect(text.contains("echod_connections_accepted_total 0\n"))
    }

    /// promtool (Debian package prometheus, which make deps installs); `PROMTOOL=` names another one.
    static let promtoolPath: String? = {
        let candidates = [getenv("PROMTOOL").map { String(cString: $0) }, "/usr/bin/promtool", "/usr/local/bin/promtool"]
        return candidates.compactMap({ $0 }).first(where: isExecutable)
    }()

    // Skipped, and listed as skipped, where promtool is missing: `make test` installs it (make deps).
    @Test(
        "promtool check metrics accepts the output, with values and without",
        .enabled(if: promtoolPath != nil, "promtool is not installed (Debian package prometheus; make deps installs it)"))
    func promtool() throws {
        let exporter = MetricsExporter(version: "0.1.0-test+abc")
        _ = exporter.render(sampleSnapshot(scale: 1))
        let text = String(decoding: exporter.render(sampleSnapshot(scale: 2)), as: UTF8.self)
        try promtoolAccepts(text)
        try promtoolAccepts(String(decoding: MetricsExporter(version: "0").render(MetricsSnapshot()), as: UTF8.self))
    }

    func promtoolAccepts(_ text: String) throws {
        let path = try #require(Self.promtoolPath)
        let (status, report) = try SpawnedProcess.run([path, "check", "metrics"], input: Array(text.utf8))
        #expect(status == 0, "promtool check metrics: \(report)\n---\n\(text)")
        #expect(report.isEmpty, "promtool: \(report)")
    }
}
