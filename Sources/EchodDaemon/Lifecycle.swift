import EchodConfig
import EchodEcho
import EchodEventLoop
import EchodLog
import EchodSystem
import EchodSystemd
import EchodText
import Logging

extension Daemon {
    // MARK: Settings translation

    static func provisionalLogOptions(_ options: DaemonOptions) -> LogOptions {
        let env = options.environment
        let levelName = options.overrides.logLevel ?? env["ECHOD_LOG_LEVEL"] ?? "info"
        let formatName = options.overrides.logFormat ?? env["ECHOD_LOG_FORMAT"] ?? "auto"
        let format = LogFormat(rawValue: formatName) ?? .auto
        return LogOptions(level: Logger.Level(rawValue: levelName) ?? .info, format: sinkFormat(format, env), filePath: nil)
    }

    static func sinkFormat(_ format: LogFormat, _ env: [String: String]) -> LogSinkFormat {
        switch format {
        case .auto: LogOptions.resolveAutoFormat(environment: env)
        case .text: .text
        case .json: .json
        case .journal: .journal
        }
    }

    func logOptions(_ s: EchodSettings) -> LogOptions {
        // A log file holds text or JSON lines: "auto" (and "journal", which cannot go to a file) mean text there.
        let format: LogSinkFormat = s.logFile != nil && s.logFormat != .json ? .text : Self.sinkFormat(s.logFormat, options.environment)
        return LogOptions(
            level: Logger.Level(rawValue: s.logLevel.rawValue) ?? .info,
            format: format,
            filePath: s.logFile,
            queueCapacity: s.logQueueCapacity)
    }

    static func echoSettings(_ s: EchodSettings) -> EchoService.Settings {
        EchoService.Settings(maxPendingBytes: s.maxPendingBytes, idleTimeout: s.idleTimeout, logReads: s.logReads)
    }

    // MARK: Status and watchdog

    func startTimers() {
        statusTimer = try? LoopTimer(loop: control) { [unowned self] in self.refreshStatus() }
        statusTimer?.schedule(after: Self.statusInterval, every: Self.statusInterval)
        lastStatusTime = Syscall.monotonicNow().nanoseconds
        let watchdog = SystemdWatchdog.interval()
        stallThreshold = Self.stallThreshold(watchdog: watchdog)
        if let interval = watchdog {
            let period = interval / 2
            watchdogTimer = try? LoopTimer(loop: control) { [unowned self] in self.watchdogTick() }
            watchdogTimer?.schedule(after: .zero, every: period)
            logger.info("systemd watchdog enabled", metadata: ["interval_ms": .stringConvertible(interval.nanoseconds / 1_000_000)])
        }
    }

    static let statusInterval: Duration = .seconds(5)

    /// A loop whose heartbeat is older than this is considered stalled. Loops turn at least every 250 ms even
    /// when idle, so this leaves ample room for a long batch of events.
    static func stallThreshold(watchdog interval: Duration?) -> Duration {
        guard let interval else { return .seconds(2) }
        return max(.milliseconds(500), min(.seconds(2), interval / 3))
    }

    /// Loops (by index) whose heartbeat is stale.
    public func stalledLoops() -> [Int] {
        let now = Syscall.monotonicNow().nanoseconds
        let limit = stallThreshold.nanoseconds
        return workers.filter { now - $0.loop.stats.heartbeat.load(ordering: .relaxed) > limit }.map(\.loop.index)
    }

    private func watchdogTick() {
        let stalled = stalledLoops()
        if stalled.isEmpty {
            notifier.watchdogPing()
        } else {
            logger.critical("event loop stalled: withholding the systemd watchdog ping", metadata: ["loops": .string("\(stalled)")])
        }
    }

    /// The human-readable STATUS= line: `serving 2 listeners, 124 connections, 1.2k msg/s`.
    func statusText() -> String {
        let now = Syscall.monotonicNow().nanoseconds
        let totalReads = workers.reduce(UInt64(0)) { $0 &+ $1.stats.reads.load }
        let seconds = Double(now - lastStatusTime) / 1e9
        let rate = seconds > 0 && lastReads > 0 ? Double(totalReads &- lastReads) / seconds : 0
        lastReads = totalReads
        lastStatusTime = now
        let echoCount = listeners.filter { $0.role == .echo }.count
        var text = "serving \(echoCount) listener\(echoCount == 1 ? "" : "s"), \(limiter.openConnections) connections, \(Self.humanRate(rate)) msg/s"
        if let failure = lastReloadError { text += "; last reload failed: \(failure)" }
        return text
    }

    static func humanRate(_ r: Double) -> String {
        if r >= 1_000_000 { return NumberText.fixed(r / 1_000_000, decimals: 1) + "M" }
        if r >= 1_000 { return NumberText.fixed(r / 1_000, decimals: 1) + "k" }
        return String(Int(r))
    }

    private func refreshStatus() {
        guard phase == .serving else { return }
        let text = statusText()
        if text != lastStatus {
            lastStatus = text
            notifier.status(text)
        }
    }
}
