import CEchodLinux
import Glibc

/// A failed system call: which call, and the errno it returned.
///
/// Printed as `accept4: Too many open files (errno 24)` so a log line says what failed and why, not `error 24`.
package struct IOError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The C function that failed, e.g. `"accept4"`.
    package var operation: StaticString
    /// The errno value it left.
    package var errno: Int32

    package init(_ operation: StaticString, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    package var description: String {
        "\(operation): \(reason)"
    }

    /// The errno as text with its number, `Too many open files (errno 24)`, for messages that name the operation
    /// their own way ("cannot open log file '/x': ...").
    package var reason: String {
        "\(message) (errno \(errno))"
    }

    /// The errno as the C library says it, `Connection refused`, for one-line messages meant for people at a
    /// terminal (`echod probe`).
    package var message: String {
        // glibc's strerror is thread-safe for known codes (static strings) and uses a thread-local buffer otherwise.
        guard let text = strerror(errno) else { return "errno \(errno)" }
        return String(cString: text)
    }

    package static func == (a: IOError, b: IOError) -> Bool {
        a.errno == b.errno && a.operation.description == b.operation.description
    }
}

/// Runs a system call that returns -1 on failure, retrying on EINTR.
///
/// The one place where EINTR is handled: the wrappers in ``Syscall`` and ``Socket`` go through it (or retry the same
/// way where EAGAIN needs a case of its own), so no caller ever sees it. Other modules use it for the rare call that
/// has no wrapper of its own yet.
@inline(__always)
package func retryingInterrupts<R: BinaryInteger>(_ operation: StaticString, _ body: () -> R) throws(IOError) -> R {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = echod_errno()
        if code == EINTR { continue }
        throw IOError(operation, errno: code)
    }
}

/// The outcome of writing a whole buffer on a cold path (``Syscall/writeAll(_:_:shouldAbandon:)``).
package enum WriteOutcome: Equatable, Sendable {
    case written
    /// A write error other than EINTR/EAGAIN.
    case failed(IOError)
    /// Gave up waiting for a non-blocking descriptor to become writable because the caller asked to.
    case abandoned
}

/// The outcome of a non-blocking read or write: EAGAIN is an expected state, not an error, so it is a case here.
package enum IOResult: Equatable, Sendable {
    /// So many bytes were transferred (0 from a read means end of file).
    case processed(Int)
    /// The call would block (EAGAIN/EWOULDBLOCK).
    case wouldBlock
}
