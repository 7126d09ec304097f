import EchodSystem
import Glibc

/// A descriptor handed over by systemd: a listening socket (a `.socket` unit, or `systemd-socket-activate`), or one
/// that this service put into its fd store before (``FDStoreChannel``).
package struct PassedSocket: Sendable, Equatable {
    /// The descriptor, 3 or above. It has FD_CLOEXEC set and is otherwise exactly as systemd created or kept it.
    package var fd: Int32
    /// `FileDescriptorName=` of the socket unit, or the `FDNAME=` it was stored under; `"unknown"` when systemd gave
    /// none.
    package var name: String

    package init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }
}

/// Socket activation (`sd_listen_fds(3)`): taking the listening sockets systemd passed, and checking them.
package enum SocketActivation {
    /// The sockets systemd passed to this process, in order (fd 3, 4, ...).
    ///
    /// Empty when `LISTEN_FDS` is absent or `LISTEN_PID` names another process (as `sd_listen_fds` does), and also
    /// when the variables are malformed. `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are removed from the
    /// environment, so a second call returns nothing: call it once, at start-up, before any thread is started.
    /// The corresponding C function is `sd_listen_fds_with_names(1, &names)`.
    package static func takePassedSockets() -> [PassedSocket] {
        (Libsystemd.listenFDsWithNames() ?? []).map {
            PassedSocket(fd: $0.fd, name: $0.name.isEmpty ? "unknown" : $0.name)
        }
    }

    /// Checks that a passed descriptor is a listening `SOCK_STREAM` socket of a family echod serves (AF_INET,
    /// AF_INET6, AF_UNIX).
    ///
    /// Returns nil when it is, else a reason for a log line, e.g.
    /// `fd 3 ("echo") is SOCK_DGRAM, expected a listening stream socket`.
    /// Only reads (`getsockopt` `SO_TYPE`, `SO_ACCEPTCONN`, `SO_DOMAIN`): a passed socket is shared with systemd and
    /// with the next instance of the service, and its options are the socket unit's to set (Unbound broke by
    /// setting IPV6_V6ONLY on one).
    package static func validateListening(_ socket: PassedSocket) -> String? {
        let what = describe(socket)
        if let reason = validateStream(socket.fd, what, expected: "a listening stream socket") { return reason }
        switch readOption(socket.fd, SO_ACCEPTCONN, "getsockopt(SO_ACCEPTCONN)") {
        case .success(0):
            return "\(what) is a SOCK_STREAM socket that is not listening (expected a socket unit with Accept=no)"
        case .success: return nil
        case .failure(let e): return "\(what): \(e.operation) failed: \(e.reason)"
        }
    }

    /// Checks that a descriptor taken back from the fd store is an established connection: a `SOCK_STREAM` socket of
    /// a family echod serves, not listening, with a peer (`getpeername` succeeds, which a reset connection or one
    /// that never connected fails with ENOTCONN; a connection the peer only half-closed still passes).
    ///
    /// Returns nil when it is, else a reason for a log line, e.g.
    /// `fd 7 ("echod-conn-4711") is a listening socket, expected a connected stream socket`. Only reads, as
    /// ``validateListening(_:)`` does.
    package static func validateConnection(_ socket: PassedSocket) -> String? {
        let what = describe(socket)
        if let reason = validateStream(socket.fd, what, expected: "a connected stream socket") { return reason }
        switch readOption(socket.fd, SO_ACCEPTCONN, "getsockopt(SO_ACCEPTCONN)") {
        case .success(0): break
        case .success: return "\(what) is a listening socket, expected a connected stream socket"
        case .failure(let e): return "\(what): \(e.operation) failed: \(e.reason)"
        }
        do throws(IOError) {
            _ = try Syscall.peerName(socket.fd)
            return nil
        } catch  where error.errno == ENOTCONN {
            return "\(what) is a stream socket that is not connected"
        } catch {
            return "\(what): \(error.operation) failed: \(error.reason)"
        }
    }

    /// Checks that a descriptor taken back from the fd store is a memfd sealed against every change
    /// (``Syscall/sealAll(_:)``), as echod stores its handover state: its contents are then the ones written before
    /// the seal, whoever else holds it. Returns nil when it is, else a reason for a log line.
    package static func validateMemfd(_ socket: PassedSocket) -> String? {
        let what = describe(socket)
        do throws(IOError) {
            let seals = try Syscall.seals(socket.fd)
            if !seals.isSuperset(of: .all) { return "\(what) is a memfd that is not sealed against writes" }
            return nil
        } catch {
            switch error.errno {
            case EBADF: return "\(what) is not an open descriptor"
            case EINVAL: return "\(what) is not a memfd"
            default: return "\(what): \(error.operation) failed: \(error.reason)"
            }
        }
    }

    /// `fd 3 ("echo")`, how every verdict names the descriptor.
    private static func describe(_ socket: PassedSocket) -> String {
        "fd \(socket.fd) (\"\(socket.name)\")"
    }

    /// The checks listening sockets and connections share: a `SOCK_STREAM` socket of family AF_INET, AF_INET6 or
    /// AF_UNIX. nil when it is one, else the reason.
    private static func validateStream(_ fd: Int32, _ what: String, expected: String) -> String? {
        let type: Int32
        switch readOption(fd, SO_TYPE, "getsockopt(SO_TYPE)") {
        case .success(let value): type = value
        case .failure(let e) where e.errno == ENOTSOCK: return "\(what) is not a socket"
        case .failure(let e) where e.errno == EBADF: return "\(what) is not an open descriptor"
        case .failure(let e): return "\(what): \(e.operation) failed: \(e.reason)"
        }
        guard type == Int32(SOCK_STREAM.rawValue) else {
            return "\(what) is \(socketTypeName(type)), expected \(expected)"
        }
        switch readOption(fd, SO_DOMAIN, "getsockopt(SO_DOMAIN)") {
        case .success(let family) where [AF_INET, AF_INET6, AF_UNIX].contains(family): return nil
        case .success(let family):
            return "\(what) has address family \(family), expected AF_INET, AF_INET6 or AF_UNIX"
        case .failure(let e): return "\(what): \(e.operation) failed: \(e.reason)"
        }
    }

    /// `getsockopt(fd, SOL_SOCKET, option)` for an int-valued option, as a `Result` to switch over.
    private static func readOption(_ fd: Int32, _ option: Int32, _ operation: StaticString) -> Result<Int32, IOError> {
        do throws(IOError) {
            return .success(try Syscall.socketOption(fd, SOL_SOCKET, option, operation))
        } catch {
            return .failure(error)
        }
    }

    private static func socketTypeName(_ type: Int32) -> String {
        switch type {
        case Int32(SOCK_DGRAM.rawValue): "SOCK_DGRAM"
        case Int32(SOCK_SEQPACKET.rawValue): "SOCK_SEQPACKET"
        case Int32(SOCK_RAW.rawValue): "SOCK_RAW"
        default: "socket type \(type)"
        }
    }
}
