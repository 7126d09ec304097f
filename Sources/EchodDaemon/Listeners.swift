import EchodConfig
import EchodEcho
import EchodEventLoop
import EchodSystem
import EchodSystemd
import EchodText
import Glibc

/// A listening socket echod serves, whether it bound it itself or systemd passed it in.
struct Listener: Sendable {
    enum Role: String, Sendable { case echo, admin }
    let fd: Int32
    let address: SocketAddress?
    let role: Role
    /// Passed in by systemd: never re-configured, and closing our copy leaves systemd's open.
    let passed: Bool
    /// The configured address this socket was bound for (nil for passed sockets), to diff on reload.
    let configured: ListenTarget?
    /// For a Unix socket (bound or passed): its path or abstract name, for the logs.
    var unixName: String? = nil
    /// The socket file echod created, removed when the listener is closed (never one systemd passed).
    var ownedFile: OwnedSocketFile? = nil
    /// For a socket systemd passed: its `FileDescriptorName=`, which a `listen` entry's `name` may match.
    var passedName: String? = nil
    /// How its connections are served (its `listen` entry's options), and that policy's index in the loops' tables
    /// (``PolicyRegistry``); set once the listener is known, before any loop accepts on it.
    var policy: ListenerPolicy = .plain(label: "")
    var policyIndex: UInt16 = 0
    /// The options that differ from a plain echo, for the start-up line (`proxy_protocol v2, tag banner`).
    var optionsNote: String = ""
    /// In systemd's fd store under this identity (its inode; `restart.keep_connections`): closing it takes it out,
    /// unless echod is handing over to the next instance.
    var keptIdentity: UInt64? = nil

    var label: String {
        let place = unixName.map { "unix:" + $0 } ?? address?.description ?? "fd \(fd)"
        return passed ? "\(place) (from systemd)" : place
    }

    /// The label, with the options that differ from a plain echo.
    var summary: String {
        optionsNote.isEmpty ? label : "\(label) (\(optionsNote))"
    }
}

/// A socket file echod created by binding, identified by device and inode, so that closing removes exactly that file
/// and never one another process has put at the same path since.
struct OwnedSocketFile: Sendable {
    let path: String
    let device: UInt64
    let inode: UInt64
}

struct ListenerError: Error, CustomStringConvertible {
    var description: String
}

/// How echod makes the socket files of `unix:/PATH` listeners: `unix.mode`, and `unix.owner`/`unix.group` resolved
/// to IDs (nil: unchanged).
struct UnixFileOptions: Sendable, Equatable {
    var mode: UInt32 = 0o660
    var uid: uid_t?
    var gid: gid_t?
}

enum Listeners {
    /// A configured address left out because this host has no IPv6 (see ``bind(_:)``).
    struct Skipped {
        var address: ListenAddress
        var error: IOError
    }

    /// What binding a list of addresses came to.
    struct Bound {
        var bound: [Listener] = []
        var skipped: [Skipped] = []
        /// Socket files removed as stale (nothing answered on them) before binding, for an info line each.
        var removedStale: [String] = []
        /// The listeners from the fd store (``bind(_:unix:reusing:)``) that no address used.
        var unusedKept: [(fd: Int32, identity: UInt64)] = []
    }

    /// Binds a listening socket for each configured address; all or nothing, except for IPv6 on a host without it.
    ///
    /// An IPv6 address is skipped, not an error, when the host has no IPv6: the kernel has none (`socket` fails with
    /// EAFNOSUPPORT: booted with `ipv6.disable=1`, or a `RestrictAddressFamilies=` without AF_INET6), or IPv6 is
    /// switched off (`net.ipv6.conf.*.disable_ipv6=1`: then even the loopback `::1` cannot be bound,
    /// EADDRNOTAVAIL). The default configuration lists `[::1]:8888` beside `127.0.0.1:8888` so that `localhost`
    /// works whichever address a client resolves; on such a host no client can come over IPv6 either, and refusing
    /// to start would make the default configuration (and the Debian package's start on install) fail there. Any
    /// other failure is an error, and so is an address that is merely absent (`[2001:db8::1]`: maybe not up yet).
    /// The caller decides whether what is left is enough (none at all is not).
    ///
    /// `kept`: listening sockets a previous instance left in systemd's fd store (`restart.keep_connections`). An IP
    /// address one of them is bound to is served by it instead of a new socket, so that no client was refused during
    /// the restart; the rest are returned in `unusedKept`.
    static func bind(
        _ targets: [ListenTarget], unix options: UnixFileOptions, reusing kept: [(fd: Int32, identity: UInt64)] = []
    ) throws(ListenerError) -> Bound {
        var result = Bound()
        result.unusedKept = kept
        for target in targets {
            do throws(BindError) {
                switch target {
                case .ip(let address):
                    if let socketAddress = SocketAddress(host: address.host, port: address.port),
                        let i = result.unusedKept.firstIndex(where: { Socket.localAddress($0.fd) == socketAddress })
                    {
                        let reused = result.unusedKept.remove(at: i)
                        Socket.prepareInherited(reused.fd)
                        var listener = Listener(fd: reused.fd, address: socketAddress, role: .echo, passed: false, configured: .ip(address))
                        listener.keptIdentity = reused.identity
                        result.bound.append(listener)
                        continue
                    }
                    result.bound.append(try bind(address))
                case .unix(let path):
                    let (listener, removedStale) = try bind(path, options: options)
                    result.bound.append(listener)
                    if removedStale { result.removedStale.append(path.path) }
                }
            } catch {
                switch error {
                case .noIPv6(let cause):
                    if case .ip(let address) = target { result.skipped.append(Skipped(address: address, error: cause)) }
                case .failed(let failure):
                    for l in result.bound { _ = close(l) }
                    throw failure
                }
            }
        }
        return result
    }

    /// Refuses a configuration of which no address could be bound (every one was IPv6 on a host without it).
    static func requireSome(_ bound: [Listener], skipped: [Skipped]) throws(ListenerError) {
        guard bound.isEmpty, !skipped.isEmpty else { return }
        let reasons = skipped.map { "\($0.address): \($0.error)" }.joined(separator: "; ")
        throw ListenerError(description: "listen: this host has no IPv6, and no other address is configured (\(reasons))")
    }

    private enum BindError: Error {
        case noIPv6(IOError)
        case failed(ListenerError)
    }

    private static func bind(_ address: ListenAddress) throws(BindError) -> Listener {
        guard let socketAddress = SocketAddress(host: address.host, port: address.port) else {
            throw .failed(ListenerError(description: "listen \(address): not a numeric address"))
        }
        do throws(IOError) {
            let fd = try Socket.listen(on: socketAddress)
            return Listener(fd: fd, address: socketAddress, role: .echo, passed: false, configured: .ip(address))
        } catch {
            let noIPv6 =
                address.family == .ipv6
                && (error.errno == EAFNOSUPPORT || (error.errno == EADDRNOTAVAIL && address.host == "::1"))
            throw noIPv6 ? .noIPv6(error) : .failed(ListenerError(description: "listen \(address): \(error)"))
        }
    }

    /// Binds a Unix socket. A path already in use is handled safely: a socket file on which a connect is refused
    /// is what a crashed or killed run leaves behind, and is removed and bound again (reported in `removedStale`); a
    /// socket on which something answers belongs to a live process, and anything that is not a socket is not ours:
    /// both are errors, and neither is touched. Abstract names leave nothing behind, so in use means in use.
    private static func bind(_ path: UnixPath, options: UnixFileOptions) throws(BindError) -> (Listener, removedStale: Bool) {
        func fail(_ reason: String) -> BindError { .failed(ListenerError(description: "listen \(path): \(reason)")) }
        let address: UnixSocketAddress
        do throws(IOError) {
            address = try UnixSocketAddress(name: path.path, isAbstract: path.isAbstract)
        } catch {
            throw fail("\(error)")
        }
        var removedStale = false
        var checked = false
        var fd: Int32 = -1
        while fd < 0 {
            do throws(IOError) {
                fd = try Socket.listen(unix: address, mode: mode_t(options.mode))
            } catch {
                switch error.errno {
                case EADDRINUSE where path.isAbstract:
                    throw fail("address in use: another process serves \(path.displayName)")
                case EADDRINUSE where !checked:
                    removedStale = try removeIfStale(path, address, fail)
                    checked = true
                case EADDRINUSE:
                    throw fail("address in use: another process serves \(path.path)")
                case ENOENT:
                    throw fail(
                        "the directory \(directory(of: path.path)) does not exist; create it first (systemd's RuntimeDirectory=echod creates /run/echod)")
                default:
                    throw fail("\(error)")
                }
            }
        }
        var listener = Listener(
            fd: fd, address: nil, role: .echo, passed: false, configured: .unix(path), unixName: path.displayName)
        guard !path.isAbstract else { return (listener, removedStale) }
        do throws(IOError) {
            if options.uid != nil || options.gid != nil {
                try Syscall.changeOwner(path: path.path, uid: options.uid, gid: options.gid)
            }
            let info = try Syscall.linkStatus(path: path.path)
            listener.ownedFile = OwnedSocketFile(path: path.path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        } catch {
            Syscall.close(fd)
            try? Syscall.unlink(path: path.path)
            throw fail("\(error)")
        }
        return (listener, removedStale)
    }

    /// `bind` found `path` in use: removes it if it is a socket nobody answers on (true), else says why not.
    private static func removeIfStale(
        _ path: UnixPath, _ address: UnixSocketAddress, _ fail: (String) -> BindError
    ) throws(BindError) -> Bool {
        // Gone between bind and lstat or unlink (ENOENT): the next bind attempt says what is there now.
        let info: stat
        do throws(IOError) {
            info = try Syscall.linkStatus(path: path.path)
        } catch {
            guard error.errno == ENOENT else { throw fail("checking the existing \(path.path): \(error)") }
            return false
        }
        guard Syscall.isSocket(info) else {
            throw fail("\(path.path) exists and is not a socket; echod removes only stale socket files, so it is left as it is")
        }
        let refused: Bool
        do throws(IOError) {
            refused = try Socket.connectionRefused(address)
        } catch {
            throw fail("cannot tell whether a process serves the existing socket \(path.path): \(error)")
        }
        guard refused else { throw fail("address in use: another process serves \(path.path)") }
        do throws(IOError) {
            try Syscall.unlink(path: path.path)
        } catch {
            guard error.errno == ENOENT else { throw fail("cannot remove the stale socket file \(path.path): \(error)") }
            return false
        }
        return true
    }

    private static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// Closes a listener and removes the socket file it created, if that file is still the one it created. Returns
    /// what went wrong removing it, for a warning (e.g. the directory is no longer writable after `--user`).
    static func close(_ listener: Listener) -> String? {
        Syscall.close(listener.fd)
        guard let file = listener.ownedFile else { return nil }
        do throws(IOError) {
            let info = try Syscall.linkStatus(path: file.path)
            guard UInt64(info.st_dev) == file.device, UInt64(info.st_ino) == file.inode else { return nil }
            try Syscall.unlink(path: file.path)
            return nil
        } catch {
            return error.errno == ENOENT ? nil : "cannot remove the socket file \(file.path): \(error)"
        }
    }

    /// Sockets passed by systemd (socket activation), validated. Names select the role: `admin` is the health
    /// endpoint; `echo`, unnamed (`unknown`) and anything else are echo listeners. Datagram sockets (and any named
    /// `udp`) are left to ``DatagramListeners/fromSystemd(_:)``.
    static func fromSystemd(_ passed: [PassedSocket]) throws(ListenerError) -> [Listener] {
        var result: [Listener] = []
        for socket in passed where !SocketActivation.isDatagram(socket) {
            if let problem = SocketActivation.validateListening(socket) {
                throw ListenerError(description: "socket passed by systemd: \(problem)")
            }
            // Only non-blocking and close-on-exec are set; never options such as IPV6_V6ONLY, which fail on a
            // bound socket (what broke Unbound under socket activation).
            Socket.prepareInherited(socket.fd)
            let role: Listener.Role = socket.name == "admin" ? .admin : .echo
            // A Unix socket is named by its path (or abstract name), which echod never unlinks: systemd made it.
            let unixName = UnixSocketAddress.local(of: socket.fd)?.displayName
            result.append(
                Listener(
                    fd: socket.fd, address: unixName == nil ? Socket.localAddress(socket.fd) : nil, role: role, passed: true,
                    configured: nil, unixName: unixName, passedName: socket.name))
        }
        return result
    }
}
