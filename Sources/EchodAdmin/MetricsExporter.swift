import CoreMetrics
import EchodEventLoop
import Prometheus
import Synchronization

/// Turns a `MetricsSnapshot` into Prometheus text exposition through swift-metrics (`CoreMetrics.Counter`,
/// `FloatingPointCounter`, `Meter`) backed by swift-prometheus handlers in this exporter's own
/// `PrometheusCollectorRegistry`. Nothing here is hand-formatted: the registry writes the text.
///
/// Counting happens where it is free (the loops' single-writer counters); this exporter only collects, at
/// scrape time: each counter is advanced by the difference between the snapshot's total and the total seen at
/// the previous render, so it stays monotonic; gauges are set. A total that goes down (it cannot, short of a
/// bug) is taken as a reset: nothing is subtracted, counting resumes from the new value.
///
/// The handlers are made with the registry's `make…(name:labels:help:)` rather than through
/// `PrometheusMetricsFactory.make…` so that every family has `# HELP` text (`promtool check metrics` insists);
/// they are then wrapped in the swift-metrics types, which is what the updates go through.
///
/// Thread-safe: renders are serialised by a mutex (scrapes are rare; the echo path never comes here).
package final class MetricsExporter: Sendable {
    /// The registry holding every series; exposed so the daemon may add its own swift-prometheus metrics.
    package let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let version: String
    private let state: Mutex<State>

    private struct SeriesKey: Hashable {
        var name: String
        var labels: [String]
        init(_ name: String, _ labels: [(String, String)]) {
            self.name = name
            self.labels = labels.flatMap { [$0.0, $0.1] }
        }
    }

    private final class IntegerSeries: @unchecked Sendable {
        let counter: CoreMetrics.Counter
        var last: UInt64 = 0
        init(_ counter: CoreMetrics.Counter) { self.counter = counter }
    }

    private final class FloatSeries: @unchecked Sendable {
        let counter: CoreMetrics.FloatingPointCounter
        var last: Double = 0
        init(_ counter: CoreMetrics.FloatingPointCounter) { self.counter = counter }
    }

    private struct State: @unchecked Sendable {
        var counters: [SeriesKey: IntegerSeries] = [:]
        var floatCounters: [SeriesKey: FloatSeries] = [:]
        var gauges: [SeriesKey: CoreMetrics.Meter] = [:]
    }

    /// - Parameter version: reported as `echod_build_info{version="…"} 1`.
    package init(version: String, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.version = version
        self.registry = registry
        factory = PrometheusMetricsFactory(registry: registry)
        state = Mutex(State())
    }

    /// Every metric family this exporter writes: name, Prometheus type, labels, help text.
    package static let families: [(name: String, type: String, labels: [String], help: String)] = [
        ("echod_build_info", "gauge", ["version"], "Always 1; the version label says which echod is running."),
        ("echod_io_backend", "gauge", ["backend"], "Always 1; the backend label says what the event loops wait on (epoll or io_uring, io.backend)."),
        ("echod_connections_accepted_total", "counter", [], "Echo connections accepted, including those then closed at once by a connection limit."),
        ("echod_connections_active", "gauge", [], "Echo connections open now."),
        ("echod_connections_closed_total", "counter", ["reason"], "Echo connections closed, by reason."),
        ("echod_connections_rejected_total", "counter", ["limit"], "Echo connections closed at once because a connection limit was reached, by limit."),
        (
            "echod_proxy_header_errors_total", "counter", ["reason"],
            "Connections to PROXY protocol listeners closed before their echo: header invalid, timeout, or untrusted source."
        ),
        ("echod_received_bytes_total", "counter", [], "Bytes read from echo clients."),
        ("echod_sent_bytes_total", "counter", [], "Bytes written back to echo clients."),
        ("echod_reads_total", "counter", [], "Reads on echo connections that returned data."),
        ("echod_accept_pauses_total", "counter", [], "Times accepting was paused for descriptor or memory exhaustion (each back-off step counts)."),
        ("echod_accepting_paused", "gauge", [], "1 while accepting is paused for descriptor or memory exhaustion on any event loop, else 0."),
        ("echod_log_records_written_total", "counter", [], "Log records written to the log sink."),
        ("echod_log_records_dropped_total", "counter", [], "Log records dropped because the log queue was full."),
        ("echod_config_reloads_total", "counter", ["result"], "Configuration reloads, by result (success or failure)."),
        ("echod_loop_events_total", "counter", ["loop"], "Readiness events dispatched by each event loop."),
        ("echod_loop_turns_total", "counter", ["loop"], "Turns (one epoll_wait and the handling of its events) completed by each event loop."),
        ("echod_loop_busy_seconds_total", "counter", ["loop"], "Time each event loop spent handling events, in seconds."),
        (
            "echod_loop_turns_by_duration_total", "counter", ["loop", "upper_bound"],
            "Loop turns whose handling took at most upper_bound seconds (cumulative, like histogram buckets; +Inf counts all turns)."
        ),
        ("echod_udp_datagrams_received_total", "counter", [], "UDP echo: datagrams received."),
        ("echod_udp_datagrams_sent_total", "counter", [], "UDP echo: datagrams sent back."),
        ("echod_udp_bytes_received_total", "counter", [], "UDP echo: payload bytes received."),
        ("echod_udp_bytes_sent_total", "counter", [], "UDP echo: payload bytes sent back."),
        ("echod_udp_dropped_total", "counter", ["reason"], "UDP echo: datagrams not answered, by reason."),
        ("echod_process_resident_memory_bytes", "gauge", [], "Resident memory size in bytes."),
        ("echod_process_virtual_memory_bytes", "gauge", [], "Virtual memory size in bytes."),
        ("echod_process_open_fds", "gauge", [], "Open file descriptors."),
        ("echod_process_max_fds", "gauge", [], "Maximum number of open file descriptors (soft RLIMIT_NOFILE)."),
        ("echod_process_cpu_seconds_total", "counter", [], "User and system CPU time spent, in seconds."),
        ("echod_process_start_time_seconds", "gauge", [], "Start time of the process since the Unix epoch, in seconds."),
    ]

    private static let help: [String: String] = Dictionary(uniqueKeysWithValues: families.map { ($0.name, $0.help) })

    /// Updates every series from `s` and the process's /proc entries, and returns the exposition text.
    package func render(_ s: MetricsSnapshot) -> [UInt8] {
        render(s, process: ProcessSample.read())
    }

    /// As `render(_:)`, with the process sample given (tests).
    package func render(_ s: MetricsSnapshot, process: ProcessSample) -> [UInt8] {
        state.withLock { st in
            update(&st, s, process)
            var out: [UInt8] = []
            out.reserveCapacity(8192)
            registry.emit(into: &out)
            return out
        }
    }

    private func update(_ st: inout State, _ s: MetricsSnapshot, _ p: ProcessSample) {
        gauge(&st, "echod_build_info", [("version", version)], 1)
        gauge(&st, "echod_io_backend", [("backend", s.ioBackend.rawValue)], 1)

        counter(&st, "echod_connections_accepted_total", [], s.accepted)
        gauge(&st, "echod_connections_active", [], Double(s.active))
        for (reason, value) in s.closedByReason.sorted(by: { $0.key < $1.key }) {
            counter(&st, "echod_connections_closed_total", [("reason", reason)], value)
        }
        for (limit, value) in s.rejectedByLimit.sorted(by: { $0.key < $1.key }) {
            counter(&st, "echod_connections_rejected_total", [("limit", limit)], value)
        }
        for (reason, value) in s.proxyHeaderErrors.sorted(by: { $0.key < $1.key }) {
            counter(&st, "echod_proxy_header_errors_total", [("reason", reason)], value)
        }
        counter(&st, "echod_received_bytes_total", [], s.bytesIn)
        counter(&st, "echod_sent_bytes_total", [], s.bytesOut)
        counter(&st, "echod_reads_total", [], s.reads)
        counter(&st, "echod_accept_pauses_total", [], s.acceptPauses)
        gauge(&st, "echod_accepting_paused", [], s.acceptingPaused ? 1 : 0)

        counter(&st, "echod_log_records_written_total", [], s.logWritten)
        counter(&st, "echod_log_records_dropped_total", [], s.logDropped)
        counter(&st, "echod_config_reloads_total", [("result", "success")], s.reloadsOK)
        counter(&st, "echod_config_reloads_total", [("result", "failure")], s.reloadsFailed)

        counter(&st, "echod_udp_datagrams_received_total", [], s.datagrams.received)
        counter(&st, "echod_udp_datagrams_sent_total", [], s.datagrams.sent)
        counter(&st, "echod_udp_bytes_received_total", [], s.datagrams.bytesReceived)
        counter(&st, "echod_udp_bytes_sent_total", [], s.datagrams.bytesSent)
        for (reason, value) in s.datagrams.dropped.sorted(by: { $0.key < $1.key }) {
            counter(&st, "echod_udp_dropped_total", [("reason", reason)], value)
        }

        for loop in s.loops {
            let label = ("loop", String(loop.index))
            counter(&st, "echod_loop_events_total", [label], loop.events)
            counter(&st, "echod_loop_turns_total", [label], loop.turns)
            floatCounter(&st, "echod_loop_busy_seconds_total", [label], loop.busySeconds)
            // The loop keeps its turn-duration histogram as pre-bucketed single-writer counts. swift-prometheus's
            // Histogram can only `record` one observation at a time (under a lock) and has no way to load bucket
            // counts, so feeding it would mean replaying every turn — millions per scrape — and inventing the sum.
            // The buckets are therefore exposed honestly as cumulative counters. The label is `upper_bound`, not
            // `le`, because `le` on a non-histogram fails `promtool check metrics`; `echod_loop_turns_total` and
            // `echod_loop_busy_seconds_total` are the matching count and sum. For quantiles:
            //   histogram_quantile(0.99, label_replace(sum by (upper_bound) (rate(echod_loop_turns_by_duration_total[5m])), "le", "$1", "upper_bound", "(.*)"))
            var cumulative: UInt64 = 0
            let bounds = LoopStats.turnBucketBounds
            for (i, count) in loop.turnBuckets.enumerated() {
                cumulative &+= count
                guard i < bounds.count else { continue }
                counter(&st, "echod_loop_turns_by_duration_total", [label, ("upper_bound", Self.seconds(bounds[i]))], cumulative)
            }
            counter(&st, "echod_loop_turns_by_duration_total", [label, ("upper_bound", "+Inf")], cumulative)
        }

        if let v = p.residentBytes { gauge(&st, "echod_process_resident_memory_bytes", [], Double(v)) }
        if let v = p.virtualBytes { gauge(&st, "echod_process_virtual_memory_bytes", [], Double(v)) }
        if let v = p.openFDs { gauge(&st, "echod_process_open_fds", [], Double(v)) }
        if let v = p.maxFDs { gauge(&st, "echod_process_max_fds", [], Double(v)) }
        if let v = p.cpuTicks { floatCounter(&st, "echod_process_cpu_seconds_total", [], Double(v) / ProcessSample.ticksPerSecond) }
        if let v = p.startTimeSeconds { gauge(&st, "echod_process_start_time_seconds", [], v) }
    }

    /// A bucket bound in nanoseconds as Prometheus writes `le`: seconds, shortest form (`1e-05`, `0.001`, `1.0`).
    static func seconds(_ nanoseconds: Int64) -> String {
        String(describing: Double(nanoseconds) / 1e9)
    }

    // MARK: Series

    private func counter(_ st: inout State, _ name: String, _ labels: [(String, String)], _ total: UInt64) {
        let key = SeriesKey(name, labels)
        let series: IntegerSeries
        if let existing = st.counters[key] {
            series = existing
        } else {
            let handler = registry.makeCounter(name: name, labels: labels, help: Self.help[name] ?? name)
            series = IntegerSeries(CoreMetrics.Counter(label: name, dimensions: labels, handler: handler, factory: factory))
            st.counters[key] = series
        }
        if total > series.last {
            series.counter.increment(by: Int64(clamping: total - series.last))
        }
        series.last = total
    }

    private func floatCounter(_ st: inout State, _ name: String, _ labels: [(String, String)], _ total: Double) {
        let key = SeriesKey(name, labels)
        let series: FloatSeries
        if let existing = st.floatCounters[key] {
            series = existing
        } else {
            let handler = registry.makeCounter(name: name, labels: labels, help: Self.help[name] ?? name)
            series = FloatSeries(CoreMetrics.FloatingPointCounter(label: name, dimensions: labels, handler: handler, factory: factory))
            st.floatCounters[key] = series
        }
        if total > series.last {
            series.counter.increment(by: total - series.last)
        }
        series.last = total
    }

    private func gauge(_ st: inout State, _ name: String, _ labels: [(String, String)], _ value: Double) {
        let key = SeriesKey(name, labels)
        let meter: CoreMetrics.Meter
        if let existing = st.gauges[key] {
            meter = existing
        } else {
            let handler = registry.makeGauge(name: name, labels: labels, help: Self.help[name] ?? name)
            meter = CoreMetrics.Meter(label: name, dimensions: labels, handler: handler, factory: factory)
            st.gauges[key] = meter
        }
        meter.set(value)
    }
}
