import CEchodLinux
import Glibc

/// A failed system call: which call, and the errno it returned.
///
/// Printed as `accept4: Too many open files (errno 24)` so a log line says what failed and why, not `error 24`.
public struct IOError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The C function that failed, e.g. `"accept4"`.
    public var operation: StaticString
    /// The errno value it left.
    public var errno: Int32

    public init(_ operation: StaticString, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno))) (errno \(errno))"
    }

    public static func == (a: IOError, b: IOError) -> Bool {
        a.errno == b.errno && a.operation.description == b.operation.description
    }
}

/// Runs a system call that returns -1 on failure, retrying on EINTR.
///
/// The one place where EINTR is handled: every wrapper in this module goes through it, so no caller ever sees it.
@inline(__always)
func retryingInterrupts<R: BinaryInteger>(_ operation: StaticString, _ body: () -> R) throws(IOError) -> R {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = echod_errno()
        if code == EINTR { continue }
        throw IOError(operation, errno: code)
    }
}

/// The outcome of a non-blocking read or write: EAGAIN is an expected state, not an error, so it is a case here.
public enum IOResult: Equatable, Sendable {
    /// So many bytes were transferred (0 from a read means end of file).
    case processed(Int)
    /// The call would block (EAGAIN/EWOULDBLOCK).
    case wouldBlock
}
