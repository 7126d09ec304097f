import EchodSystem
import Glibc
import Logging

/// How the writer thread renders records.
package enum LogSinkFormat: Sendable {
    /// One human-readable line per record: `ts level label: message key=value ...`.
    case text
    /// One JSON object per line (`ts`, `level`, `label`, `msg`, then the metadata keys).
    case json
    /// Native journald fields through `sd_journal_sendv`; `filePath` and `stderrFD` are not used.
    case journal
}

/// Settings of an ``AsyncLogBackend``; given at start-up and again on every reload (``AsyncLogBackend/apply(_:)``).
package struct LogOptions: Sendable, Equatable {
    /// Minimum level; read by every handler through one atomic, so a change reaches all existing loggers.
    package var level: Logger.Level
    /// Output format.
    package var format: LogSinkFormat
    /// Log to this file (appending) instead of the stderr descriptor. Ignored by the `journal` format.
    package var filePath: String?
    /// Records that may wait for the writer thread; past it, records are dropped and counted.
    package var queueCapacity: Int
    /// The descriptor used as "stderr": the sink when `filePath` is nil, and where sink errors are reported.
    /// Not owned (never closed) by the backend. Tests pass a pipe here.
    package var stderrFD: Int32 = 2
    /// Signals the writer thread keeps blocked, besides SIGPIPE: those its host takes through a signalfd (the daemon
    /// passes `Daemon.handledSignals`). Used when the writer thread starts; a later ``AsyncLogBackend/apply(_:)``
    /// cannot change the mask of a running thread.
    package var blockedSignals: [Int32] = []

    /// Creates options; the defaults are what the daemon runs with when nothing is configured.
    package init(
        level: Logger.Level = .info,
        format: LogSinkFormat = .text,
        filePath: String? = nil,
        queueCapacity: Int = 16384,
        stderrFD: Int32 = 2,
        blockedSignals: [Int32] = []
    ) {
        self.level = level
        self.format = format
        self.filePath = filePath
        self.queueCapacity = queueCapacity
        self.stderrFD = stderrFD
        self.blockedSignals = blockedSignals
    }

    /// The `auto` format rule: `journal` when stderr is connected to journald, else `text`.
    ///
    /// systemd sets `JOURNAL_STREAM=<device>:<inode>` for a service whose stderr goes to the journal. The variable is
    /// inherited by children whose stderr may have been redirected elsewhere, so it only counts when it names the
    /// file that fd 2 actually is (the check systemd documents in systemd.exec(5)).
    package static func resolveAutoFormat(environment: [String: String]) -> LogSinkFormat {
        resolveAutoFormat(environment: environment, fileDescriptor: 2)
    }

    /// ``resolveAutoFormat(environment:)`` against any descriptor; tests use a pipe.
    static func resolveAutoFormat(environment: [String: String], fileDescriptor: Int32) -> LogSinkFormat {
        guard let value = environment["JOURNAL_STREAM"] else { return .text }
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return .text }
        guard let st = try? Syscall.fileStatus(fileDescriptor) else { return .text }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode ? .journal : .text
    }
}

/// Why the backend could not be created or reconfigured.
package struct LogBackendError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Human-readable reason, naming the path and errno text where there is one.
    package var description: String

    init(_ description: String) {
        self.description = description
    }

    /// `what` (e.g. `cannot open log file '/x'`) followed by the failed call's reason (`: No such file or directory
    /// (errno 2)`).
    init(_ what: String, _ error: IOError) {
        self.description = "\(what): \(error.reason)"
    }
}
