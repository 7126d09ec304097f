import EchodAdmin
import EchodEventLoop
import EchodSystem
import EchodSystemd
import Logging

/// Watches the worker loops' heartbeats, and feeds systemd's watchdog only while every loop turns.
///
/// Each loop stores the time of its every turn (`LoopStats.heartbeat`) and turns at least every
/// `EventLoop.maximumSleepMilliseconds` even when idle, so a heartbeat older than ``stallThreshold`` means a wedged
/// loop. With `WatchdogSec=` set, WATCHDOG=1 goes out every half interval from the control loop, and is withheld
/// while a loop is stalled: systemd then kills the process (SIGABRT) and restarts it. A wedged control loop sends
/// nothing either. The same threshold decides /livez (``liveChecks(now:)``).
///
/// Control loop only (the heartbeats it reads are atomics written by the loops).
final class WatchdogMonitor {
    /// systemd's watchdog interval (`WATCHDOG_USEC`), nil when the watchdog is off.
    let interval: Duration?
    /// A loop whose heartbeat is older than this is stalled.
    let stallThreshold: Duration
    private let loops: [EventLoop]
    private let notifier: SystemdNotifier
    private let logger: Logger
    private var timer: LoopTimer?

    init(interval: Duration?, loops: [EventLoop], notifier: SystemdNotifier, logger: Logger) {
        self.interval = interval
        self.stallThreshold = Self.stallThreshold(watchdog: interval)
        self.loops = loops
        self.notifier = notifier
        self.logger = logger
    }

    /// 2 s, or a third of the watchdog interval when that is shorter (never below 500 ms): a stall must be seen
    /// (pings withheld) well before systemd's interval runs out, and a long batch of events must not look like one.
    static func stallThreshold(watchdog interval: Duration?) -> Duration {
        guard let interval else { return .seconds(2) }
        return max(.milliseconds(500), min(.seconds(2), interval / 3))
    }

    /// The indices of the loops whose heartbeat is older than ``stallThreshold`` at `now` (a loop that has not
    /// turned yet counts as stalled).
    func stalledLoops(now: Int64) -> [Int] {
        let limit = stallThreshold.nanoseconds
        return loops.filter { now - $0.stats.heartbeat.load(ordering: .relaxed) > limit }.map(\.index)
    }

    /// One check at `now`: WATCHDOG=1 when no loop is stalled, else a critical log line and no ping. Returns
    /// whether it pinged (and the ping was sent).
    @discardableResult
    func check(now: Int64) -> Bool {
        let stalled = stalledLoops(now: now)
        guard stalled.isEmpty else {
            logger.critical("event loop stalled: withholding the systemd watchdog ping", metadata: ["loops": .string("\(stalled)")])
            return false
        }
        return notifier.watchdogPing()
    }

    /// /livez: one check per loop, with the same threshold as the pings.
    func liveChecks(now: Int64) -> [HealthCheck] {
        HealthCheck.loopHeartbeats(loops, stallThreshold: stallThreshold, now: now)
    }

    /// Starts the checks on `control`, every half ``interval`` and once at once; nothing when the watchdog is off.
    /// Throws when the timer cannot be made: the caller fails start-up, since systemd would otherwise kill a healthy
    /// daemon for pings that never come.
    func start(on control: EventLoop) throws(IOError) {
        guard let interval else { return }
        timer = try LoopTimer(loop: control) { [unowned self] in self.check(now: Syscall.monotonicNanoseconds()) }
        timer?.schedule(after: .zero, every: interval / 2)
        logger.info("systemd watchdog enabled", metadata: ["interval_ms": .stringConvertible(interval.nanoseconds / 1_000_000)])
    }

    /// Stops the pings (the daemon is stopping: systemd's stop timeout takes over).
    func stop() {
        timer?.cancel()
    }
}
