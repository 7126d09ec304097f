import EchodSystem
import Logging
import Synchronization

/// The asynchronous swift-log backend: handlers enqueue records, one writer thread formats and writes them.
///
/// A log call never blocks on and never performs I/O: it stamps the time, copies the message and merged metadata
/// into a record and appends it to a bounded queue (dropping and counting it when full). Rendering, including
/// `description` of `.stringConvertible` metadata, happens on the writer thread. A stuck sink therefore stalls only
/// the writer thread; callers see drops, reported as `log queue full: dropped N records since last report`.
///
/// ```swift
/// let backend = try AsyncLogBackend(options: LogOptions(level: .info, format: .text))
/// LoggingSystem.bootstrap { backend.makeHandler(label: $0) }
/// ...
/// backend.shutdown(timeout: .seconds(2))   // at exit
/// ```
package final class AsyncLogBackend: Sendable {
    let core: LogCore

    struct State {
        var options: LogOptions
        /// The writer thread until `shutdown` takes it.
        var thread: SystemThread?
    }

    /// Internal rather than private so that the Log tests can read the current options (no production code needs to).
    let state: Mutex<State>

    /// Starts the writer thread.
    ///
    /// - Throws: ``LogBackendError`` when `filePath` cannot be opened (the message names the path and the errno text),
    ///   when `queueCapacity` is below 1, or when the thread cannot be created.
    package convenience init(options: LogOptions) throws {
        try self.init(options: options, dropReportInterval: .seconds(5))
    }

    /// `dropReportInterval`: how often the writer reports drops (tests shorten it). `coalescing`: how long the
    /// writer, woken from idle, lets records gather before writing them (see `LogWriter.linger()`).
    init(
        options: LogOptions, dropReportInterval: Duration, coalescing: Duration = LogWriter.defaultCoalescing
    ) throws(LogBackendError) {
        try Self.validate(options)
        let sink: LogSink
        if let path = Self.filePath(of: options) {
            sink = LogSink(fileFD: try LogSink.openLogFile(path), path: path)
        } else {
            sink = LogSink(stderrFD: options.stderrFD)
        }
        let core = LogCore(capacity: options.queueCapacity, level: options.level)
        let writer = LogWriter(
            core: core, format: options.format, stderrFD: options.stderrFD, sink: sink,
            reportInterval: dropReportInterval, coalescing: coalescing, initialCapacity: options.queueCapacity)
        let thread = try LogWriter.start(writer, blocking: options.blockedSignals)
        self.core = core
        self.state = Mutex(State(options: options, thread: thread))
    }

    deinit {
        // Not shut down explicitly: let the thread drain and end on its own, without waiting for it.
        let thread = state.withLock { $0.thread }
        if let thread {
            _ = core.queue.enqueue(.stop(WakeSemaphore()), close: true)
            thread.detach()
        }
    }

    /// A handler for `LoggingSystem.bootstrap`. It follows the backend's level unless its own `logLevel` is set.
    package func makeHandler(label: String) -> AsyncLogHandler {
        AsyncLogHandler(label: label, core: core, metadataProvider: LoggingSystem.metadataProvider)
    }

    /// Reconfigures at run time (SIGHUP reload).
    ///
    /// The level takes effect at once for every handler. Format and destination changes are queued behind the records
    /// already logged, so those are still written the old way. A new file is opened here, on the calling thread, so
    /// that a bad path fails the reload; the current configuration is then left untouched. Concurrent calls are
    /// serialised.
    ///
    /// - Throws: ``LogBackendError`` for a file that cannot be opened, a capacity below 1, or after `shutdown`.
    package func apply(_ options: LogOptions) throws {
        try state.withLock { state throws(LogBackendError) in
            guard state.thread != nil else { throw LogBackendError("log backend is shut down") }
            try Self.validate(options)
            let old = state.options
            let newPath = Self.filePath(of: options)
            let sinkChange: WriterSettings.SinkChange
            if newPath == Self.filePath(of: old) && (newPath != nil || options.stderrFD == old.stderrFD) {
                sinkChange = .unchanged
            } else if let newPath {
                sinkChange = .file(fd: try LogSink.openLogFile(newPath), path: newPath)
            } else {
                sinkChange = .stderr
            }
            core.level.store(options.level.code, ordering: .relaxed)
            core.queue.setCapacity(options.queueCapacity)
            let settings = WriterSettings(format: options.format, stderrFD: options.stderrFD, sink: sinkChange)
            if !core.queue.enqueue(.apply(settings)) {
                if case .file(let fd, _) = sinkChange { Syscall.close(fd) }
                throw LogBackendError("log backend is shut down")
            }
            state.options = options
        }
    }

    /// Asks the writer thread to close and reopen the log file (logrotate's `postrotate`, SIGUSR1). Returns at once.
    ///
    /// The reopen happens between the records logged before and after this call. If the file cannot be reopened the
    /// error is reported on stderr and logging continues on the old descriptor. Without a file, nothing happens.
    /// Not async-signal-safe: call it from the daemon's signalfd handling, not from a signal handler.
    package func reopen() {
        _ = core.queue.enqueue(.reopen)
    }

    /// Blocks the calling thread until every record enqueued before the call has been written (and a pending drop
    /// report too), or until `timeout` passes.
    ///
    /// - Returns: true when everything was written; false on timeout (for instance while the sink is stuck).
    @discardableResult
    package func flush(timeout: Duration) -> Bool {
        let done = WakeSemaphore()
        guard core.queue.enqueue(.flush(done)) else {
            // Shut down: everything that will ever be written has been, if the writer finished.
            return core.finished.load(ordering: .acquiring)
        }
        return done.wait(timeout: timeout)
    }

    /// Flushes, reports drops, closes the file and ends the writer thread, waiting at most `timeout`.
    ///
    /// Later log calls are counted as dropped. If the writer does not finish in time (a stuck sink), it is told to
    /// discard what is left and is detached; a writer blocked inside `write(2)` on a blocking descriptor stays there
    /// until the reader wakes up or the process exits. Idempotent.
    ///
    /// - Returns: true when the writer finished within the timeout.
    @discardableResult
    package func shutdown(timeout: Duration) -> Bool {
        guard
            let thread = state.withLock({ state -> SystemThread? in
                defer { state.thread = nil }
                return state.thread
            })
        else {
            return core.finished.load(ordering: .acquiring)
        }
        let done = WakeSemaphore()
        _ = core.queue.enqueue(.stop(done), close: true)
        if done.wait(timeout: timeout) {
            // The writer posts just before returning, so this join is short.
            thread.join()
            return true
        }
        core.abandon.store(true, ordering: .relaxed)
        core.queue.wakeup.post()
        thread.detach()
        return false
    }

    /// Records written to the sink so far (or accepted by journald). Safe from any thread.
    package var recordsWritten: UInt64 {
        core.written.load(ordering: .relaxed)
    }

    /// Records dropped so far because the queue was full (or logged after shutdown). Safe from any thread.
    package var recordsDropped: UInt64 {
        core.dropped.load(ordering: .relaxed)
    }

    // MARK: helpers

    private static func validate(_ options: LogOptions) throws(LogBackendError) {
        guard options.queueCapacity >= 1 else {
            throw LogBackendError("log queue capacity must be at least 1, got \(options.queueCapacity)")
        }
    }

    /// The file the options write to: none for journal, which goes to journald.
    private static func filePath(of options: LogOptions) -> String? {
        options.format == .journal ? nil : options.filePath
    }
}
