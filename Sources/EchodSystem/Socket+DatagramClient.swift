import CEchodLinux
import Glibc

extension Socket {
    /// Creates a non-blocking UDP socket connected to `address`: the kernel picks the local address and an ephemeral
    /// port (never below 1024, so a server's low-source-port guard lets its datagrams through), `send`/`read`
    /// need no address, datagrams from any other source are filtered out by the kernel, and an ICMP port unreachable
    /// comes back as ECONNREFUSED on the next `send` or `read`. For the clients (`echod probe udp://`,
    /// `echod bench --udp`); connecting a UDP socket sends nothing.
    package static func connectDatagram(to address: SocketAddress) throws(IOError) -> Int32 {
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        let type = Int32(SOCK_DGRAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        let fd = try retryingInterrupts("socket") { socket(domain, type, 0) }
        let rc = address.withSockAddr { Glibc.connect(fd, $0, $1) }
        if rc != 0 {
            let code = echod_errno()
            Syscall.close(fd)
            throw IOError("connect", errno: code)
        }
        return fd
    }
}
