import EchodAdmin
import EchodConfig
import EchodEcho
import EchodEventLoop
import EchodSystem
import Logging

/// The admin endpoint: an AdminServer on the control loop (never on a worker loop, so that a wedged worker shows
/// up as a failing /livez instead of a silent endpoint). Every callback below runs on the control loop thread,
/// which owns the lifecycle, `workers`, the reload counters: nothing here needs a lock.
extension Daemon {
    /// Binds `admin.listen` (unless systemd passed a socket named `admin`) and starts serving on the control loop.
    func startAdmin(_ address: ListenAddress?, passed: Listener?) throws(StartError) {
        var listener = passed
        if listener == nil, let address {
            guard let socketAddress = SocketAddress(host: address.host, port: address.port) else {
                throw StartError(description: "admin.listen \(address): not a numeric address", status: ExitStatus.config)
            }
            do {
                listener = Listener(fd: try Socket.listen(on: socketAddress, backlog: 64), address: socketAddress, role: .admin, passed: false, configured: nil)
            } catch {
                throw StartError(description: "admin.listen \(address): \(error)")
            }
        }
        guard let listener else { return }
        adminListener = listener
        let exporter = MetricsExporter(version: Self.version)
        let router = AdminRouter(
            live: { [unowned self] in self.liveChecks() },
            ready: { [unowned self] in self.readyChecks() },
            metrics: { [unowned self] in exporter.render(self.metricsSnapshot()) })
        do {
            admin = try AdminServer(loop: control, listenerFD: listener.fd, logger: Logger(label: "echod.admin"), route: router.route)
        } catch {
            throw StartError(description: "admin endpoint on \(listener.label): \(error)")
        }
        logger.info("admin endpoint listening", metadata: ["address": .string(listener.label)])
    }

    func stopAdmin() {
        admin?.stop()
        admin = nil
        if let l = adminListener { Syscall.close(l.fd) }
        adminListener = nil
    }

    /// /livez: every worker loop has turned recently (none before the loops exist).
    func liveChecks() -> [HealthCheck] {
        watchdog?.liveChecks(now: Syscall.monotonicNanoseconds()) ?? []
    }

    /// /readyz: serving (not starting, draining or stopping) and accepting (not paused for exhaustion).
    func readyChecks() -> [HealthCheck] {
        let phaseCheck: HealthCheck =
            switch lifecycle.phase {
            case .serving: HealthCheck(name: "phase", ok: true, detail: "serving")
            case .reloading: HealthCheck(name: "phase", ok: true, detail: "serving (reloading)")
            case .starting: HealthCheck(name: "phase", ok: false, detail: "starting")
            case .draining: HealthCheck(name: "phase", ok: false, detail: "draining")
            case .stopping: HealthCheck(name: "phase", ok: false, detail: "stopping")
            }
        let paused = workers.filter { $0.acceptPaused.load(ordering: .relaxed) }.map(\.loop.index)
        let accepting =
            paused.isEmpty
            ? HealthCheck(name: "accepting", ok: true, detail: "accepting")
            : HealthCheck(
                name: "accepting", ok: false, detail: "paused (out of descriptors or memory) on loop(s) \(paused.map(String.init).joined(separator: ", "))")
        return [phaseCheck, accepting]
    }

    /// Read at scrape time from the loops' single-writer counters.
    func metricsSnapshot() -> MetricsSnapshot {
        var s = MetricsSnapshot()
        s.loops = workers.map { MetricsSnapshot.LoopSample($0.loop) }
        s.ioBackend = ioBackend
        var closed = [UInt64](repeating: 0, count: CloseReason.allCases.count)
        var rejectedTotal: UInt64 = 0
        var rejectedPerIP: UInt64 = 0
        for w in workers {
            let stats = w.stats
            for reason in CloseReason.allCases { closed[reason.rawValue] &+= stats.closed(reason) }
            s.active &+= stats.active
            s.accepted &+= stats.accepted.load
            rejectedTotal &+= stats.rejectedTotal.load
            rejectedPerIP &+= stats.rejectedPerIP.load
            s.bytesIn &+= stats.bytesIn.load
            s.bytesOut &+= stats.bytesOut.load
            s.reads &+= stats.reads.load
            s.acceptPauses &+= stats.acceptPauses.load
            if w.acceptPaused.load(ordering: .relaxed) { s.acceptingPaused = true }
        }
        for reason in CloseReason.allCases { s.closedByReason[reason.description] = closed[reason.rawValue] }
        s.rejectedByLimit = ["max_connections": rejectedTotal, "max_connections_per_ip": rejectedPerIP]
        s.proxyHeaderErrors = [
            "invalid": closed[CloseReason.proxyHeaderInvalid.rawValue], "timeout": closed[CloseReason.proxyHeaderTimeout.rawValue],
            "untrusted": closed[CloseReason.proxyUntrusted.rawValue],
        ]
        s.logWritten = backend.recordsWritten
        s.logDropped = backend.recordsDropped
        s.reloadsOK = reloads.succeeded
        s.reloadsFailed = reloads.failed
        addDatagramMetrics(&s.datagrams)
        return s
    }
}
