import EchodEventLoop

/// Everything `/metrics` reports about the daemon, read by the daemon at scrape time from the single-writer
/// counters the loops keep anyway (`EchoStats`, `LoopStats`) and from the log backend. Nothing on the echo path
/// is touched to produce it: no lock, no atomic read-modify-write.
///
/// Counters are totals since start (sum over loops where per-loop); `MetricsExporter` turns them into
/// monotonic Prometheus counters. Every field defaults to zero/empty so the daemon fills what it has.
package struct MetricsSnapshot: Sendable {
    /// One event loop's counters (`LoopStats`).
    package struct LoopSample: Sendable, Equatable {
        /// The loop's index (`EventLoop.index`), the `loop` label.
        package var index: Int
        /// Readiness events dispatched to handlers.
        package var events: UInt64
        /// Completed loop turns.
        package var turns: UInt64
        /// Time spent handling events, in seconds (the sum matching `turnBuckets`).
        package var busySeconds: Double
        /// Turn counts per bucket, NOT cumulative, exactly as `LoopStats.turnBuckets` keeps them: one per bound of
        /// `LoopStats.turnBucketBounds`, then one for +Inf.
        package var turnBuckets: [UInt64]

        package init(index: Int, events: UInt64 = 0, turns: UInt64 = 0, busySeconds: Double = 0, turnBuckets: [UInt64] = []) {
            self.index = index
            self.events = events
            self.turns = turns
            self.busySeconds = busySeconds
            self.turnBuckets = turnBuckets
        }

        /// Reads `loop.stats` (safe from any thread: relaxed loads of single-writer counters).
        package init(_ loop: EventLoop) {
            let stats = loop.stats
            self.init(
                index: loop.index, events: stats.events.load, turns: stats.turns.load,
                busySeconds: Double(stats.busyNanoseconds.load) / 1e9, turnBuckets: stats.turnBuckets.map(\.load))
        }
    }

    /// Per worker loop.
    package var loops: [LoopSample] = []
    /// What the worker loops wait on (`io.backend`, as the daemon chose it at start).
    package var ioBackend: IOBackend = .epoll

    /// Echo connections accepted (including those then rejected by a limit), all loops.
    package var accepted: UInt64 = 0
    /// Echo connections open now.
    package var active: UInt64 = 0
    /// Echo connections closed, by reason: `CloseReason.description` (`peer_closed`, `reset`, `idle_timeout`,
    /// `drain_timeout`, `connection_limit`, `per_ip_limit`, `proxy_header_invalid`, `proxy_header_timeout`,
    /// `proxy_untrusted`) → count. Include every reason, zeros too, so that
    /// the series exist from the start.
    package var closedByReason: [String: UInt64] = [:]
    /// Echo connections refused by a limit, by limit: `max_connections`, `max_connections_per_ip` → count.
    package var rejectedByLimit: [String: UInt64] = [:]
    /// Connections to PROXY protocol listeners closed for their header, by reason: `invalid`, `timeout`, `untrusted` →
    /// count (the same connections are in `closedByReason` as `proxy_header_invalid`, ...).
    package var proxyHeaderErrors: [String: UInt64] = [:]
    /// Bytes read from echo clients.
    package var bytesIn: UInt64 = 0
    /// Bytes written back to echo clients.
    package var bytesOut: UInt64 = 0
    /// Successful reads (each returned at least one byte) on echo connections.
    package var reads: UInt64 = 0
    /// Times accepting was paused for descriptor/memory exhaustion (each back-off step counts).
    package var acceptPauses: UInt64 = 0
    /// Whether accepting is paused for exhaustion right now on any loop.
    package var acceptingPaused: Bool = false

    /// Log records handed to a sink, and records dropped because the log queue was full.
    package var logWritten: UInt64 = 0
    package var logDropped: UInt64 = 0

    /// Configuration reloads (SIGHUP) applied, and rejected.
    package var reloadsOK: UInt64 = 0
    package var reloadsFailed: UInt64 = 0

    /// The UDP echo, all sockets and loops (`DatagramStats`).
    package struct Datagrams: Sendable {
        package var received: UInt64 = 0
        package var sent: UInt64 = 0
        package var bytesReceived: UInt64 = 0
        package var bytesSent: UInt64 = 0
        /// Datagrams not answered, by reason (`DropReason.description`) → count; every reason, zeros too.
        package var dropped: [String: UInt64] = [:]
        package init() {}
    }
    package var datagrams = Datagrams()

    package init() {}
}
