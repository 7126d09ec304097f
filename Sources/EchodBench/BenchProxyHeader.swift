import EchodProxyProtocol
import EchodSystem

/// `--proxy-protocol`: the PROXY protocol header a bench connection sends before its payload, as a load balancer in
/// front of the server would, so that a server's per-client work (its header phase, a per-IP limit) is measured.
///
/// Connection N claims its own client address in the benchmarking ranges (198.18.0.0/15, RFC 2544; 2001:2::/48,
/// RFC 5180), of the target's family, with the connection's real local port; the destination is the target. So
/// concurrent connections are distinct clients to a per-IP limit (in `connect` mode connector N keeps its address
/// across its connections, one at a time). Built into the connection's own buffer without allocating.
package enum BenchProxyHeader {
    /// Enough for any header written here: a v1 line (at most 107 bytes) or a v2 header with IPv6 addresses (52).
    static let capacity = ProxyHeaderWriter.v1MaximumLength

    /// Distinct addresses before they repeat: 198.18.0.1 to 198.19.255.254.
    package static let ipv4Count = 131_070

    /// The client address connection `id` claims, in the family of `target`.
    package static func source(id: Int, port: UInt16, like target: SocketAddress) -> ProxyAddress {
        switch target.family {
        case .ipv6:
            ProxyAddress(ipv6: 0x2001_0002_0000 << 80 | UInt128(id + 1), port: port)
        case .ipv4, .unix:
            ProxyAddress(ipv4: 0xC612_0000 + UInt32(id % ipv4Count + 1), port: port)
        }
    }

    /// The target as the header's destination: the same 20-byte shape, field by field.
    package static func destination(_ target: SocketAddress) -> ProxyAddress {
        ProxyAddress(family: target.family == .ipv6 ? .ipv6 : .ipv4, port: target.port, high: target.high, low: target.low)
    }

    /// Writes connection `id`'s header for socket `fd` into `buffer` (``capacity`` bytes); returns its length.
    static func write(_ version: ProxyVersion, id: Int, fd: Int32, target: SocketAddress, into buffer: UnsafeMutableRawBufferPointer)
        throws(ProxyHeaderWriter.Failure) -> Int
    {
        let port = Socket.localAddress(fd)?.port ?? 0
        let addresses = ProxyHeaderWriter.Addresses.inet(source: source(id: id, port: port, like: target), destination: destination(target))
        switch version {
        case .v1: return try ProxyHeaderWriter.v1(addresses, into: buffer)
        case .v2: return try ProxyHeaderWriter.v2(.proxy, addresses, into: buffer)
        }
    }
}
