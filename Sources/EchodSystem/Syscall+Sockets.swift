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

    /// `sendto(2)` of one datagram, EINTR retried; the number of bytes sent.
    package static func sendTo(
        _ fd: Int32, _ bytes: UnsafeRawBufferPointer, flags: Int32, address: UnsafePointer<sockaddr>, length: socklen_t
    ) throws(IOError) -> Int {
        try retryingInterrupts("sendto") { Glibc.sendto(fd, bytes.baseAddress, bytes.count, flags, address, length) }
    }
}
