import EchodEcho
import EchodEventLoop
import EchodSystem
import Logging

/// The drain that SIGTERM/SIGINT begins: every loop stops accepting and the listeners are closed, so new clients are
/// refused at once; open connections may finish for up to the drain timeout (echoing whatever they send meanwhile);
/// then whatever is still open is closed. `drained` runs once no loop has a connection left, whether the clients
/// finished or the timeout closed them.
///
/// /readyz answers 503 meanwhile because the lifecycle is `draining` (``Lifecycle``, which also sends STOPPING=1).
/// Control loop only; the loops' own state is reached through `loop.execute`, and the loops report back through
/// `control.execute` (which is what makes the unchecked `Sendable` safe).
final class Drain: @unchecked Sendable {
    private let workers: [Worker]
    private let control: EventLoop
    private let limiter: ConnectionLimiter
    private let logger: Logger
    private var timer: LoopTimer?
    private var drainedLoops = 0
    private var drained: (() -> Void)?

    /// Made on the control loop at start-up, before READY=1, with its timeout timer: at SIGTERM time there may be no
    /// descriptor left for a timerfd (the drain is most needed when connections exhaust them), and a drain without its
    /// timer would wait for the slowest client forever. Throws when the timer cannot be made: start-up fails.
    init(workers: [Worker], control: EventLoop, limiter: ConnectionLimiter, logger: Logger) throws(IOError) {
        self.workers = workers
        self.control = control
        self.limiter = limiter
        self.logger = logger
        timer = try LoopTimer(loop: control) { [unowned self] in
            self.logger.notice(
                "drain timeout: closing remaining connections",
                metadata: [
                    "connections": .stringConvertible(self.limiter.openConnections)
                ])
            self.closeAllNow()
        }
    }

    /// Begins the drain. `listenersReleased` runs (on the control loop) once no loop accepts any more: the caller
    /// closes the listening sockets then. `drained` runs once, when every loop's last connection has closed.
    func start(timeout: Duration, listenersReleased: @escaping () -> Void, drained: @escaping () -> Void) {
        precondition(self.drained == nil && drainedLoops == 0, "a drain runs once")
        self.drained = drained
        Worker.onEach(workers, reportingTo: control, { w in w.removeAllAcceptors() }, then: listenersReleased)
        let control = self.control
        Worker.onEach(
            workers, reportingTo: control,
            { [unowned self] w in
                w.service?.whenDrained { control.execute { self.loopDrained() } }
            }, then: {})
        timer?.schedule(after: timeout)
    }

    /// Closes every connection now (the timeout ran out, or a second signal came); `drained` follows.
    func closeAllNow() {
        for w in workers { w.loop.execute { w.service?.closeAll(reason: .drainTimeout) } }
    }

    private func loopDrained() {
        drainedLoops += 1
        guard drainedLoops == workers.count, let drained else { return }
        self.drained = nil
        timer?.cancel()
        timer?.close()
        timer = nil
        logger.info("all connections closed")
        drained()
    }
}
