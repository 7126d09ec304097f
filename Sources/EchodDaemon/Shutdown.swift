import EchodSystem
import EchodConfig
import EchodEcho
import EchodEventLoop
import Logging

extension Daemon {
    /// SIGTERM/SIGINT: stop accepting, let open connections finish for up to `shutdown.drain_timeout` (echoing
    /// whatever they send meanwhile), then close the rest, flush the log and exit 0. A second signal during the
    /// drain closes everything at once.
    func beginShutdown(signal name: String) {
        switch phase {
        case .starting:
            logger.info("\(name) during start-up: stopping")
            shutdownWorkersNow()
            return
        case .draining:
            logger.notice("\(name) again: closing all connections now")
            for w in workers { w.loop.execute { w.service?.closeAll(reason: .drainTimeout) } }
            return
        case .stopping:
            return
        case .serving, .reloading:
            break
        }
        phase = .draining
        let drainTimeout = config?.settings.drainTimeout ?? .seconds(10)
        let open = limiter.openConnections
        logger.info("shutting down: no longer accepting, draining connections", metadata: [
            "signal": .string(name), "connections": .stringConvertible(open),
            "drain_timeout_ms": .stringConvertible(drainTimeout.nanoseconds / 1_000_000),
        ])
        notifier.stopping(status: "draining \(open) connections")
        // The drain may outlast the unit's stop timeout: tell systemd how long to wait for us.
        notifier.extendTimeout(by: drainTimeout + .seconds(5))
        whenAllLoops({ w in w.removeAllAcceptors() }) { [unowned self] in
            // Every loop has let go of the listeners: closing them now refuses new connections at once (socket
            // activation: systemd keeps its copy, so new clients wait in the backlog for the next instance).
            for l in self.listeners { Syscall.close(l.fd) }
            self.listeners.removeAll()
        }
        whenAllLoops({ [unowned self] w in
            w.service?.whenDrained { self.control.execute { self.loopDrained() } }
        }) {}
        drainTimer = try? LoopTimer(loop: control) { [unowned self] in
            let left = self.limiter.openConnections
            self.logger.notice("drain timeout: closing remaining connections", metadata: ["connections": .stringConvertible(left)])
            for w in self.workers { w.loop.execute { w.service?.closeAll(reason: .drainTimeout) } }
        }
        drainTimer?.schedule(after: drainTimeout)
    }

    private func loopDrained() {
        drainedLoops += 1
        if drainedLoops == workers.count {
            logger.info("all connections closed")
            drainTimer?.cancel()
            shutdownWorkersNow()
        }
    }

    /// Stops every worker loop (closing what is left on it) and then the control loop, which makes `run` return.
    func shutdownWorkersNow() {
        phase = .stopping
        statusTimer?.cancel()
        watchdogTimer?.cancel()
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
