/// What a PROXY protocol header says (HAProxy's proxy-protocol.txt, versions 1 and 2): who the proxy's client was.
///
/// Every byte range in it (`Range<Int>`) is an offset into the bytes given to `ProxyHeaderParser.parse`, which start
/// with the header's first byte: the result holds no copy of the header and allocates nothing; a caller that wants a
/// path or a TLV as text takes it from its own buffer while it still holds it.
package struct ProxyHeader: Equatable, Sendable {
    package var version: ProxyVersion
    package var command: ProxyCommand
    package var addresses: ProxyAddresses
    /// The header's length in bytes: the caller's data starts right after it.
    package var length: Int
    /// The v2 TLVs echod decodes; empty for v1.
    package var tlvs: ProxyTLVs

    package init(version: ProxyVersion, command: ProxyCommand, addresses: ProxyAddresses, length: Int, tlvs: ProxyTLVs = ProxyTLVs()) {
        self.version = version
        self.command = command
        self.addresses = addresses
        self.length = length
        self.tlvs = tlvs
    }
}

package enum ProxyVersion: UInt8, Equatable, Sendable, CustomStringConvertible {
    case v1 = 1
    case v2 = 2

    package var description: String { self == .v1 ? "v1" : "v2" }
}

/// Which header versions a listener accepts; `any` tells them apart by the first byte.
package enum ProxyProtocolMode: Equatable, Sendable {
    case v1
    case v2
    case any
}

/// v2's command. v1 has none: its headers are all `proxy`, `UNKNOWN` ones with no addresses.
package enum ProxyCommand: Equatable, Sendable {
    /// The proxy's own connection (a health check): the connection's real endpoints stand.
    case local
    /// Relayed on behalf of a client: `addresses` says who, unless the proxy could not tell (`.none`).
    case proxy
}

package enum ProxyAddresses: Equatable, Sendable {
    /// No addresses: v2 LOCAL or AF_UNSPEC, v1 UNKNOWN. The connection's real endpoints stand.
    case none
    /// TCP over IPv4 or IPv6 (both addresses of the same family).
    case inet(source: ProxyAddress, destination: ProxyAddress)
    /// AF_UNIX stream: each path as a byte range of the header's 108-byte field, without its padding NULs (an
    /// abstract socket's name keeps its leading NUL).
    case unix(source: Range<Int>, destination: Range<Int>)
}

/// An IPv4 or IPv6 address and port in the same 20-byte shape as EchodSystem's `SocketAddress` (the same raw values of
/// the family, the same byte order of `high` and `low`), so that the daemon makes one from the other field by field,
/// without allocating. This target stays pure Swift (no libc, no syscall layer), which is why it has its own type.
package struct ProxyAddress: Equatable, Hashable, Sendable {
    package enum Family: UInt8, Sendable {
        case ipv4 = 0
        case ipv6 = 1
    }

    package var family: Family
    package var port: UInt16
    /// The address's bytes in network order as they lie in memory (what loading a UInt64 from `in6_addr` gives): the
    /// first 4 bytes of `high` (its low 32 bits) for IPv4, 16 bytes across `high` and `low` for IPv6.
    package var high: UInt64
    package var low: UInt64

    package init(family: Family, port: UInt16, high: UInt64, low: UInt64) {
        self.family = family
        self.port = port
        self.high = high
        self.low = low
    }

    /// IPv4 from its value as a number (`0x7f000001` for 127.0.0.1).
    package init(ipv4 value: UInt32, port: UInt16) {
        self.init(family: .ipv4, port: port, high: UInt64(UInt32(bigEndian: value)), low: 0)
    }

    /// IPv6 from its value as a number (`1` for ::1).
    package init(ipv6 value: UInt128, port: UInt16) {
        self.init(
            family: .ipv6, port: port, high: UInt64(bigEndian: UInt64(truncatingIfNeeded: value >> 64)),
            low: UInt64(bigEndian: UInt64(truncatingIfNeeded: value)))
    }

    /// The address as a number, the inverse of the initialisers above.
    package var value: UInt128 {
        switch family {
        case .ipv4: UInt128(UInt32(bigEndian: UInt32(truncatingIfNeeded: high)))
        case .ipv6: UInt128(UInt64(bigEndian: high)) << 64 | UInt128(UInt64(bigEndian: low))
        }
    }
}

/// The v2 TLVs echod understands. Unknown types (and NOOP) are skipped; each known one may appear once.
package struct ProxyTLVs: Equatable, Sendable {
    /// PP2_TYPE_ALPN: the protocol the client negotiated, e.g. `h2`.
    package var alpn: Range<Int>?
    /// PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI), at most 255 bytes.
    package var authority: Range<Int>?
    /// PP2_TYPE_CRC32C: present only when it matched the header (a mismatch is `.invalid`).
    package var crc32c: UInt32?
    /// PP2_TYPE_UNIQUE_ID: the proxy's connection id, at most 128 bytes.
    package var uniqueID: Range<Int>?
    /// PP2_TYPE_NETNS: the name of the proxy's network namespace.
    package var netns: Range<Int>?
    /// PP2_TYPE_SSL: what the proxy knows of the client's TLS.
    package var ssl: ProxySSL?

    package init() {}
}

package struct ProxySSL: Equatable, Sendable {
    /// PP2_CLIENT_SSL (1), PP2_CLIENT_CERT_CONN (2), PP2_CLIENT_CERT_SESS (4).
    package var client: UInt8
    /// 0 when the client's certificate was verified.
    package var verify: UInt32
    /// PP2_SUBTYPE_SSL_VERSION, e.g. `TLSv1.3`.
    package var version: Range<Int>?
    /// PP2_SUBTYPE_SSL_CN: the client certificate's common name.
    package var commonName: Range<Int>?
    /// PP2_SUBTYPE_SSL_CIPHER, e.g. `TLS_AES_256_GCM_SHA384`.
    package var cipher: Range<Int>?

    package init(client: UInt8, verify: UInt32) {
        self.client = client
        self.verify = verify
    }
}
