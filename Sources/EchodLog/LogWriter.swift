import EchodSystem
import Glibc
import Logging
import Synchronization

/// What the writer thread switches to on `apply`.
struct WriterSettings: Sendable {
    enum SinkChange: Sendable {
        /// Keep the current sink (same file path, or still stderr on the same descriptor).
        case unchanged
        /// Write to the given stderr descriptor.
        case stderr
        /// Write to this newly opened file; the writer takes ownership of the descriptor.
        case file(fd: Int32, path: String)
    }

    var format: LogSinkFormat
    var stderrFD: Int32
    var sink: SinkChange
}

/// The writer thread: drains the queue in batches, formats, writes, reports drops.
///
/// All its mutable state is confined to that thread (it is handed over once at start, hence `@unchecked Sendable`).
final class LogWriter: @unchecked Sendable {
    private let core: LogCore
    private var format: LogSinkFormat
    private var stderrFD: Int32
    private var sink: LogSink
    /// Formatted text/json bytes not yet written; written in chunks of about `chunkSize` (one `write` for many
    /// records is the point of batching).
    private var out: [UInt8] = []
    /// How many caller records (not internal reports) are in `out`, for the counters.
    private var recordsInOut = 0
    private let chunkSize = 64 * 1024
    /// Drop total at the last report.
    private var reportedDrops: UInt64 = 0
    /// Drops are reported at most this often (`log queue full: dropped N records since last report`).
    private var dropReports: RateLimiter
    /// See ``linger()``.
    private let coalescing: Duration
    private let initialCapacity: Int
    /// Sink write errors are reported on stderr at most this often (a full disk would otherwise fail every batch).
    private var sinkErrorLimiter: RateLimiter

    init(
        core: LogCore, format: LogSinkFormat, stderrFD: Int32, sink: LogSink, reportInterval: Duration,
        coalescing: Duration = LogWriter.defaultCoalescing, initialCapacity: Int
    ) {
        self.core = core
        self.coalescing = coalescing
        self.initialCapacity = initialCapacity
        self.format = format
        self.stderrFD = stderrFD
        self.sink = sink
        self.dropReports = RateLimiter(interval: reportInterval)
        self.sinkErrorLimiter = RateLimiter(interval: reportInterval)
        out.reserveCapacity(chunkSize + 4096)
    }

    /// How long an idle writer, once woken, waits for more records (see ``linger()``).
    static let defaultCoalescing: Duration = .milliseconds(1)

    // MARK: thread

    /// Starts the writer thread with `signals` blocked (the mask is inherited at creation). A host that takes signals
    /// through a signalfd (the daemon: `Daemon.handledSignals`) needs them blocked in every thread: the kernel hands
    /// a process-directed signal to any thread that has it unblocked, with its default action (terminate for
    /// SIGHUP/SIGUSR1; for SIGABRT, the Swift runtime's backtracer, which returns and lets the process run on).
    ///
    /// SIGPIPE is added whatever the host does with it: the writer writes to descriptors it does not own (a stderr
    /// pipe whose reader may be gone), and such a write must fail with EPIPE, not end the host process.
    /// Never every signal: that also blocks the ones the Swift runtime's crash handler uses to suspend threads, and
    /// then a crashing echod hangs instead of dying and being restarted.
    static func start(_ writer: LogWriter, blocking signals: [Int32]) throws(LogBackendError) -> SystemThread {
        var all = sigset_t()
        var previous = sigset_t()
        sigemptyset(&all)
        for s in signals + [SIGPIPE] { sigaddset(&all, s) }
        pthread_sigmask(SIG_BLOCK, &all, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }

        do {
            return try SystemThread(name: "echod-log") { writer.run() }
        } catch {
            throw LogBackendError("cannot start the log writer thread", error)
        }
    }

    private func run() {
        // The other half of the queue's double buffer: reserved like the queue's, swapped in on every take.
        var batch: [QueueItem] = []
        batch.reserveCapacity(LogQueue.reservation(for: initialCapacity))
        while true {
            if core.abandon.load(ordering: .relaxed) {
                finish()
                return
            }
            guard core.queue.takeAll(into: &batch) else {
                // Idle. With unreported drops, wake up in time for the periodic report; otherwise sleep until a
                // record arrives (no idle wake-ups: drops only happen while there is work, which wakes us anyway).
                reportDropsIfDue()
                flushOutput()
                var woken = true
                if core.dropped.load(ordering: .relaxed) > reportedDrops {
                    let soonest = Syscall.monotonicNanoseconds() &+ 1_000_000
                    woken = core.queue.wakeup.wait(until: max(dropReports.nextAdmission, soonest))
                } else {
                    core.queue.wakeup.wait()
                }
                if woken { linger() }
                continue
            }
            for index in batch.indices {
                if core.abandon.load(ordering: .relaxed) {
                    // A shutdown gave up waiting for us: stop writing; the process is on its way out.
                    batch.removeAll()
                    finish()
                    return
                }
                switch batch[index] {
                case .record(let record):
                    emit(record, counted: true)
                case .read(let record):
                    emit(read: record)
                case .control(let control):
                    if handle(control) {
                        batch.removeAll()
                        return
                    }
                }
            }
            // Releases the records (and their strings) here, on this thread, and keeps the capacity for the swap.
            batch.removeAll(keepingCapacity: true)
            flushOutput()
            reportDropsIfDue()
        }
    }

    /// After being woken from idle, lets records gather for ``coalescing`` before taking them.
    ///
    /// Without it, a trickle of records (one per read with `log.reads`, at tens of thousands per second) costs a
    /// wake-up, two context switches and a `write(2)` per record: on a daemon pinned to one core the writer, once
    /// woken, preempts the event loop for every single record. With it, that cost is paid once per interval for the
    /// whole batch. Records wait at most this much longer; a busy writer (records already queued) never lingers.
    /// A producer that fills the queue to half its capacity, or a control request (flush, reopen, apply, stop),
    /// ends the wait early or prevents it (see `LogQueue`).
    private func linger() {
        guard coalescing > .zero, !core.queue.isControlPending else { return }
        _ = core.queue.wakeup.wait(timeout: coalescing)
    }

    // MARK: records

    /// Formats one record into the output buffer (text/json) or sends it (journal).
    private func emit(_ record: LogRecord, counted: Bool) {
        switch format {
        case .text, .json:
            if format == .text {
                LogFormatter.appendText(record, to: &out)
            } else {
                LogFormatter.appendJSON(record, to: &out)
            }
            if counted { recordsInOut += 1 }
            if out.count >= chunkSize { flushOutput() }
        case .journal:
            let result = JournalFields.send(JournalFields.fields(for: record))
            if result >= 0 {
                if counted { core.written.add(1, ordering: .relaxed) }
            } else {
                if counted { core.failed.add(1, ordering: .relaxed) }
                reportSinkError("journal send failed: \(IOError("sd_journal_sendv", errno: -result).reason)")
            }
        }
    }

    /// Formats one read record (``ReadLogger``) with the dedicated formatter, or sends it (journal).
    private func emit(read record: ReadRecord) {
        // The label is kept alive by `core.readLabels`; no retain needed to use it here.
        record.label._withUnsafeGuaranteedRef { label in
            switch format {
            case .text:
                ReadFormatter.appendText(record, label: label, to: &out)
            case .json:
                ReadFormatter.appendJSON(record, label: label, to: &out)
            case .journal:
                let result = ReadFormatter.sendJournal(record, label: label)
                if result >= 0 {
                    core.written.add(1, ordering: .relaxed)
                } else {
                    core.failed.add(1, ordering: .relaxed)
                    reportSinkError("journal send failed: \(IOError("sd_journal_sendv", errno: -result).reason)")
                }
                return
            }
            recordsInOut += 1
            if out.count >= chunkSize { flushOutput() }
        }
    }

    /// Writes the output buffer to the sink and settles the counters.
    private func flushOutput() {
        guard !out.isEmpty else { return }
        let outcome = out.withUnsafeBytes { bytes in
            sink.write(bytes, shouldAbandon: { core.abandon.load(ordering: .relaxed) })
        }
        let records = UInt64(recordsInOut)
        recordsInOut = 0
        if out.capacity > 4 * chunkSize {
            // One huge record should not pin a huge buffer for the life of the process.
            out = []
            out.reserveCapacity(chunkSize + 4096)
        } else {
            out.removeAll(keepingCapacity: true)
        }
        switch outcome {
        case .written:
            core.written.add(records, ordering: .relaxed)
        case .failed(let error):
            core.failed.add(records, ordering: .relaxed)
            if let path = sink.path {
                reportSinkError("log file write failed: '\(path)': \(error.reason); \(records) records lost")
            }
        // A failing stderr sink has nowhere to report to; the failed counter shows it.
        case .abandoned:
            core.failed.add(records, ordering: .relaxed)
        }
    }

    // MARK: drops and errors

    /// Reports drops when there are new ones and the last report is at least an interval old.
    private func reportDropsIfDue() {
        guard core.dropped.load(ordering: .relaxed) > reportedDrops,
            dropReports.admit(now: Syscall.monotonicNanoseconds()) != nil
        else { return }
        reportDrops()
    }

    /// Writes `log queue full: dropped N records since last report` if anything was dropped since the last one.
    private func reportDrops() {
        let total = core.dropped.load(ordering: .relaxed)
        guard total > reportedDrops else { return }
        let count = total - reportedDrops
        reportedDrops = total
        emit(
            LogRecord.internalRecord(level: .warning, message: "log queue full: dropped \(count) records since last report"),
            counted: false)
    }

    /// Reports a problem with the sink itself on stderr (the text/json format, or journald in journal mode), rate
    /// limited; never through the sink that is failing.
    private func reportSinkError(_ message: String) {
        guard let suppressed = sinkErrorLimiter.admit(now: Syscall.monotonicNanoseconds()) else { return }
        let suffix = suppressed > 0 ? " (\(suppressed) similar errors suppressed)" : ""
        reportOnStderr(LogRecord.internalRecord(level: .error, message: message + suffix))
    }

    private func reportOnStderr(_ record: LogRecord) {
        if format == .journal {
            _ = JournalFields.send(JournalFields.fields(for: record))
            return
        }
        var line: [UInt8] = []
        if format == .json {
            LogFormatter.appendJSON(record, to: &line)
        } else {
            LogFormatter.appendText(record, to: &line)
        }
        _ = line.withUnsafeBytes { Syscall.writeAll(stderrFD, $0, shouldAbandon: { core.abandon.load(ordering: .relaxed) }) }
    }

    // MARK: control

    /// Handles a control item; true when the thread must end.
    private func handle(_ control: WriterControl) -> Bool {
        switch control {
        case .reopen:
            flushOutput()
            if let error = sink.reopen() {
                reportOnStderr(
                    LogRecord.internalRecord(level: .error, message: "\(error); logging continues to the old file"))
            }
            return false
        case .apply(let settings):
            flushOutput()
            format = settings.format
            stderrFD = settings.stderrFD
            switch settings.sink {
            case .unchanged:
                break
            case .stderr:
                sink.close()
                sink = LogSink(stderrFD: settings.stderrFD)
            case .file(let fd, let path):
                sink.close()
                sink = LogSink(fileFD: fd, path: path)
            }
            return false
        case .flush(let done):
            flushOutput()
            reportDrops()
            flushOutput()
            done.post()
            return false
        case .stop(let done):
            flushOutput()
            reportDrops()
            flushOutput()
            finish()
            done.post()
            return true
        }
    }

    private func finish() {
        if core.abandon.load(ordering: .relaxed) {
            core.failed.add(UInt64(recordsInOut), ordering: .relaxed)
            recordsInOut = 0
            out.removeAll()
        }
        sink.close()
        core.finished.store(true, ordering: .releasing)
    }
}
