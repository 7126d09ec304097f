import CEchodLinux
import Glibc

extension Syscall {
    /// `send(2)` on a non-blocking socket with `MSG_NOSIGNAL`: a peer's reset comes back as EPIPE/ECONNRESET instead
    /// of a SIGPIPE that would end the process. For clients that run inside processes they do not own (the probe
    /// runs in the test runner too) and so cannot ignore SIGPIPE process-wide the way the daemon and `echod bench` do.
    /// The corresponding C function is `send`.
    package static func send(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(IOError) -> IOResult {
        while true {
            let n = Glibc.send(fd, buffer, count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            if n >= 0 { return .processed(n) }
            let code = echod_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw IOError("send", errno: code)
        }
    }
}
