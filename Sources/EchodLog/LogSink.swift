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
    /// interleave mid-record, O_CLOEXEC so children do not inherit it, mode 0640 (group-readable for log shippers).
    static func openLogFile(_ path: String) throws(LogBackendError) -> Int32 {
        var fd: Int32
        repeat {
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        } while fd < 0 && errno == EINTR
        guard fd >= 0 else {
            throw LogBackendError("cannot open log file '\(path)': \(errnoText(errno))")
        }
        return fd
    }

    /// Reopens the file at the same path (after logrotate renamed it). On failure nothing changes and the errno
    /// text is returned, so logging continues on the old descriptor. A stderr sink has nothing to reopen.
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
            // No retry on EINTR: on Linux the descriptor is released even then.
            _ = Glibc.close(fd)
            ownsFD = false
        }
    }

    /// Writes all bytes; see ``writeFully(fd:_:shouldAbandon:)``.
    func write(_ bytes: UnsafeRawBufferPointer, shouldAbandon: () -> Bool) -> WriteOutcome {
        writeFully(fd: fd, bytes, shouldAbandon: shouldAbandon)
    }
}

/// Result of writing a buffer.
enum WriteOutcome: Equatable {
    case written
    /// A write error other than EINTR/EAGAIN, with its errno.
    case failed(Int32)
    /// Gave up waiting for a non-blocking descriptor to become writable because the backend was shut down.
    case abandoned
}

/// Writes the whole buffer to `fd`, on the writer thread:
/// - EINTR: retried; short writes: continued from where they stopped;
/// - EAGAIN on a non-blocking descriptor (a stderr pipe the daemon inherited as O_NONBLOCK): `poll` for POLLOUT in
///   one-second slices, checking `shouldAbandon` between them so that a shutdown can give up on a reader that
///   never comes back.
/// A blocking descriptor whose reader is stuck blocks this thread in `write`; only the writer thread waits, never a
/// log call.
func writeFully(fd: Int32, _ bytes: UnsafeRawBufferPointer, shouldAbandon: () -> Bool) -> WriteOutcome {
    guard var pointer = bytes.baseAddress else { return .written }
    var remaining = bytes.count
    while remaining > 0 {
        let n = Glibc.write(fd, pointer, remaining)
        if n > 0 {
            pointer += n
            remaining -= n
            continue
        }
        if n == 0 { continue }  // not expected for count > 0; try again
        let error = errno
        switch error {
        case EINTR:
            continue
        case EAGAIN, EWOULDBLOCK:
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            while true {
                if shouldAbandon() { return .abandoned }
                let ready = poll(&pfd, 1, 1000)
                if ready > 0 { break }  // writable, or POLLERR/POLLHUP which the next write reports
                if ready < 0 && errno != EINTR { return .failed(errno) }
            }
        default:
            return .failed(error)
        }
    }
    return .written
}

/// `strerror` text with the number, e.g. "No such file or directory (errno 2)".
func errnoText(_ code: Int32) -> String {
    // glibc's strerror is thread-safe for known codes (static strings) and uses a thread-local buffer otherwise.
    guard let text = strerror(code) else { return "errno \(code)" }
    return "\(String(cString: text)) (errno \(code))"
}
