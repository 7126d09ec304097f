import EchodConfig
import EchodEventLoop
import EchodSystemd
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
    let configured: ListenAddress?

    var label: String {
        let where_ = address?.description ?? "fd \(fd)"
        return passed ? "\(where_) (from systemd)" : where_
    }
}

struct ListenerError: Error, CustomStringConvertible {
    var description: String
}

enum Listeners {
    /// Binds a listening socket for each configured address.
    static func bind(_ addresses: [ListenAddress]) throws(ListenerError) -> [Listener] {
        var result: [Listener] = []
        for address in addresses {
            do {
                result.append(try bind(address))
            } catch {
                for l in result { Syscall.close(l.fd) }
                throw error
            }
        }
        return result
    }

    static func bind(_ address: ListenAddress) throws(ListenerError) -> Listener {
        guard let socketAddress = SocketAddress(host: address.host, port: address.port) else {
            throw ListenerError(description: "listen \(address): not a numeric address")
        }
        do {
            let fd = try Socket.listen(on: socketAddress)
            return Listener(fd: fd, address: socketAddress, role: .echo, passed: false, configured: address)
        } catch {
            throw ListenerError(description: "listen \(address): \(error)")
        }
    }

    /// Sockets passed by systemd (socket activation), validated. Names select the role: `admin` is the health
    /// endpoint; `echo`, unnamed (`unknown`) and anything else are echo listeners.
    static func fromSystemd() throws(ListenerError) -> [Listener] {
        let passed = SocketActivation.takePassedSockets()
        var result: [Listener] = []
        for socket in passed {
            if let problem = SocketActivation.validateListening(socket) {
                throw ListenerError(description: "socket passed by systemd: \(problem)")
            }
            // Only non-blocking and close-on-exec are set; never options such as IPV6_V6ONLY, which fail on a
            // bound socket (what broke Unbound under socket activation).
            Socket.prepareInherited(socket.fd)
            let role: Listener.Role = socket.name == "admin" ? .admin : .echo
            result.append(Listener(fd: socket.fd, address: Socket.localAddress(socket.fd), role: role, passed: true, configured: nil))
        }
        return result
    }
}
