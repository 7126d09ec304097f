import EchodAdmin
import EchodConfig
import EchodEcho
import EchodEventLoop
import EchodLog
import EchodSystem
import EchodSystemd
import EchodText
import Glibc
import Logging

/// What `echod run` was asked for: its command line, and the environment it was started with.
package struct DaemonOptions: Sendable {
    package var configPath: String?
    package var overrides: ConfigOverrides
    package var environment: [String: String]

    package init(configPath: String?, overrides: ConfigOverrides, environment: [String: String]) {
        self.configPath = configPath
        self.overrides = overrides
        self.environment = environment
    }
}

/// Exit statuses, as in sysexits.h; systemd's `RestartPreventExitStatus=78` keeps a bad config from looping.
package enum ExitStatus {
    package static let success: Int32 = 0
    package static let failure: Int32 = 1
    package static let config: Int32 = 78  // EX_CONFIG
}

/// The daemon: wires event loops, echo, configuration, logging and systemd together. The parts with state of their
/// own have types of their own: ``Lifecycle`` (phases and systemd notifications), ``StatusReport`` (the STATUS=
/// line), ``WatchdogMonitor`` (loop heartbeats, WATCHDOG=1, /livez), ``Drain`` (SIGTERM), ``Worker`` (one echo loop).
///
/// Threads: the main thread runs the control loop (signals, timers, reload, systemd notifications); `threads`
/// worker loops serve echo; the log backend has its writer thread, and each configuration read a short-lived one
/// (``BackgroundWork``). The worker loops run on the backend `io.backend` chose (``IOBackendChoice``); the control
/// loop stays on epoll. The control loop owns everything on this object; workers are reached through `execute`,
/// and report back the same way.
package final class Daemon: @unchecked Sendable {
    package static let version = "0.1.0"

    let options: DaemonOptions
    let control: EventLoop
    let backend: AsyncLogBackend
    var logger = Logger(label: "echod")
    let lifecycle: Lifecycle
    let startedAt: Int64

    var exitStatus = ExitStatus.success
    var config: LoadedConfig?
    var listeners: [Listener] = []
    /// The UDP echo sockets (``DatagramListeners``), and the round-robin counter that assigns them to workers.
    var datagramListeners: [DatagramListener] = []
    var datagramRoundRobin = 0
    var socketActivated = false
    var workers: [Worker] = []
    /// What the worker loops wait on (``chooseIOBackend(_:)``), chosen once at start.
    var ioBackend = IOBackend.epoll
    var limiter = ConnectionLimiter(maxConnections: 1, maxPerIP: 0)
    var signals: SignalSource?
    var status = StatusReport()
    /// Created with the worker loops it watches.
    var watchdog: WatchdogMonitor?
    /// Created, with its timeout timer, once the loops serve (``becomeReady()``); begun by the first SIGTERM/SIGINT.
    var drain: Drain?
    var reloads = ReloadOutcomes()
    /// The admin endpoint (control loop only).
    var admin: AdminServer?
    var adminListener: Listener?
    /// Numbers the echo listeners' policies (control loop only).
    var policies = PolicyRegistry()
    /// Keeping connections across restarts (``Keeping``; control loop only).
    var keeping = Keeping()

    /// Runs echod in the foreground until SIGTERM/SIGINT; returns the process exit status.
    package static func run(_ options: DaemonOptions) -> Int32 {
        do {
            let daemon = try Daemon(options: options)
            return daemon.run()
        } catch {
            writeStderr("echod: cannot start: \(error)\n")
            return ExitStatus.failure
        }
    }

    init(options: DaemonOptions) throws {
        self.options = options
        startedAt = Syscall.monotonicNanoseconds()
        lifecycle = Lifecycle(notifier: SystemdNotifier(environment: options.environment))
        // Writes to a peer that reset must fail with EPIPE, not kill the process.
        signal(SIGPIPE, SIG_IGN)
        // Blocked before any thread exists, so that every thread inherits the mask and these signals arrive only
        // through the control loop's signalfd. The log writer is the first thread; its options name the same list.
        Syscall.blockSignals(Self.handledSignals)
        Syscall.raiseFileLimit()
        // Logging starts with what the command line and environment say, before the file is read, so that a
        // config error is reported in the format asked for.
        backend = try AsyncLogBackend(options: Self.provisionalLogOptions(options))
        let backend = self.backend
        LoggingSystem.bootstrap { backend.makeHandler(label: $0) }
        logger = Logger(label: "echod")
        control = try EventLoop(index: -1)
    }

    private func run() -> Int32 {
        do throws(IOError) {
            signals = try SignalSource(loop: control, signals: Self.handledSignals) { [unowned self] in
                self.handleSignal($0)
            }
        } catch {
            logger.critical("cannot set up signal handling", metadata: ["error": .stringConvertible(error)])
            return finishProcess(ExitStatus.failure)
        }
        loadConfig { [unowned self] result in self.configLoaded(result) }
        do throws(IOError) {
            try control.run()
        } catch {
            logger.critical("control loop failed", metadata: ["error": .stringConvertible(error)])
            exitStatus = ExitStatus.failure
        }
        for w in workers { w.thread?.join() }
        return finishProcess(exitStatus)
    }

    private func finishProcess(_ status: Int32) -> Int32 {
        if status == ExitStatus.success && lifecycle.phase != .starting {
            logger.info("echod stopped")
        }
        stopAdmin()
        for l in listeners { closeListener(l) }
        listeners.removeAll()
        closeDatagramListeners()
        backend.shutdown(timeout: .seconds(2))
        return status
    }

    // MARK: Configuration

    /// Reads and validates the configuration on a helper thread; `done` runs on the control loop.
    func loadConfig(_ done: @escaping (Result<LoadedConfig, ConfigError>) -> Void) {
        let options = self.options
        let box = UncheckedBox(done)
        BackgroundWork.run(
            name: "echod-config",
            {
                Result { () throws(ConfigError) -> LoadedConfig in
                    try ConfigLoader.load(path: options.configPath, overrides: options.overrides, environment: options.environment)
                }
            }, deliverOn: control
        ) { result in box.value(result) }
    }

    private func configLoaded(_ result: Result<LoadedConfig, ConfigError>) {
        guard lifecycle.phase == .starting else { return }
        switch result {
        case .failure(let error):
            for problem in error.problems {
                logger.critical("invalid configuration", metadata: ["problem": .string(problem.description)])
            }
            logger.critical("refusing to start: the configuration has \(error.problems.count) problem(s)")
            exitStatus = ExitStatus.config
            control.stop()
        case .success(let loaded):
            do throws(StartError) {
                try start(with: loaded)
            } catch {
                logger.critical("cannot start", metadata: ["error": .string(error.description)])
                exitStatus = error.status
                shutdownWorkersNow()
            }
        }
    }

    struct StartError: Error, CustomStringConvertible {
        var description: String
        var status: Int32 = ExitStatus.failure
    }

    private func start(with loaded: LoadedConfig) throws(StartError) {
        config = loaded
        let settings = loaded.settings
        let privileges = try planPrivileges(settings)
        do { try backend.apply(logOptions(settings)) } catch {
            throw StartError(description: "log: \(error)", status: ExitStatus.config)
        }
        for warning in loaded.warnings { logger.warning("configuration", metadata: ["warning": .string(warning)]) }
        warnIfRoot(privileges)
        limiter = ConnectionLimiter(maxConnections: settings.maxConnections, maxPerIP: settings.maxConnectionsPerIP)
        let unixFiles: UnixFileOptions
        if case .switchTo(let account) = privileges {
            unixFiles = try unixFileOptions(settings, switchingTo: account)
        } else {
            unixFiles = try unixFileOptions(settings, switchingTo: nil)
        }
        // systemd passes the sockets of .socket units and, after a restart, what echod left in its fd store.
        let passedFDs = PassedFDs(SocketActivation.takePassedSockets())
        let passedSockets = passedFDs.activation
        keeping.active = decideKeeping(settings)
        do throws(ListenerError) {
            let passed = try Listeners.fromSystemd(passedSockets)
            socketActivated = !passedSockets.isEmpty
            if socketActivated {
                listeners = passed
                releaseUnusedListeners(passedFDs.listeners)
            } else {
                // A listener the previous instance left in the store is still bound: it must serve its address (a
                // new socket could not bind it), kept in the store or not.
                let result = try Listeners.bind(settings.listen.map(\.target), unix: unixFiles, reusing: passedFDs.listeners)
                try Listeners.requireSome(result.bound, skipped: result.skipped)
                logRemovedStale(result.removedStale)
                logSkipped(result.skipped)
                listeners = result.bound
                releaseUnusedListeners(result.unusedKept)
                if !keeping.active {
                    for i in listeners.indices where listeners[i].keptIdentity != nil {
                        releaseListener(listeners[i])
                        listeners[i].keptIdentity = nil
                    }
                }
            }
        } catch {
            throw StartError(description: error.description)
        }
        try openDatagramListeners(settings, passed: passedSockets)
        // The admin socket is not an echo listener: kept apart so that the drain (which closes `listeners`) leaves
        // /readyz answering 503 until the process stops.
        let passedAdmin = listeners.first { $0.role == .admin }
        listeners.removeAll { $0.role == .admin }
        try startAdmin(settings.adminListen, passed: passedAdmin)
        // Every socket is bound and the log file open: the rest (loops, READY=1) runs as the configured user.
        try dropPrivileges(privileges)
        ioBackend = try chooseIOBackend(settings.ioBackend)
        assignPolicies(settings)
        if socketActivated {
            logger.info(
                "using sockets passed by systemd; the configured listen addresses are not bound",
                metadata: [
                    "sockets": .string(listeners.map(\.summary).joined(separator: ", "))
                ])
        }
        let takeOvers = prepareTakeOver(passedFDs, loops: settings.threads, keep: keeping.active)
        let keep = keeping.active
        let environment = options.environment
        let echoListeners = listeners.filter { $0.role == .echo }.map { ($0.fd, $0.policy, $0.policyIndex) }
        let echoSettings = Self.echoSettings(settings)
        let datagramShare = Self.datagramSettings(settings).share(datagramListeners.count)
        let started = Counter()
        let count = settings.threads
        for i in 0..<count {
            let worker: Worker
            do {
                worker = Worker(loop: try EventLoop(index: i, backend: ioBackend))
                worker.thread = try LoopThread(loop: worker.loop, name: "echod-loop-\(i)") { [unowned self, unowned worker] error in
                    if let error {
                        self.control.execute {
                            worker.loopEnded = true
                            self.loopFailed(i, error)
                        }
                    }
                }
            } catch {
                throw StartError(description: "event loop \(i): \(error)")
            }
            workers.append(worker)
            let limiter = self.limiter
            let logger = Logger(label: "echod.echo")
            let readLogger = backend.makeReadLogger(label: "echod.echo")
            let udpFDs = datagramFDs(forWorker: i)
            worker.loop.execute { [unowned self] in
                do throws(IOError) {
                    try worker.startService(limiter: limiter, settings: echoSettings, logger: logger, readLogger: readLogger)
                    for (fd, policy, index) in echoListeners { try worker.addAcceptor(fd, policy: policy, index: index) }
                    for fd in udpFDs { try worker.addDatagram(fd, settings: datagramShare, logger: Logger(label: "echod.udp")) }
                    for t in takeOvers[i] {
                        worker.service?.takeOver(fd: t.fd, peer: t.peer, policy: t.policy, snapshot: t.snapshot, kept: keep)
                    }
                    if keep { worker.setKeeping(true, environment: environment) }
                    self.control.execute {
                        started.value += 1
                        if started.value == count { self.becomeReady() }
                    }
                } catch {
                    self.control.execute { self.loopFailed(i, error) }
                }
            }
        }
        watchdog = WatchdogMonitor(
            interval: SystemdWatchdog.interval(), loops: workers.map(\.loop),
            notifier: SystemdNotifier(environment: options.environment),
            logger: logger)
    }

    /// Gives each echo listener (or only those in `only`) the policy of its `listen` entry
    /// (``ListenerPolicies/entry(for:in:)``). Returns the listeners whose policy changed (a reload), for the loops to
    /// be told.
    @discardableResult
    func assignPolicies(_ settings: EchodSettings, only: Set<Int32>? = nil) -> [Listener] {
        let values = TagValues(instance: settings.instance, environment: options.environment)
        var changed: [Listener] = []
        for i in listeners.indices where listeners[i].role == .echo && only.map({ $0.contains(listeners[i].fd) }) ?? true {
            let entry = ListenerPolicies.entry(for: listeners[i], in: settings.listen)
            let (index, policy) = policies.policy(for: entry, label: listeners[i].label, values: values)
            let previous = listeners[i].policyIndex
            listeners[i].optionsNote = entry.map(ListenerPolicies.optionsNote) ?? ""
            listeners[i].policy = policy
            listeners[i].policyIndex = index
            if index != previous { changed.append(listeners[i]) }
        }
        return changed
    }

    /// One warning per configured IPv6 address this host cannot serve (``Listeners/bind(_:)`` says when that is).
    func logSkipped(_ skipped: [Listeners.Skipped]) {
        for s in skipped {
            logger.warning(
                "this host has no IPv6: not listening on this address",
                metadata: [
                    "address": .string(s.address.description), "error": .stringConvertible(s.error),
                ])
        }
    }

    private func loopFailed(_ index: Int, _ error: IOError) {
        logger.critical("event loop failed", metadata: ["loop": .stringConvertible(index), "error": .stringConvertible(error)])
        exitStatus = ExitStatus.failure
        shutdownWorkersNow()
    }

    private func becomeReady() {
        guard lifecycle.phase == .starting else { return }
        let settings = config!.settings
        let elapsed = Double(Syscall.monotonicNanoseconds() - startedAt) / 1e6
        logger.info(
            "echod started",
            metadata: [
                "version": .string(Self.version),
                "listeners": .string((listeners.map { "\($0.role.rawValue) \($0.summary)" } + datagramListeners.map(\.label)).joined(separator: ", ")),
                "threads": .stringConvertible(settings.threads),
                "io_backend": .stringConvertible(ioBackend),
                "config": .string(config!.filePath ?? "embedded defaults"),
                "startup_ms": .string(NumberText.fixed(elapsed, decimals: 1)),
            ])
        // The control timers (drain timeout, STATUS= updates, watchdog pings): a daemon that cannot make one stops
        // here, loudly, rather than serve without a drain timeout, a status, or the pings systemd expects.
        storeListeners()
        do throws(IOError) {
            drain = try Drain(workers: workers, control: control, limiter: limiter, logger: logger)
            lifecycle.serving(status: statusLine())
            try lifecycle.startStatusUpdates(on: control, every: StatusReport.interval) { [unowned self] in self.statusLine() }
            try watchdog?.start(on: control)
        } catch {
            logger.critical("cannot start: a control timer could not be made", metadata: ["error": .stringConvertible(error)])
            exitStatus = ExitStatus.failure
            shutdownWorkersNow()
        }
    }

    /// Runs `work` on every worker loop still running; when all have done it, runs `then` on the control loop. A loop
    /// that ended on an error is left out, else the shutdown after its failure would wait for it for ever.
    func whenAllLoops(_ work: @escaping (Worker) -> Void, then: @escaping () -> Void) {
        Worker.onEach(workers.filter { !$0.loopEnded }, reportingTo: control, work, then: then)
    }

    /// The STATUS= line now (``StatusReport``); starts the next rate window.
    func statusLine() -> String {
        let sample = StatusReport.Sample(
            listeners: listeners.filter { $0.role == .echo }.count,
            connections: limiter.openConnections,
            reads: workers.reduce(0) { $0 &+ $1.stats.reads.load },
            reloadFailure: reloads.lastFailure, backend: ioBackend)
        return status.line(sample, now: Syscall.monotonicNanoseconds())
    }
}
