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

/// What `echod run` was asked for on its command line.
public struct DaemonOptions: Sendable {
    public var configPath: String?
    public var overrides: ConfigOverrides
    public var environment: [String: String]

    public init(configPath: String?, overrides: ConfigOverrides, environment: [String: String]) {
        self.configPath = configPath
        self.overrides = overrides
        self.environment = environment
    }
}

/// Exit statuses, as in sysexits.h; systemd's `RestartPreventExitStatus=78` keeps a bad config from looping.
public enum ExitStatus {
    public static let success: Int32 = 0
    public static let failure: Int32 = 1
    public static let config: Int32 = 78  // EX_CONFIG
}

/// The daemon: wires event loops, echo, configuration, logging and systemd together.
///
/// Threads: the main thread runs the control loop (signals, timers, reload, systemd notifications); `threads`
/// worker loops serve echo. The control loop owns everything on this object; workers are reached through
/// `execute`, and report back the same way.
public final class Daemon: @unchecked Sendable {
    public static let version = "0.1.0"

    enum Phase { case starting, serving, reloading, draining, stopping }

    let options: DaemonOptions
    let control: EventLoop
    let backend: AsyncLogBackend
    var logger = Logger(label: "echod")
    let notifier: SystemdNotifier
    let testHooks: Bool

    var phase = Phase.starting
    var exitStatus = ExitStatus.success
    var config: LoadedConfig?
    var listeners: [Listener] = []
    var socketActivated = false
    var workers: [Worker] = []
    var limiter = ConnectionLimiter(maxConnections: 1, maxPerIP: 0)
    var signals: SignalSource?
    var statusTimer: LoopTimer?
    var watchdogTimer: LoopTimer?
    var drainTimer: LoopTimer?
    var lastStatus = ""
    var lastReads: UInt64 = 0
    var lastStatusTime: Int64 = 0
    var lastReloadError: String?
    var startedAt: Int64 = 0
    var drainedLoops = 0
    /// The admin endpoint (control loop only).
    var admin: AdminServer?
    var adminListener: Listener?
    var reloadsSucceeded: UInt64 = 0
    var reloadsFailed: UInt64 = 0
    /// A loop whose heartbeat is older than this is stalled (set at start from the watchdog interval).
    var stallThreshold: Duration = .seconds(2)

    static let handledSignals = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGABRT]

    /// Runs echod in the foreground until SIGTERM/SIGINT; returns the process exit status.
    public static func run(_ options: DaemonOptions) -> Int32 {
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
        startedAt = Syscall.monotonicNow().nanoseconds
        notifier = SystemdNotifier(environment: options.environment)
        testHooks = options.environment["ECHOD_TEST_HOOKS"] == "1"
        // Writes to a peer that reset must fail with EPIPE, not kill the process.
        signal(SIGPIPE, SIG_IGN)
        // Blocked before any thread exists (the log writer is the first), so that every thread inherits the mask
        // and these signals arrive only through the control loop's signalfd.
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
        if status == ExitStatus.success && phase != .starting {
            logger.info("echod stopped")
        }
        stopAdmin()
        for l in listeners { Syscall.close(l.fd) }
        listeners.removeAll()
        backend.shutdown(timeout: .seconds(2))
        return status
    }

    // MARK: Configuration

    /// Reads and validates the configuration on a helper thread; `done` runs on the control loop.
    func loadConfig(_ done: @escaping (Result<LoadedConfig, ConfigError>) -> Void) {
        let options = self.options
        let box = UncheckedBox(done)
        BackgroundWork.run(name: "echod-config", {
            Result { () throws(ConfigError) -> LoadedConfig in
                try ConfigLoader.load(path: options.configPath, overrides: options.overrides, environment: options.environment)
            }
        }, deliverOn: control) { result in box.value(result) }
    }

    private func configLoaded(_ result: Result<LoadedConfig, ConfigError>) {
        guard phase == .starting else { return }
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
        do { try backend.apply(logOptions(settings)) } catch {
            throw StartError(description: "log: \(error)", status: ExitStatus.config)
        }
        for warning in loaded.warnings { logger.warning("configuration", metadata: ["warning": .string(warning)]) }
        limiter = ConnectionLimiter(maxConnections: settings.maxConnections, maxPerIP: settings.maxConnectionsPerIP)
        do {
            let passed = try Listeners.fromSystemd()
            socketActivated = !passed.isEmpty
            if socketActivated {
                listeners = passed
            } else {
                let (bound, skipped) = try Listeners.bind(settings.listen)
                try Listeners.requireSome(bound, skipped: skipped)
                logSkipped(skipped)
                listeners = bound
            }
        } catch {
            throw StartError(description: error.description)
        }
        // The admin socket is not an echo listener: kept apart so that the drain (which closes `listeners`) leaves
        // /readyz answering 503 until the process stops.
        let passedAdmin = listeners.first { $0.role == .admin }
        listeners.removeAll { $0.role == .admin }
        try startAdmin(settings.adminListen, passed: passedAdmin)
        if socketActivated {
            logger.info("using sockets passed by systemd; the configured listen addresses are not bound", metadata: [
                "sockets": .string(listeners.map(\.label).joined(separator: ", "))
            ])
        }
        let echoFDs = listeners.filter { $0.role == .echo }.map(\.fd)
        let echoSettings = Self.echoSettings(settings)
        let started = Counter()
        let count = settings.threads
        for i in 0..<count {
            let worker: Worker
            do {
                worker = Worker(loop: try EventLoop(index: i))
                worker.thread = try LoopThread(loop: worker.loop, name: "echod-loop-\(i)") { [unowned self] error in
                    if let error {
                        self.control.execute { self.loopFailed(i, error) }
                    }
                }
            } catch {
                throw StartError(description: "event loop \(i): \(error)")
            }
            workers.append(worker)
            let limiter = self.limiter
            let logger = Logger(label: "echod.echo")
            let readLogger = backend.makeReadLogger(label: "echod.echo")
            worker.loop.execute { [unowned self] in
                do throws(IOError) {
                    try worker.startService(limiter: limiter, settings: echoSettings, logger: logger, readLogger: readLogger)
                    for fd in echoFDs { try worker.addAcceptor(fd) }
                    self.control.execute { started.value += 1; if started.value == count { self.becomeReady() } }
                } catch {
                    self.control.execute { self.loopFailed(i, error) }
                }
            }
        }
    }

    /// One warning per configured IPv6 address this host cannot serve (``Listeners/bind(_:)`` says when that is).
    func logSkipped(_ skipped: [Listeners.Skipped]) {
        for s in skipped {
            logger.warning("this host has no IPv6: not listening on this address", metadata: [
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
        guard phase == .starting else { return }
        phase = .serving
        let settings = config!.settings
        let elapsed = Double(Syscall.monotonicNow().nanoseconds - startedAt) / 1e6
        logger.info("echod started", metadata: [
            "version": .string(Self.version),
            "listeners": .string(listeners.map { "\($0.role.rawValue) \($0.label)" }.joined(separator: ", ")),
            "threads": .stringConvertible(settings.threads),
            "config": .string(config!.filePath ?? "embedded defaults"),
            "startup_ms": .string(NumberText.fixed(elapsed, decimals: 1)),
        ])
        lastStatus = statusText()
        notifier.ready(status: lastStatus)
        startTimers()
    }

    // MARK: Signals

    private func handleSignal(_ signo: Int32) {
        switch signo {
        case SIGTERM, SIGINT:
            beginShutdown(signal: signo == SIGTERM ? "SIGTERM" : "SIGINT")
        case SIGHUP:
            reload()
        case SIGUSR1:
            logger.info("reopening log file (SIGUSR1)")
            backend.reopen()
        case SIGUSR2:
            stallLoopForTests()
        case SIGABRT:
            abortOnRequest()
        default:
            break
        }
    }

    /// SIGABRT sent by another process (systemd's watchdog timeout): log it, then really abort. Taken through the
    /// signalfd because the Swift runtime's backtracer, when it catches an asynchronous SIGABRT directly, prints a
    /// backtrace and returns, and the process would go on running. `abort()` unblocks SIGABRT, raises it (the
    /// backtracer prints every thread, showing where a stalled loop is stuck), then ends the process.
    private func abortOnRequest() {
        logger.critical("SIGABRT received (systemd watchdog timeout?): aborting", metadata: ["stalled_loops": .string("\(stalledLoops())")])
        backend.flush(timeout: .seconds(1))
        abort()
    }

    /// Test-only (ECHOD_TEST_HOOKS=1): wedge event loop 0 forever, as a handler stuck in an endless loop would,
    /// so tests can prove the watchdog and health checks notice. Ignored otherwise.
    private func stallLoopForTests() {
        guard testHooks, let first = workers.first else {
            logger.debug("SIGUSR2 ignored (test hooks are off)")
            return
        }
        logger.warning("test hook: stalling event loop 0 (SIGUSR2 with ECHOD_TEST_HOOKS=1)")
        first.loop.execute { while true { sleep(1000) } }
    }
}

/// A value handed between threads whose own synchronisation (the loop queues) makes it safe.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A counter confined to the control loop, captured by closures that run there.
final class Counter: @unchecked Sendable {
    var value = 0
}
