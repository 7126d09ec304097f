import Glibc
import Synchronization

/// Real sockets for the tests: each owns its descriptor and closes it when released.
final class TestSocket {
    let fd: Int32

    init(domain: Int32, type: __socket_type) {
        fd = socket(domain, Int32(type.rawValue | SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0, "socket: errno \(errno)")
    }

    deinit { close(fd) }

    /// TCP on 127.0.0.1, port chosen by the kernel; `listening: false` leaves it bound but not listening.
    static func tcp(listening: Bool) -> TestSocket {
        let s = TestSocket(domain: AF_INET, type: SOCK_STREAM)
        s.bindLoopback()
        if listening { precondition(listen(s.fd, 8) == 0) }
        return s
    }

    /// UDP on 127.0.0.1, port chosen by the kernel.
    static func udp() -> TestSocket {
        let s = TestSocket(domain: AF_INET, type: SOCK_DGRAM)
        s.bindLoopback()
        return s
    }

    /// A listening AF_UNIX stream socket in the abstract namespace (nothing to clean up on disk).
    static func unixListener() -> TestSocket {
        let s = TestSocket(domain: AF_UNIX, type: SOCK_STREAM)
        s.bindUnix(abstract: uniqueName("listener"))
        precondition(listen(s.fd, 8) == 0)
        return s
    }

    /// An AF_UNIX datagram receiver standing in for systemd's notification socket, with SO_PASSCRED on like PID 1.
    /// `abstract`: in the abstract namespace (NOTIFY_SOCKET=@name), else a file in /tmp (removed on release).
    static func notifyReceiver(abstract: Bool) -> (socket: TestSocket, notifySocket: String, cleanup: () -> Void) {
        let s = TestSocket(domain: AF_UNIX, type: SOCK_DGRAM)
        var on: Int32 = 1
        precondition(setsockopt(s.fd, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size)) == 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        precondition(setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0)
        let name = uniqueName("notify")
        if abstract {
            s.bindUnix(abstract: name)
            return (s, "@" + name, {})
        }
        let path = "/tmp/\(name).sock"
        s.bindUnix(path: path)
        return (s, path, { _ = unlink(path) })
    }

    /// Receives one datagram (waits up to 5 s): its text and the sender's pid from SCM_CREDENTIALS.
    func receive() -> (text: String, senderPID: pid_t?)? {
        var buffer = [UInt8](repeating: 0, count: 4096)
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
        let pid: pid_t? = (level == SOL_SOCKET && type == scmCredentials)
            ? control.withUnsafeBytes { $0.load(fromByteOffset: headerSize, as: pid_t.self) } : nil
        return (String(decoding: buffer[..<received], as: UTF8.self), pid)
    }

    private func bindLoopback() {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(result == 0, "bind: errno \(errno)")
    }

    private func bindUnix(path: String) { bindUnix(pathBytes: Array(path.utf8) + [0]) }
    private func bindUnix(abstract name: String) { bindUnix(pathBytes: [0] + Array(name.utf8)) }

    private func bindUnix(pathBytes: [UInt8]) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + pathBytes.count)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        precondition(result == 0, "bind: errno \(errno)")
    }
}

/// SCM_CREDENTIALS from <bits/socket.h>: Glibc's module is built without _GNU_SOURCE, which hides it.
private let scmCredentials: Int32 = 2

private let counter = Atomic<Int>(0)

/// A name no other test (or concurrent test run) uses.
func uniqueName(_ what: String) -> String {
    "echod-test-\(getpid())-\(what)-\(counter.add(1, ordering: .relaxed).newValue)"
}
