import CEchodLinux
import Glibc

/// Socket set-up calls. Only done at start-up, reload or accept time, never per read.
package enum Socket {
    /// Creates a non-blocking listening TCP socket bound to `address`.
    ///
    /// `SO_REUSEADDR` so a restart does not fail on TIME_WAIT; IPv6 sockets are `IPV6_V6ONLY` so that `[::]:P`
    /// and `0.0.0.0:P` can be configured side by side, each meaning exactly what it says.
    package static func listen(on address: SocketAddress, backlog: Int32 = 4096) throws(IOError) -> Int32 {
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        let type = Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        let fd = try retryingInterrupts("socket") { socket(domain, type, 0) }
        do throws(IOError) {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)")
            if address.family == .ipv6 {
                try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "setsockopt(IPV6_V6ONLY)")
            }
            let rc = address.withSockAddr { bind(fd, $0, $1) }
            if rc != 0 { throw IOError("bind", errno: echod_errno()) }
            if Glibc.listen(fd, backlog) != 0 { throw IOError("listen", errno: echod_errno()) }
            return fd
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    /// Creates a non-blocking TCP socket and starts connecting it to `address`. Returns the fd and whether the
    /// connection completed at once (on loopback it often does); otherwise wait for EPOLLOUT and call `connectResult`.
    package static func connect(to address: SocketAddress) throws(IOError) -> (fd: Int32, connected: Bool) {
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        let type = Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        let fd = try retryingInterrupts("socket") { socket(domain, type, 0) }
        let rc = address.withSockAddr { Glibc.connect(fd, $0, $1) }
        if rc == 0 { return (fd, true) }
        let code = echod_errno()
        if code == EINPROGRESS || code == EINTR { return (fd, false) }
        Syscall.close(fd)
        throw IOError("connect", errno: code)
    }

    /// The pending error of a socket (SO_ERROR), e.g. after a non-blocking connect; nil when none.
    package static func pendingError(_ fd: Int32) -> IOError? {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) != 0 { return IOError("getsockopt(SO_ERROR)", errno: echod_errno()) }
        return value == 0 ? nil : IOError("connect", errno: value)
    }

    /// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`; nil when no connection is waiting (EAGAIN).
    @inline(__always)
    package static func accept(_ listener: Int32, peer: UnsafeMutablePointer<sockaddr_storage>) throws(IOError) -> Int32? {
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let flags = Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        while true {
            let fd = echod_accept4(listener, peer, &length, flags)
            if fd >= 0 { return fd }
            let code = echod_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return nil }
            throw IOError("accept4", errno: code)
        }
    }

    /// Disables Nagle's algorithm: an echo must go back at once, not wait for more data to coalesce.
    package static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Local address of a socket (used for sockets passed in by systemd, and for port-0 listeners in tests).
    package static func localAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        return withUnsafePointer(to: &storage) { SocketAddress($0) }
    }

    /// Makes a descriptor non-blocking and close-on-exec (sockets passed in by systemd come without either).
    /// `O_NONBLOCK` belongs to the open file description, shared with systemd's copy: harmless there, since
    /// systemd only polls its copy.
    package static func prepareInherited(_ fd: Int32) {
        let flags = echod_fcntl_getfl(fd)
        if flags >= 0 && flags & O_NONBLOCK == 0 { _ = echod_fcntl_setfl(fd, flags | O_NONBLOCK) }
        _ = ioctl(fd, UInt(FIOCLEX))
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ operation: StaticString) throws(IOError) {
        var v = value
        if setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw IOError(operation, errno: echod_errno())
        }
    }
}
