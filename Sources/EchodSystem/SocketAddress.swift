import CEchodLinux
import Glibc

/// An IPv4 or IPv6 address and port, stored inline in 20 bytes (no heap, no String), so that a connection table
/// entry can hold its peer's address and an idle connection costs only a few dozen bytes.
package struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    // Raw values start at 0 so that an all-zero address is valid (FDTable entries start zeroed).
    package enum Family: UInt8, Sendable {
        case ipv4 = 0
        case ipv6 = 1
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

    /// The address without the port, as a hashable key (for per-IP connection limits).
    package var hostKey: HostKey { HostKey(family: family, high: high, low: low) }

    /// Calls `body` with this address as a `sockaddr` for bind/connect.
    package func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        switch family {
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

    /// The numeric host, e.g. `127.0.0.1` or `::1`.
    package var host: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch family {
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

    /// `127.0.0.1:8888` or `[::1]:8888`.
    package var description: String {
        family == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
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
