import EchodConfig
import EchodEventLoop
import EchodSystem
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
        let place = address?.description ?? "fd \(fd)"
        return passed ? "\(place) (from systemd)" : place
    }
}

struct ListenerError: Error, CustomStringConvertible {
    var description: String
}

enum Listeners {
    /// A configured address left out because this host has no IPv6 (see ``bind(_:)``).
    struct Skipped {
        var address: ListenAddress
        var error: IOError
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
    static func bind(_ addresses: [ListenAddress]) throws(ListenerError) -> (bound: [Listener], skipped: [Skipped]) {
        var result: [Listener] = []
        var skipped: [Skipped] = []
        for address in addresses {
            do throws(BindError) {
                result.append(try bind(address))
            } catch {
                switch error {
                case .noIPv6(let cause):
                    skipped.append(Skipped(address: address, error: cause))
                case .failed(let failure):
                    for l in result { Syscall.close(l.fd) }
                    throw failure
                }
            }
        }
        return (result, skipped)
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
            return Listener(fd: fd, address: socketAddress, role: .echo, passed: false, configured: address)
        } catch {
            let noIPv6 =
                address.family == .ipv6
                && (error.errno == EAFNOSUPPORT || (error.errno == EADDRNOTAVAIL && address.host == "::1"))
            throw noIPv6 ? .noIPv6(error) : .failed(ListenerError(description: "listen \(address): \(error)"))
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
            result.append(Listener(fd: socket.fd, address: Socket.localAddress(socket.fd), role: role, passed: true, configured: nil))
        }
        return result
    }
}
