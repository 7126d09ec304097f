import EchodEventLoop
import EchodSystem
import EchodSystemd

/// The daemon's lifecycle: its phases, and what systemd is told at each (`sd_notify(3)`). The one place that sends
/// READY=1, RELOADING=1, STOPPING=1 and STATUS= (WATCHDOG=1 is ``WatchdogMonitor``'s):
///
///     starting ─READY=1─▶ serving ─RELOADING=1─▶ reloading ─READY=1─▶ serving
///        │                   │ STATUS= every 5 s, when the text changed
///        │                   ├─STOPPING=1─▶ draining ─▶ stopping
///        │                   └─STOPPING=1─▶ stopping   (a restart that hands connections over: ``handingOver``)
///        └──────────────────────────────────────────────▶ stopping   (a signal or a failure during start-up)
///
/// - READY=1 (with STATUS= and MAINPID=) once every worker loop accepts on every listener: a client can connect the
///   moment systemd says the unit is started. Sent again when a reload ends, whether it was applied or rejected; the
///   STATUS= then says which (`Type=notify-reload` waits for it).
/// - RELOADING=1 on SIGHUP, before the file is read.
/// - STOPPING=1 (with `draining N connections`) when SIGTERM/SIGINT begins the drain, with EXTEND_TIMEOUT_USEC= so that
///   systemd waits for the drain. A start-up that is interrupted or fails stops without READY=1 or STOPPING=1.
/// - /readyz answers 503 in every phase but `serving` and `reloading` (`Daemon.readyChecks`).
///
/// Control loop only, like the rest of the daemon's state.
final class Lifecycle {
    enum Phase { case starting, serving, reloading, draining, stopping }

    private(set) var phase = Phase.starting
    private let notifier: SystemdNotifier
    /// The STATUS= text systemd has (sent alone or with READY=1): an unchanged text is not sent again.
    private var lastStatus = ""
    private var statusTimer: LoopTimer?

    init(notifier: SystemdNotifier) {
        self.notifier = notifier
    }

    /// starting → serving: READY=1 with the first STATUS=. False (nothing sent) in any other phase.
    @discardableResult
    func serving(status: String) -> Bool {
        guard phase == .starting else { return false }
        phase = .serving
        lastStatus = status
        notifier.ready(status: status)
        return true
    }

    /// serving → reloading: RELOADING=1. False (nothing sent) in any other phase: one reload at a time, and none
    /// before READY=1 or once stopping.
    func reloading() -> Bool {
        guard phase == .serving else { return false }
        phase = .reloading
        notifier.reloading()
        return true
    }

    /// reloading → serving: READY=1 again, its STATUS= saying whether the reload failed. False (nothing sent) when
    /// the reload was overtaken (a SIGTERM began the drain meanwhile).
    @discardableResult
    func reloaded(status: String) -> Bool {
        guard phase == .reloading else { return false }
        phase = .serving
        lastStatus = status
        notifier.ready(status: status)
        return true
    }

    /// serving or reloading → draining: STOPPING=1, and a stop timeout extended to `timeout` plus 5 s (the drain may
    /// outlast the unit's `TimeoutStopSec=`). False (nothing sent) in any other phase.
    @discardableResult
    func draining(connections: Int, timeout: Duration) -> Bool {
        guard phase == .serving || phase == .reloading else { return false }
        phase = .draining
        notifier.stopping(status: "draining \(connections) connections")
        notifier.extendTimeout(by: timeout + .seconds(5))
        return true
    }

    /// serving or reloading → stopping, for an orderly restart that keeps connections: STOPPING=1, with a status
    /// saying so. False (nothing sent) in any other phase.
    @discardableResult
    func handingOver(connections: Int) -> Bool {
        guard phase == .serving || phase == .reloading else { return false }
        phase = .stopping
        statusTimer?.cancel()
        notifier.stopping(status: "restarting: handing \(connections) connections over to the next instance")
        return true
    }

    /// Any phase → stopping: the loops are being stopped. Nothing is sent; STATUS= updates end.
    func stopping() {
        phase = .stopping
        statusTimer?.cancel()
    }

    /// STATUS=`text` if serving and the text changed since the last one systemd got.
    func updateStatus(_ text: String) {
        guard phase == .serving, text != lastStatus else { return }
        lastStatus = text
        notifier.status(text)
    }

    /// Every `interval` on `loop` (the control loop): ``updateStatus(_:)`` with what `text` says then. Throws when the
    /// timer cannot be made (no descriptor for its timerfd, epoll_ctl failing): the caller fails start-up, rather
    /// than serving with a STATUS= that silently never changes.
    func startStatusUpdates(on loop: EventLoop, every interval: Duration, _ text: @escaping () -> String) throws(IOError) {
        statusTimer = try LoopTimer(loop: loop) { [unowned self] in
            // The text is built (and the rate sampled) only when it can be sent.
            if self.phase == .serving { self.updateStatus(text()) }
        }
        statusTimer?.schedule(after: interval, every: interval)
    }
}
