import EchodConfig
import EchodEcho
import EchodLog
import Logging

/// How the validated settings (and, before the file is read, the command line and environment) become the options
/// of the log backend and the echo service.
extension Daemon {
    /// The log options in force until the configuration file has been read: what the command line and environment
    /// say, so that a configuration error is reported in the format asked for.
    static func provisionalLogOptions(_ options: DaemonOptions) -> LogOptions {
        let env = options.environment
        let levelName = options.overrides.logLevel ?? env["ECHOD_LOG_LEVEL"] ?? "info"
        let formatName = options.overrides.logFormat ?? env["ECHOD_LOG_FORMAT"] ?? "auto"
        let format = LogFormat(rawValue: formatName) ?? .auto
        return LogOptions(
            level: Logger.Level(rawValue: levelName) ?? .info, format: sinkFormat(format, env), filePath: nil,
            blockedSignals: handledSignals)
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
            queueCapacity: s.logQueueCapacity,
            blockedSignals: Self.handledSignals)
    }

    static func echoSettings(_ s: EchodSettings) -> EchoService.Settings {
        EchoService.Settings(maxPendingBytes: s.maxPendingBytes, idleTimeout: s.idleTimeout, logReads: s.logReads)
    }
}
