import Glibc
import Synchronization

/// Real sockets for the tests: each owns its descriptor and closes it when released.
package final class TestSocket {
    package let fd: Int32

    package init(domain: Int32, type: __socket_type) {
        fd = socket(domain, Int32(type.rawValue | SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0, "socket: errno \(errno)")
    }

    deinit { close(fd) }

    /// TCP on 127.0.0.1, port chosen by the kernel; `listening: false` leaves it bound but not listening.
    package static func tcp(listening: Bool) -> TestSocket {
        let s = TestSocket(domain: AF_INET, type: SOCK_STREAM)
        s.bindLoopback()
        if listening { precondition(listen(s.fd, 8) == 0, "listen: errno \(errno)") }
        return s
    }

    /// UDP on 127.0.0.1, port chosen by the kernel.
    package static func udp() -> TestSocket {
        let s = TestSocket(domain: AF_INET, type: SOCK_DGRAM)
        s.bindLoopback()
        return s
    }

    /// A listening AF_UNIX stream socket in the abstract namespace (nothing to clean up on disk).
    package static func unixListener() -> TestSocket {
        let s = TestSocket(domain: AF_UNIX, type: SOCK_STREAM)
        s.bindUnix(abstract: uniqueName("listener"))
        precondition(listen(s.fd, 8) == 0)
        return s
    }

    /// An AF_UNIX datagram receiver standing in for systemd's notification socket, with SO_PASSCRED on like PID 1.
    /// `abstract`: in the abstract namespace (NOTIFY_SOCKET=@name), else a file in /tmp (removed by `cleanup`).
    package static func notifyReceiver(abstract: Bool) -> (socket: TestSocket, notifySocket: String, cleanup: () -> Void) {
        let name = uniqueName("notify")
        let address = abstract ? "@" + name : "/tmp/\(name).sock"
        let s = try! unixDatagram(boundTo: address)
        var on: Int32 = 1
        precondition(setsockopt(s.fd, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size)) == 0)
        return (s, address, { if !abstract { _ = unlink(address) } })
    }

    /// An AF_UNIX datagram socket bound at `address`: a path (a file the caller removes), or `@name` in the abstract
    /// namespace. A receive waits up to `receiveTimeout` seconds.
    package static func unixDatagram(boundTo address: String, receiveTimeout: Int = 5) throws -> TestSocket {
        let s = TestSocket(domain: AF_UNIX, type: SOCK_DGRAM)
        setReceiveTimeout(s.fd, seconds: receiveTimeout)
        let pathBytes = address.hasPrefix("@") ? [0] + Array(address.utf8.dropFirst()) : Array(address.utf8) + [0]
        if let failure = s.bindUnix(pathBytes: pathBytes) { throw TestFailure("bind \(address): \(failure)") }
        return s
    }

    /// The port the kernel chose (IPv4 sockets).
    package var port: UInt16 { localPort(fd) }

    /// Receives one datagram (waits up to the receive timeout): its text and the sender's pid from SCM_CREDENTIALS.
    package func receive() -> (text: String, senderPID: pid_t?)? {
        receiveDatagram().map { (String(decoding: $0.bytes, as: UTF8.self), $0.senderPID) }
    }

    /// Receives one datagram (waits up to the receive timeout): its bytes and, with SO_PASSCRED on, the sender's pid.
    package func receiveDatagram() -> (bytes: [UInt8], senderPID: pid_t?)? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        // cmsghdr (len: size_t, level: Int32, type: Int32) followed by struct ucred (pid, uid, gid); the CMSG_*
        // macros are not imported into Swift, the layout is fixed on Linux.
        var control = [UInt8](repeating: 0, count: 64)
        let received: Int = buffer.withUnsafeMutableBytes { data in
            control.withUnsafeMutableBytes { control in
                var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
                return withUnsafeMutablePointer(to: &iov) { iov in
                    var message = msghdr()
                    message.msg_iov = iov
                    message.msg_iovlen = 1
                    message.msg_control = control.baseAddress
                    message.msg_controllen = control.count
                    let n = recvmsg(fd, &message, 0)
                    return n < 0 ? -1 : n
                }
            }
        }
        guard received >= 0 else { return nil }
        let headerSize = MemoryLayout<Int>.size + 2 * MemoryLayout<Int32>.size
        let level = control.withUnsafeBytes { $0.load(fromByteOffset: MemoryLayout<Int>.size, as: Int32.self) }
        let type = control.withUnsafeBytes { $0.load(fromByteOffset: MemoryLayout<Int>.size + 4, as: Int32.self) }
        let pid: pid_t? =
            (level == SOL_SOCKET && type == scmCredentials)
            ? control.withUnsafeBytes { $0.load(fromByteOffset: headerSize, as: pid_t.self) } : nil
        return (Array(buffer[..<received]), pid)
    }

    private func bindLoopback() { bindToLoopback(fd) }

    private func bindUnix(abstract name: String) {
        if let failure = bindUnix(pathBytes: [0] + Array(name.utf8)) { preconditionFailure("bind @\(name): \(failure)") }
    }

    /// Binds to a `sun_path` given as bytes (a leading 0 for the abstract namespace); the error text, or nil.
    private func bindUnix(pathBytes: [UInt8]) -> String? {
        var address = sockaddr_un()
        guard pathBytes.count <= MemoryLayout.size(ofValue: address.sun_path) else { return "path too long" }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + pathBytes.count)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        return result == 0 ? nil : String(cString: strerror(errno))
    }
}

/// SCM_CREDENTIALS from <bits/socket.h>: Glibc's module is built without _GNU_SOURCE, which hides it.
private let scmCredentials: Int32 = 2

private let counter = Atomic<Int>(0)

/// A name no other test (or concurrent test run) uses.
package func uniqueName(_ what: String) -> String {
    "echod-test-\(getpid())-\(what)-\(counter.add(1, ordering: .relaxed).newValue)"
}

/// 127.0.0.1:`port`.
package func loopbackAddress(port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    return address
}

/// Binds an IPv4 socket to 127.0.0.1 on a port the kernel chooses.
private func bindToLoopback(_ fd: Int32) {
    var address = loopbackAddress(port: 0)
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    precondition(result == 0, "bind: errno \(errno)")
}

/// A TCP socket listening on 127.0.0.1 on a port the kernel chooses; the caller owns it.
package func listenOnLoopback() -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    precondition(fd >= 0, "socket: errno \(errno)")
    bindToLoopback(fd)
    precondition(listen(fd, 128) == 0, "listen: errno \(errno)")
    return fd
}

/// The local port of an IPv4 socket.
package func localPort(_ fd: Int32) -> UInt16 {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let result = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    precondition(result == 0, "getsockname: errno \(errno)")
    return UInt16(bigEndian: address.sin_port)
}

/// A loopback port nothing listens on: bound by the kernel's choice, then released.
package func unusedLoopbackPort() -> UInt16 {
    TestSocket.tcp(listening: false).port
}

/// SO_RCVTIMEO: a blocking receive fails with EAGAIN after `seconds`.
package func setReceiveTimeout(_ fd: Int32, seconds: Int) {
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    precondition(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0)
}

/// Receives one datagram without waiting, with the descriptors of its SCM_RIGHTS control message. The CMSG_* macros
/// are not imported into Swift; on Linux a `cmsghdr` is `size_t len, int level, int type`, then the data.
package func receiveWithRights(_ fd: Int32) -> (text: String, descriptors: [Int32])? {
    var buffer = [UInt8](repeating: 0, count: 4096)
    var control = [UInt8](repeating: 0, count: 256)
    let (received, controlLength): (Int, Int) = buffer.withUnsafeMutableBytes { data in
        control.withUnsafeMutableBytes { control in
            var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
            return withUnsafeMutablePointer(to: &iov) { iov in
                var message = msghdr()
                message.msg_iov = iov
                message.msg_iovlen = 1
                message.msg_control = control.baseAddress
                message.msg_controllen = control.count
                let n = recvmsg(fd, &message, Int32(MSG_DONTWAIT) | Int32(MSG_CMSG_CLOEXEC))
                return (n, Int(message.msg_controllen))
            }
        }
    }
    guard received >= 0 else { return nil }
    let text = String(decoding: buffer[..<received], as: UTF8.self)
    let header = MemoryLayout<Int>.size + 2 * MemoryLayout<Int32>.size
    guard controlLength >= header else { return (text, []) }
    let (length, level, type) = control.withUnsafeBytes {
        (
            $0.load(as: Int.self), $0.load(fromByteOffset: MemoryLayout<Int>.size, as: Int32.self),
            $0.load(fromByteOffset: MemoryLayout<Int>.size + 4, as: Int32.self)
        )
    }
    guard level == SOL_SOCKET, type == Int32(SCM_RIGHTS) else { return (text, []) }
    let descriptors = (0..<(length - header) / 4).map { i in
        control.withUnsafeBytes { $0.load(fromByteOffset: header + i * 4, as: Int32.self) }
    }
    return (text, descriptors)
}

/// A connected pair of Unix stream sockets (close-on-exec); nil when the kernel refuses one.
package func socketPair() -> [Int32]? {
    var pair: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
        return nil
    }
    return pair
}
