import CEchodLinux
import Glibc

/// An IPv4 or IPv6 address and port, or a Unix-socket peer's credentials, stored inline in 24 bytes (no heap, no
/// String), so that a connection table entry can hold its peer's address and an idle connection costs only a few
/// dozen bytes.
///
/// A Unix-socket peer has no address worth keeping (a client socket is usually unbound), so it is identified by the
/// credentials the kernel recorded when it connected (`SO_PEERCRED`, read once at accept): `high` holds the uid in
/// its low 32 bits and the gid in its high 32 bits, `low` the pid; `port` is 0.
package struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    // Raw values start at 0 so that an all-zero address is valid (FDTable entries start zeroed).
    package enum Family: UInt8, Sendable {
        case ipv4 = 0
        case ipv6 = 1
        case unix = 2
    }

    package var family: Family
    package var port: UInt16
    /// The address in network byte order: 4 bytes used for IPv4, 16 for IPv6.
    package var high: UInt64
    package var low: UInt64

    /// `0.0.0.0:0`, a placeholder.
    package static let unspecified = SocketAddress(family: .ipv4, port: 0, high: 0, low: 0)

    package init(family: Family, port: UInt16, high: UInt64, low: UInt64) {
        self.family = family
        self.port = port
        self.high = high
        self.low = low
    }

    /// A Unix-socket peer, as `SO_PEERCRED` reports it.
    package static func unixPeer(uid: UInt32, gid: UInt32, pid: Int32) -> SocketAddress {
        SocketAddress(family: .unix, port: 0, high: UInt64(uid) | UInt64(gid) << 32, low: UInt64(UInt32(bitPattern: pid)))
    }

    /// A Unix-socket peer's user, group and process IDs (zero for an IP peer).
    package var unixUID: UInt32 { family == .unix ? UInt32(truncatingIfNeeded: high) : 0 }
    package var unixGID: UInt32 { family == .unix ? UInt32(truncatingIfNeeded: high >> 32) : 0 }
    package var unixPID: Int32 { family == .unix ? Int32(bitPattern: UInt32(truncatingIfNeeded: low)) : 0 }

    /// Parses a numeric host (`127.0.0.1`, `::1`, no brackets) and a port.
    package init?(host: String, port: UInt16) {
        self.port = port
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            family = .ipv4
            high = UInt64(v4.s_addr)
            low = 0
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            family = .ipv6
            (high, low) = withUnsafeBytes(of: &v6) {
                ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            }
        } else {
            return nil
        }
    }

    /// Reads an address that the kernel filled in (accept4, getsockname).
    package init?(_ storage: UnsafePointer<sockaddr_storage>) {
        switch Int32(storage.pointee.ss_family) {
        case AF_INET:
            let sin = UnsafeRawPointer(storage).load(as: sockaddr_in.self)
            family = .ipv4
            port = UInt16(bigEndian: sin.sin_port)
            high = UInt64(sin.sin_addr.s_addr)
            low = 0
        case AF_INET6:
            let sin6 = UnsafeRawPointer(storage).load(as: sockaddr_in6.self)
            family = .ipv6
            port = UInt16(bigEndian: sin6.sin6_port)
            var addr = sin6.sin6_addr
            (high, low) = withUnsafeBytes(of: &addr) {
                ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            }
        default:
            return nil
        }
    }

    /// The address without the port, as a hashable key (for per-IP connection limits). For a Unix-socket peer, its
    /// uid alone: the per-IP limit is per user there, since every local process of one user is one peer.
    package var hostKey: HostKey {
        family == .unix ? HostKey(family: .unix, high: UInt64(unixUID), low: 0) : HostKey(family: family, high: high, low: low)
    }

    /// Calls `body` with this address as a `sockaddr` for bind/connect. A Unix peer's credentials are no address:
    /// they give an `AF_UNSPEC` one, which bind and connect refuse (``UnixSocketAddress`` is the Unix address).
    package func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        switch family {
        case .unix:
            var none = sockaddr()
            none.sa_family = sa_family_t(AF_UNSPEC)
            return try body(&none, socklen_t(MemoryLayout<sa_family_t>.size))
        case .ipv4:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = UInt32(truncatingIfNeeded: high)
            return try withUnsafePointer(to: &sin) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .ipv6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) {
                $0.storeBytes(of: high, toByteOffset: 0, as: UInt64.self)
                $0.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
            }
            return try withUnsafePointer(to: &sin6) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }

    /// The numeric host, e.g. `127.0.0.1` or `::1`; for a Unix peer, `unix:uid:1000,pid:4242`.
    package var host: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch family {
        case .unix:
            return "unix:uid:\(unixUID),pid:\(unixPID)"
        case .ipv4:
            var a = in_addr(s_addr: UInt32(truncatingIfNeeded: high))
            inet_ntop(AF_INET, &a, &buffer, socklen_t(buffer.count))
        case .ipv6:
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) {
                $0.storeBytes(of: high, toByteOffset: 0, as: UInt64.self)
                $0.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
            }
            inet_ntop(AF_INET6, &a, &buffer, socklen_t(buffer.count))
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `127.0.0.1:8888`, `[::1]:8888`, or `unix:uid:1000,pid:4242` for a Unix-socket peer (one token, no space or
    /// `=`, so that a log line's `peer=` value needs no quoting).
    package var description: String {
        switch family {
        case .ipv4: "\(host):\(port)"
        case .ipv6: "[\(host)]:\(port)"
        case .unix: host
        }
    }
}

/// An IP address without a port.
package struct HostKey: Sendable, Hashable {
    package var family: SocketAddress.Family
    package var high: UInt64
    package var low: UInt64

    /// The address in network byte order, as in ``SocketAddress``.
    package init(family: SocketAddress.Family, high: UInt64, low: UInt64) {
        self.family = family
        self.high = high
        self.low = low
    }
}
