import CEchodLinux
import Glibc

extension Syscall {
    /// `socket(2)` with `SOCK_CLOEXEC` added, for the sockets that are not TCP listeners or clients (``Socket`` makes
    /// those): the AF_UNIX datagram socket of service-manager notifications.
    package static func socket(domain: Int32, type: Int32) throws(IOError) -> Int32 {
        try retryingInterrupts("socket") { Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), 0) }
    }

    /// `setsockopt(2)` with a value of any fixed-size type (an `Int32` flag, a `timeval`).
    package static func setSocketOption<T: BitwiseCopyable>(
        _ fd: Int32, _ level: Int32, _ name: Int32, _ value: T, _ operation: StaticString
    ) throws(IOError) {
        let rc = withUnsafeBytes(of: value) { setsockopt(fd, level, name, $0.baseAddress, socklen_t($0.count)) }
        if rc != 0 {
            throw IOError(operation, errno: echod_errno())
        }
    }

    /// `getsockopt(2)` of an int-valued option.
    package static func socketOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ operation: StaticString) throws(IOError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, level, name, &value, &length) != 0 { throw IOError(operation, errno: echod_errno()) }
        return value
    }

    /// `connect(2)` of a datagram socket: fixes where its datagrams go and, for AF_UNIX, lets `poll` report whether
    /// the receiver's queue has room (an unconnected sender is always "writable"). EINTR retried, which is right only
    /// for datagram sockets: an interrupted stream connect goes on in the background.
    package static func connectDatagram(_ fd: Int32, address: UnsafePointer<sockaddr>, length: socklen_t) throws(IOError) {
        _ = try retryingInterrupts("connect") { Glibc.connect(fd, address, length) }
    }

    /// `getpeername(2)`: the address of a connected socket's peer (for AF_UNIX often unnamed: the family only).
    /// Fails with ENOTCONN on a socket that has no peer (never connected, or reset).
    package static func peerName(_ fd: Int32) throws(IOError) -> sockaddr_storage {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try retryingInterrupts("getpeername") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
            }
        }
        return storage
    }

    /// `sendto(2)` of one datagram, EINTR retried; the number of bytes sent.
    package static func sendTo(
        _ fd: Int32, _ bytes: UnsafeRawBufferPointer, flags: Int32, address: UnsafePointer<sockaddr>, length: socklen_t
    ) throws(IOError) -> Int {
        try retryingInterrupts("sendto") { Glibc.sendto(fd, bytes.baseAddress, bytes.count, flags, address, length) }
    }
}
