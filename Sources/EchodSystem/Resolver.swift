import Glibc

/// Turns a host (numeric, or a name) and a port into socket addresses: for the clients (`echod probe`,
/// `echod bench`), never for the daemon, whose listen addresses are numeric so that it does not depend on DNS.
package enum Resolver {
    /// Why a host has no address: the resolver's own message (`gai_strerror`), or that it had no TCP address.
    package struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        package var host: String
        package var reason: String
        package var description: String { "cannot resolve \(host): \(reason)" }
    }

    /// Numeric hosts directly (no lookup); names through getaddrinfo, TCP, IPv4 and IPv6, in the resolver's order
    /// (RFC 6724), duplicates removed. A caller that connects should try them in turn.
    /// The corresponding C function is `getaddrinfo`.
    package static func addresses(host: String, port: UInt16) throws(Failure) -> [SocketAddress] {
        if let numeric = SocketAddress(host: host, port: port) { return [numeric] }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw Failure(host: host, reason: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(first) }
        var result: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let entry = node {
            if let raw = entry.pointee.ai_addr {
                var storage = sockaddr_storage()
                let length = min(Int(entry.pointee.ai_addrlen), MemoryLayout<sockaddr_storage>.size)
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: length)) }
                if let address = withUnsafePointer(to: &storage, { SocketAddress($0) }), !result.contains(address) {
                    result.append(address)
                }
            }
            node = entry.pointee.ai_next
        }
        guard !result.isEmpty else { throw Failure(host: host, reason: "no TCP addresses") }
        return result
    }
}
