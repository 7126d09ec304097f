import Glibc

extension Syscall {
    /// `stat(2)` of a path (following symbolic links), EINTR retried.
    package static func fileStatus(path: String) throws(IOError) -> stat {
        var info = stat()
        _ = try retryingInterrupts("stat") { stat(path, &info) }
        return info
    }
}
