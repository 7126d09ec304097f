import Glibc

/// A block of IP addresses in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`): which peers may send a PROXY protocol
/// header (`proxy_protocol_from`).
///
/// The range is kept as numbers (host byte order) with its mask worked out once, so that ``contains(_:)``, asked once
/// per accepted connection, is a byte swap, two ANDs and two compares: no allocation, no text.
///
/// An IPv4 client is an IPv4 address whichever listener accepted it: a dual-stack `[::]` listener reports it as
/// `::ffff:a.b.c.d`, and that is matched against the IPv4 ranges, never against IPv6 ones (so `::/0` means every
/// IPv6 client, and `0.0.0.0/0` every IPv4 one). For the same reason a range written inside `::ffff:0:0/96` is refused
/// with the IPv4 spelling to use instead.
package struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    /// Why a text is not a range; `reason` says what is wrong and what would be accepted.
    package struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        package var reason: String
        package var description: String { reason }
    }

    /// IPv4 or IPv6 (never `.unix`).
    package let family: SocketAddress.Family
    /// The number of leading bits that must match: 0...32 for IPv4, 0...128 for IPv6.
    package let prefixLength: Int
    // The network's 128 bits as numbers, most significant half first (IPv4: the 32 bits in `low`), and the mask.
    private let high: UInt64
    private let low: UInt64
    private let maskHigh: UInt64
    private let maskLow: UInt64

    /// Parses `10.0.0.0/8`, `127.0.0.1/32`, `::1/128`, `2001:db8::/32`; a bare address is a single host (`/32`,
    /// `/128`). Numeric addresses only, IPv6 without brackets; the address must be the network's first one (no
    /// host bits set), so that `10.0.0.1/8` cannot be read two ways.
    package init(parsing text: String) throws(ParseError) {
        let example = "expected a CIDR range such as 10.0.0.0/8, 127.0.0.1/32 or 2001:db8::/32"
        guard !text.isEmpty else { throw ParseError(reason: "empty range; \(example)") }
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let host = String(parts[0])
        // inet_pton reads a C string: a NUL inside would cut the address short and hide the rest.
        guard host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw ParseError(reason: "\"\(host)\" is not a numeric IPv4 or IPv6 address; \(example)")
        }
        if host.hasPrefix("[") {
            throw ParseError(reason: "write an IPv6 range without brackets, e.g. ::1/128 or 2001:db8::/32")
        }
        guard let address = SocketAddress(host: host, port: 0) else {
            if host.contains("%") { throw ParseError(reason: "IPv6 scope ids (%eth0) are not supported in a range") }
            if host.isEmpty { throw ParseError(reason: "missing address before \"/\"; \(example)") }
            throw ParseError(reason: "\"\(host)\" is not a numeric IPv4 or IPv6 address; \(example)")
        }
        let bits = address.family == .ipv4 ? 32 : 128
        var length = bits
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty else { throw ParseError(reason: "missing prefix length after \"/\"; e.g. \(host)/\(bits)") }
            guard digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(digits), value <= bits else {
                throw ParseError(reason: "bad prefix length \"\(digits)\": an \(address.family == .ipv4 ? "IPv4" : "IPv6") prefix is 0 to \(bits)")
            }
            length = value
        }
        let (high, low) = Self.numbers(address)
        let (maskHigh, maskLow) = Self.mask(length, bits: bits)
        self.family = address.family
        self.prefixLength = length
        self.high = high & maskHigh
        self.low = low & maskLow
        self.maskHigh = maskHigh
        self.maskLow = maskLow
        if family == .ipv6, length >= 96, high == 0, low >> 32 == 0xffff {
            let v4 = Self.ipv4Text(UInt32(truncatingIfNeeded: low & maskLow)) + "/\(length - 96)"
            throw ParseError(
                reason: "an IPv4-mapped range; write it as IPv4, \(v4) "
                    + "(IPv4 clients, also those a [::] listener reports as ::ffff:a.b.c.d, are matched against IPv4 ranges)")
        }
        if self.high != high || self.low != low {
            throw ParseError(reason: "host bits set; did you mean \(self)?")
        }
    }

    /// Whether `address` (its host part; the port is ignored) lies in this range. An IPv4-mapped IPv6 address counts as
    /// its IPv4 address; a Unix-socket peer is in no range. Allocation-free.
    package func contains(_ address: SocketAddress) -> Bool {
        switch address.family {
        case .unix:
            return false
        case .ipv4:
            // SocketAddress keeps the 4 bytes in the low 32 bits of `high`, in memory (network) order.
            let value = UInt64(UInt32(bigEndian: UInt32(truncatingIfNeeded: address.high)))
            return family == .ipv4 && value & maskLow == low
        case .ipv6:
            let high = UInt64(bigEndian: address.high)
            let low = UInt64(bigEndian: address.low)
            if high == 0 && low >> 32 == 0xffff {
                return family == .ipv4 && low & maskLow & 0xffff_ffff == self.low
            }
            return family == .ipv6 && high & maskHigh == self.high && low & maskLow == self.low
        }
    }

    /// `10.0.0.0/8`, `::1/128`: the form `init(parsing:)` accepts, always with the prefix length.
    package var description: String {
        let address: String
        if family == .ipv4 {
            address = Self.ipv4Text(UInt32(truncatingIfNeeded: low))
        } else {
            address = SocketAddress(family: .ipv6, port: 0, high: high.bigEndian, low: low.bigEndian).host
        }
        return "\(address)/\(prefixLength)"
    }

    /// The address as two numbers, most significant first; IPv4 in the low 32 bits of the second.
    private static func numbers(_ address: SocketAddress) -> (UInt64, UInt64) {
        if address.family == .ipv4 {
            return (0, UInt64(UInt32(bigEndian: UInt32(truncatingIfNeeded: address.high))))
        }
        return (UInt64(bigEndian: address.high), UInt64(bigEndian: address.low))
    }

    /// The first `length` of `bits` bits set, laid out as `numbers` lays out the address.
    private static func mask(_ length: Int, bits: Int) -> (UInt64, UInt64) {
        // Swift's `<<` by the width or more gives 0, so /0 and the 64-bit boundary need no case of their own.
        if bits == 32 { return (0, ~UInt64(0) << (32 - length) & 0xffff_ffff) }
        let zeros = 128 - length
        return (zeros >= 64 ? ~UInt64(0) << (zeros - 64) : ~UInt64(0), ~UInt64(0) << zeros)
    }

    private static func ipv4Text(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }
}
