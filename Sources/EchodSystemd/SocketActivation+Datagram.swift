import EchodSystem
import Glibc

/// Datagram sockets passed by systemd (`ListenDatagram=` with `FileDescriptorName=udp`), for the UDP echo.
extension SocketActivation {
    /// Whether a passed socket belongs to the UDP echo: it is named `udp`, or it is a datagram socket (which no other
    /// part of echod can serve). ``validateDatagram(_:)`` then says whether it is a usable one.
    package static func isDatagram(_ socket: PassedSocket) -> Bool {
        socket.name == "udp" || (try? Syscall.socketOption(socket.fd, SOL_SOCKET, SO_TYPE, "getsockopt(SO_TYPE)")) == Int32(SOCK_DGRAM.rawValue)
    }

    /// Checks that a passed socket is a `SOCK_DGRAM` socket of AF_INET or AF_INET6 named `udp`: nil when it is, else a
    /// reason for a log line. A datagram socket under another name is refused too: the name is what says a socket is
    /// meant for the UDP echo (a `.socket` unit's `FileDescriptorName=` applies to all its `Listen*=` lines, so a
    /// `ListenDatagram=` slipped into the echo unit would otherwise be served unnoticed). Only reads options.
    package static func validateDatagram(_ socket: PassedSocket) -> String? {
        let what = "fd \(socket.fd) (\"\(socket.name)\")"
        let type: Int32
        do throws(IOError) {
            type = try Syscall.socketOption(socket.fd, SOL_SOCKET, SO_TYPE, "getsockopt(SO_TYPE)")
        } catch {
            if error.errno == ENOTSOCK { return "\(what) is not a socket" }
            return "\(what): \(error.operation) failed: \(error.reason)"
        }
        guard type == Int32(SOCK_DGRAM.rawValue) else {
            return "\(what) is named udp but is not a datagram socket (SO_TYPE \(type)); use ListenDatagram= in a socket unit of its own"
        }
        guard socket.name == "udp" else {
            return "\(what) is a datagram socket; name it udp (FileDescriptorName=udp, in a socket unit of its own) to serve UDP echo on it"
        }
        do throws(IOError) {
            let family = try Syscall.socketOption(socket.fd, SOL_SOCKET, SO_DOMAIN, "getsockopt(SO_DOMAIN)")
            guard family == AF_INET || family == AF_INET6 else {
                return "\(what) has address family \(family), expected AF_INET or AF_INET6 for UDP echo"
            }
        } catch {
            return "\(what): \(error.operation) failed: \(error.reason)"
        }
        return nil
    }
}
