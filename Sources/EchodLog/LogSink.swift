import EchodSystem
import Glibc

/// Where the writer thread puts text/json bytes: the stderr descriptor (not owned) or a log file (owned).
/// Confined to the writer thread, except ``openLogFile(_:)`` which `init`/`apply` call to fail early.
final class LogSink {
    /// Current descriptor.
    private(set) var fd: Int32
    /// Path of the log file, nil for stderr.
    private(set) var path: String?
    /// Only a file we opened is ours to close; stderr belongs to the process.
    private var ownsFD: Bool

    /// A sink writing to `stderrFD` (not owned).
    init(stderrFD: Int32) {
        fd = stderrFD
        path = nil
        ownsFD = false
    }

    /// A sink writing to a log file already opened with ``openLogFile(_:)`` (owned).
    init(fileFD: Int32, path: String) {
        fd = fileFD
        self.path = path
        ownsFD = true
    }

    deinit {
        close()
    }

    /// Opens a log file for appending: O_APPEND so that concurrent writers (and logrotate's copytruncate) never
    /// interleave mid-record, mode 0640 (group-readable for log shippers); `Syscall.open` adds O_CLOEXEC so children
    /// do not inherit it.
    static func openLogFile(_ path: String) throws(LogBackendError) -> Int32 {
        do {
            return try Syscall.open(path, O_WRONLY | O_APPEND | O_CREAT, mode: 0o640)
        } catch {
            throw LogBackendError("cannot open log file '\(path)'", error)
        }
    }

    /// Reopens the file at the same path (after logrotate renamed it). On failure nothing changes and the reason is
    /// returned, so logging continues on the old descriptor. A stderr sink has nothing to reopen.
    func reopen() -> String? {
        guard let path else { return nil }
        let newFD: Int32
        do {
            newFD = try LogSink.openLogFile(path)
        } catch {
            return error.description
        }
        close()
        fd = newFD
        ownsFD = true
        return nil
    }

    /// Closes the descriptor if it is ours.
    func close() {
        if ownsFD {
            Syscall.close(fd)
            ownsFD = false
        }
    }

    /// Writes all bytes (``Syscall/writeAll(_:_:shouldAbandon:)``). A blocking descriptor whose reader is stuck
    /// blocks this thread in `write`; only the writer thread waits, never a log call.
    func write(_ bytes: UnsafeRawBufferPointer, shouldAbandon: () -> Bool) -> WriteOutcome {
        Syscall.writeAll(fd, bytes, shouldAbandon: shouldAbandon)
    }
}
