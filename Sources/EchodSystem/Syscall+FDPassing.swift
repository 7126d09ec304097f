import CEchodLinux
import Glibc

extension Syscall {
    /// `sendmsg(2)` of one buffer, passing one descriptor along as `SCM_RIGHTS` when `rights` is given: the receiver
    /// gets its own descriptor for the same open file (the sender's stays open). EINTR retried; EAGAIN/EWOULDBLOCK is
    /// `.wouldBlock` (a non-blocking socket, or `MSG_DONTWAIT` in `flags`, and a full queue). `address` nil sends on a
    /// connected socket. A datagram goes whole or not at all, so `.processed` carries `bytes.count` for one. The
    /// corresponding C function is `sendmsg`.
    package static func sendMessage(
        _ fd: Int32, _ bytes: UnsafeRawBufferPointer, passing rights: Int32?, flags: Int32,
        address: UnsafePointer<sockaddr>?, length: socklen_t
    ) throws(IOError) -> IOResult {
        while true {
            let n = echod_send_with_rights(fd, bytes.baseAddress, bytes.count, rights ?? -1, flags, address, length)
            if n >= 0 { return .processed(n) }
            let code = echod_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw IOError("sendmsg", errno: code)
        }
    }
}
