import EchodEventLoop

/// Everything `/metrics` reports about the daemon, read by the daemon at scrape time from the single-writer
/// counters the loops keep anyway (`EchoStats`, `LoopStats`) and from the log backend. Nothing on the echo path
/// is touched to produce it: no lock, no atomic read-modify-write.
///
/// Counters are totals since start (sum over loops where per-loop); `MetricsExporter` turns them into
/// monotonic Prometheus counters. Every field defaults to zero/empty so the daemon fills what it has.
public struct MetricsSnapshot: Sendable {
    /// One event loop's counters (`LoopStats`).
    public struct LoopSample: Sendable, Equatable {
        /// The loop's index (`EventLoop.index`), the `loop` label.
        public var index: Int
        /// Readiness events dispatched to handlers.
        public var events: UInt64
        /// Completed loop turns.
        public var turns: UInt64
        /// Time spent handling events, in seconds (the sum matching `turnBuckets`).
        public var busySeconds: Double
        /// Turn counts per bucket, NOT cumulative, exactly as `LoopStats.turnBuckets` keeps them: one per bound of
        /// `LoopStats.turnBucketBounds`, then one for +Inf.
        public var turnBuckets: [UInt64]

        public init(index: Int, events: UInt64 = 0, turns: UInt64 = 0, busySeconds: Double = 0, turnBuckets: [UInt64] = []) {
            self.index = index
            self.events = events
            self.turns = turns
            self.busySeconds = busySeconds
            self.turnBuckets = turnBuckets
        }

        /// Reads `loop.stats` (safe from any thread: relaxed loads of single-writer counters).
        public init(_ loop: EventLoop) {
            let stats = loop.stats
            self.init(index: loop.index, events: stats.events.load, turns: stats.turns.load,
                      busySeconds: Double(stats.busyNanoseconds.load) / 1e9, turnBuckets: stats.turnBuckets.map(\.load))
        }
    }

    /// Per worker loop.
    public var loops: [LoopSample] = []

    /// Echo connections accepted (including those then rejected by a limit), all loops.
    public var accepted: UInt64 = 0
    /// Echo connections open now.
    public var active: UInt64 = 0
    /// Echo connections closed, by reason: `CloseReason.description` (`peer_closed`, `reset`, `idle_timeout`,
    /// `drain_timeout`, `connection_limit`, `per_ip_limit`) → count. Include every reason, zeros too, so that
    /// the series exist from the start.
    public var closedByReason: [String: UInt64] = [:]
    /// Echo connections refused by a limit, by limit: `max_connections`, `max_connections_per_ip` → count.
    public var rejectedByLimit: [String: UInt64] = [:]
    /// Bytes read from echo clients.
    public var bytesIn: UInt64 = 0
    /// Bytes written back to echo clients.
    public var bytesOut: UInt64 = 0
    /// Successful reads (each returned at least one byte) on echo connections.
    public var reads: UInt64 = 0
    /// Times accepting was paused for descriptor/memory exhaustion (each back-off step counts).
    public var acceptPauses: UInt64 = 0
    /// Whether accepting is paused for exhaustion right now on any loop.
    public var acceptingPaused: Bool = false

    /// Log records handed to a sink, and records dropped because the log queue was full.
    public var logWritten: UInt64 = 0
    public var logDropped: UInt64 = 0

    /// Configuration reloads (SIGHUP) applied, and rejected.
    public var reloadsOK: UInt64 = 0
    public var reloadsFailed: UInt64 = 0

    public init() {}
}
