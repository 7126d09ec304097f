import CEchodLinux
import Glibc

/// A Unix-domain socket address (`sockaddr_un`), stored inline: a file path, or a name in Linux's abstract namespace
/// (`sun_path` starting with a NUL byte, the name after it, the length saying where it ends).
package struct UnixSocketAddress: Sendable {
    /// Bytes of a path or abstract name that fit in `sun_path` (108 bytes, less the path's terminating NUL or the
    /// abstract name's leading one).
    package static let maximumNameBytes = MemoryLayout<sockaddr_un>.size - MemoryLayout<sa_family_t>.size - 1

    private var storage = sockaddr_un()
    private var length: socklen_t
    /// The path, or the abstract name without its leading NUL.
    package let name: String
    package let isAbstract: Bool

    /// Fails with `ENAMETOOLONG` when the name does not fit (the configuration's parser says so first, in words)
    /// and with `EINVAL` for an empty name or one with a NUL byte.
    package init(name: String, isAbstract: Bool) throws(IOError) {
        let bytes = Array(name.utf8)
        guard bytes.count <= Self.maximumNameBytes else { throw IOError("sockaddr_un", errno: ENAMETOOLONG) }
        guard !bytes.isEmpty, !bytes.contains(0) else { throw IOError("sockaddr_un", errno: EINVAL) }
        self.name = name
        self.isAbstract = isAbstract
        storage.sun_family = sa_family_t(AF_UNIX)
        let offset = isAbstract ? 1 : 0
        withUnsafeMutableBytes(of: &storage.sun_path) { path in
            for (i, byte) in bytes.enumerated() { path[offset + i] = byte }
        }
        // A path is NUL-terminated (the zeroed byte after it, counted); an abstract name is exactly its bytes.
        length = socklen_t(MemoryLayout<sa_family_t>.size + offset + bytes.count + (isAbstract ? 0 : 1))
    }

    /// `/run/echod/echo.sock` or `@name`.
    package var displayName: String { isAbstract ? "@" + name : name }

    /// Calls `body` with this address as a `sockaddr` for bind/connect.
    package func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        var copy = storage
        return try withUnsafePointer(to: &copy) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }

    /// The local address of a Unix socket (one systemd passed in), or nil when it is not one or is unnamed.
    package static func local(of fd: Int32) -> UnixSocketAddress? {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let pathBytes = Int(length) - MemoryLayout<sa_family_t>.size
        guard rc == 0, Int32(address.sun_family) == AF_UNIX, pathBytes > 0 else { return nil }
        let raw = withUnsafeBytes(of: &address.sun_path) { Array($0.prefix(pathBytes)) }
        if raw[0] == 0 {
            return try? UnixSocketAddress(name: String(decoding: raw.dropFirst(), as: UTF8.self), isAbstract: true)
        }
        return try? UnixSocketAddress(name: String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self), isAbstract: false)
    }
}

extension Socket {
    /// Creates a non-blocking listening Unix stream socket at `address`. For a file path, the socket file is created
    /// with at most `mode`, with no moment at which it is reachable with wider permissions: on Linux, `bind` creates
    /// the file with the mode of the socket's own inode less the umask, so `fchmod` before `bind` decides it. That
    /// was chosen over changing the umask around `bind` (the umask is process-wide: a file another thread creates
    /// meanwhile would get it too) and over binding under a temporary name and renaming (a second file to clean up
    /// after a crash). A umask that removed bits is then undone by `chmod`, which can only widen up to `mode`.
    ///
    /// The caller handles `EADDRINUSE` (a stale file, or a live server: ``connectionRefused(_:)`` tells).
    package static func listen(unix address: UnixSocketAddress, mode: mode_t, backlog: Int32 = 4096) throws(IOError) -> Int32 {
        let type = Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        let fd = try retryingInterrupts("socket") { socket(AF_UNIX, type, 0) }
        do throws(IOError) {
            if !address.isAbstract {
                _ = try retryingInterrupts("fchmod") { fchmod(fd, mode) }
            }
            let rc = address.withSockAddr { bind(fd, $0, $1) }
            if rc != 0 { throw IOError("bind", errno: echod_errno()) }
            if !address.isAbstract {
                _ = try retryingInterrupts("chmod") { chmod(address.name, mode) }
            }
            if Glibc.listen(fd, backlog) != 0 { throw IOError("listen", errno: echod_errno()) }
            return fd
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    /// Creates a non-blocking Unix stream socket and connects it to `address`, as ``connect(to:)`` does for TCP: the
    /// fd and whether the connection completed at once. A Unix connect completes at once or fails; `EAGAIN` (the
    /// listener's backlog is full) is thrown like any other error, since nothing would finish it later.
    package static func connect(unix address: UnixSocketAddress) throws(IOError) -> (fd: Int32, connected: Bool) {
        let type = Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        let fd = try retryingInterrupts("socket") { socket(AF_UNIX, type, 0) }
        let rc = address.withSockAddr { Glibc.connect(fd, $0, $1) }
        if rc == 0 { return (fd, true) }
        let code = echod_errno()
        if code == EINPROGRESS || code == EINTR { return (fd, false) }
        Syscall.close(fd)
        throw IOError("connect", errno: code)
    }

    /// Whether nothing listens at `address`: a connect is refused (`ECONNREFUSED`, a socket file left by a process
    /// that is gone) or finds no file (`ENOENT`). A connect that succeeds, or finds the backlog full (`EAGAIN`),
    /// means a live server;
    /// any other error (`EACCES`...) is reported, since removing a file we cannot even connect to would be a guess.
    package static func connectionRefused(_ address: UnixSocketAddress) throws(IOError) -> Bool {
        do throws(IOError) {
            let attempt = try connect(unix: address)
            Syscall.close(attempt.fd)
            return false
        } catch {
            if error.errno == ECONNREFUSED || error.errno == ENOENT { return true }
            if error.errno == EAGAIN { return false }
            throw error
        }
    }

    /// The peer of an accepted connection, from the address `accept4` filled in: an IP address and port, or, for a
    /// Unix-socket peer, its credentials (`SO_PEERCRED`: one `getsockopt` per connection, never per read). nil for
    /// another family, or when the credentials cannot be read.
    @inline(__always)
    package static func peerAddress(of fd: Int32, accepted storage: UnsafePointer<sockaddr_storage>) -> SocketAddress? {
        if Int32(storage.pointee.ss_family) != AF_UNIX { return SocketAddress(storage) }
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        var pid: Int32 = 0
        guard echod_peer_credentials(fd, &uid, &gid, &pid) == 0 else { return nil }
        return .unixPeer(uid: uid, gid: gid, pid: pid)
    }

    /// The peer of a connected socket, as ``peerAddress(of:accepted:)`` gives it at accept (`getpeername(2)`): for a
    /// connection this process did not accept itself (taken over from the previous instance at a restart). Nil when
    /// the socket is not connected (any more) or is neither IP nor Unix.
    package static func connectedPeer(of fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        return withUnsafePointer(to: &storage) { peerAddress(of: fd, accepted: $0) }
    }
}

extension Syscall {
    /// `lstat(2)`: the status of a path itself, not of what a symbolic link points to.
    package static func linkStatus(path: String) throws(IOError) -> stat {
        var info = stat()
        _ = try retryingInterrupts("lstat") { lstat(path, &info) }
        return info
    }

    /// Whether `info` (from ``linkStatus(path:)``) describes a socket.
    package static func isSocket(_ info: stat) -> Bool {
        info.st_mode & S_IFMT == S_IFSOCK
    }

    /// `unlink(2)`.
    package static func unlink(path: String) throws(IOError) {
        _ = try retryingInterrupts("unlink") { Glibc.unlink(path) }
    }

    /// `lchown(2)`: changes the owner and group of the path itself (never of a symbolic link's target); `nil` leaves
    /// that ID unchanged.
    package static func changeOwner(path: String, uid: uid_t?, gid: gid_t?) throws(IOError) {
        _ = try retryingInterrupts("lchown") { lchown(path, uid ?? uid_t.max, gid ?? gid_t.max) }
    }
}
