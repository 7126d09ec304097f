import EchodEventLoop
import EchodSystem
import Logging

extension Daemon {
    /// SIGTERM/SIGINT: while serving, drain (``Drain``: stop accepting, let open connections finish for up to
    /// `shutdown.drain_timeout`, close the rest), then stop and exit 0 once the log is flushed. A second signal during
    /// the drain closes everything at once; one during start-up stops at once.
    func beginShutdown(signal name: String) {
        switch lifecycle.phase {
        case .starting:
            logger.info("\(name) during start-up: stopping")
            shutdownWorkersNow()
            return
        case .draining:
            logger.notice("\(name) again: closing all connections now")
            drain?.closeAllNow()
            return
        case .stopping:
            return
        case .serving, .reloading:
            break
        }
        if restartQueued() {
            handOver(signal: name)
            return
        }
        let timeout = config?.settings.drainTimeout ?? .seconds(10)
        let open = limiter.openConnections
        logger.info(
            "shutting down: no longer accepting, draining connections",
            metadata: [
                "signal": .string(name), "connections": .stringConvertible(open),
                "drain_timeout_ms": .stringConvertible(timeout.nanoseconds / 1_000_000),
            ])
        // Made at start-up with its timer (``becomeReady()``), so that a drain needs no new descriptor; serving
        // implies it exists.
        guard let drain else { preconditionFailure("serving without a drain") }
        lifecycle.draining(connections: open, timeout: timeout)
        drain.start(
            timeout: timeout,
            listenersReleased: { [unowned self] in
                // No loop accepts any more: closing the listeners now refuses new connections at once (socket
                // activation: systemd keeps its copy, so new clients wait in the backlog for the next instance).
                for l in self.listeners { self.closeListener(l) }
                self.listeners.removeAll()
                self.closeDatagramListeners()
            },
            drained: { [unowned self] in
                self.shutdownWorkersNow()
            })
    }

    /// Stops every worker loop (closing what is left on it) and then the control loop, which makes `run` return.
    func shutdownWorkersNow() {
        lifecycle.stopping()
        watchdog?.stop()
        whenAllLoops({ w in
            w.removeAllAcceptors()
            w.service?.shutdown()
            w.loop.stop()
        }) { [unowned self] in
            self.stopAdmin()
            self.control.stop()
        }
    }
}
