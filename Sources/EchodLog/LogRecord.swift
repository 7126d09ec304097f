import Glibc
import Logging

/// One log call, as handed from the caller's thread to the writer thread.
///
/// Built on the caller's thread, so it holds only what is already there: the `LogEvent` swift-log gave us
/// (message, error, file, function, line; `source` stays lazy and is computed by the writer) with its metadata
/// replaced by the merged metadata, the handler's label and a wall-clock timestamp. Metadata values are kept
/// unrendered: `.stringConvertible` values get their `description` called on the writer thread.
struct LogRecord: Sendable {
    /// Wall-clock time of the call (CLOCK_REALTIME, which is what log readers correlate against).
    var seconds: Int
    var nanoseconds: Int
    var label: String
    /// `metadata` is the effective metadata (handler + provider + call site), or nil when there is none.
    var event: LogEvent

    var level: Logger.Level { event.level }
    var metadata: Logger.Metadata? { event.metadata }

    init(seconds: Int, nanoseconds: Int, label: String, event: LogEvent) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
        self.label = label
        self.event = event
    }

    /// A record stamped with the current time; `clock_gettime(CLOCK_REALTIME)` is a vDSO call, no syscall.
    init(label: String, event: LogEvent) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        self.init(seconds: ts.tv_sec, nanoseconds: ts.tv_nsec, label: label, event: event)
    }

    /// A record made by the backend itself (drop reports, sink errors).
    static func internalRecord(
        level: Logger.Level, message: String, file: String = #fileID, function: String = #function, line: UInt = #line
    ) -> LogRecord {
        LogRecord(
            label: "echod.log",
            event: LogEvent(
                level: level,
                message: "\(message)",
                metadata: nil,
                source: "EchodLog",
                file: file,
                function: function,
                line: line
            )
        )
    }

    /// The metadata the formatters print: the record's metadata plus the event's error, if any.
    ///
    /// The error is rendered here, on the writer thread, as `error.message` / `error.type` (the keys swift-log's
    /// `StreamLogHandler` uses). Sorted by key so that output is deterministic.
    func renderedMetadataEntries() -> [(key: String, value: Logger.MetadataValue)] {
        var entries: [(key: String, value: Logger.MetadataValue)] = []
        if let metadata = event.metadata {
            entries.reserveCapacity(metadata.count + 2)
            for (key, value) in metadata where event.error == nil || (key != "error.message" && key != "error.type") {
                entries.append((key, value))
            }
        }
        if let error = event.error {
            entries.append(("error.message", .string(String(describing: error))))
            entries.append(("error.type", .string(String(reflecting: type(of: error)))))
        }
        entries.sort { $0.key < $1.key }
        return entries
    }
}

extension Logger.Level {
    /// Compact code for the shared atomic level.
    var code: UInt8 {
        switch self {
        case .trace: 0
        case .debug: 1
        case .info: 2
        case .notice: 3
        case .warning: 4
        case .error: 5
        case .critical: 6
        }
    }

    init(code: UInt8) {
        switch code {
        case 0: self = .trace
        case 1: self = .debug
        case 2: self = .info
        case 3: self = .notice
        case 4: self = .warning
        case 5: self = .error
        default: self = .critical
        }
    }

    /// syslog priority for journald's PRIORITY field (there is no syslog "trace": it maps to debug).
    var syslogPriority: Int {
        switch self {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
