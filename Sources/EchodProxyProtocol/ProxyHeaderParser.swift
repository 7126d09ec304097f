/// The PROXY protocol header parser (HAProxy's proxy-protocol.txt, versions 1 and 2), for a non-blocking reader.
///
/// `parse` is a pure function of the bytes received so far on a connection, from its first byte: the caller appends
/// each read to the bytes it holds and calls again, until `.complete` or `.invalid`. A decision, once made, never
/// changes with more bytes, and it comes as early as the bytes allow: a first byte that starts neither signature is
/// refused at once (a plain client that says "hello" to a PROXY listener is closed on its first read, not at a
/// timeout), a v1 line at its first wrong byte, a v2 header at its first 16 bytes when they announce something
/// refused. `.complete(_, consumed:)` tells where the client's own data starts, if it came in the same read.
///
/// Strict, as the specification asks of a receiver: v1 with single spaces, numeric addresses of the stated family,
/// ports without leading zeros, CRLF within 107 bytes; v2 with version 2, LOCAL or PROXY, families AF_UNSPEC, AF_INET,
/// AF_INET6, AF_UNIX over STREAM (DGRAM is refused: echod takes the PROXY protocol on stream listeners only), address
/// blocks at least as long as the family's, and TLVs that stay inside the header (a CRC32C TLV is verified).
///
/// No allocation: the input is read in place, the result is a small value, nothing is kept between calls, and paths and
/// TLVs are byte ranges of the caller's own buffer (AllocationTests counts none per parse in release: v1 and v2, IPv4 and
/// IPv6, with TLVs, complete, cut short or refused). Two exceptions: the CRC32C table, built once per process, and a v2
/// header refused for one of its TLVs (the TLV walk throws, and a thrown error is boxed: one allocation, for a
/// connection about to be closed).
package enum ProxyHeaderParser {
    /// What `parse` says of the bytes so far.
    package enum Result: Equatable, Sendable {
        /// Not decided yet: call again once you hold at least `minimum` bytes in all (more than you gave).
        case needMore(minimum: Int)
        /// A valid header of `consumed` bytes (`header.length`); bytes after it are the client's.
        case complete(ProxyHeader, consumed: Int)
        case invalid(ProxyHeaderError)
    }

    /// The longest v1 line, CRLF included ("PROXY UNKNOWN" with two IPv6 addresses and ports).
    package static let v1MaximumLength = 107
    /// The longest v2 header echod accepts unless told otherwise: 4 KiB. The protocol allows 16 + 65,535 bytes, but what
    /// proxies send is far shorter: addresses (at most 216 bytes), an authority (at most 255), a unique id (at most
    /// 128), ALPN, CRC32C and HAProxy's SSL TLV (a few hundred bytes), an AWS or Azure endpoint id; 4 KiB leaves room for
    /// a client certificate in the SSL TLV (typically 1-2 KiB) while a connection still in its header phase holds at
    /// most a page.
    package static let defaultV2Limit = 4096
    /// The longest v2 header the protocol can express.
    package static let v2MaximumLength = 16 + 65535

    static let v2Signature: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
    )

    /// Parses the bytes a connection has received so far, from its first byte.
    /// - Parameter v2Limit: the longest v2 header accepted (16...65,551); a longer one is refused as soon as its length
    ///   field arrives. v1 lines are bounded by the specification's 107 bytes.
    package static func parse(_ bytes: UnsafeRawBufferPointer, mode: ProxyProtocolMode, v2Limit: Int = defaultV2Limit) -> Result {
        precondition(v2Limit >= 16, "a v2 header has at least 16 bytes")
        guard let first = bytes.first else { return .needMore(minimum: 1) }
        switch first {
        case UInt8(ascii: "P"):
            if mode == .v2 { return .invalid(.versionNotAccepted(.v1)) }
            return V1Parser.parse(bytes)
        case 0x0D:
            if mode == .v1 { return .invalid(.versionNotAccepted(.v2)) }
            return V2Parser.parse(bytes, limit: min(v2Limit, v2MaximumLength))
        default:
            return .invalid(.notProxyProtocol(firstByte: first))
        }
    }

    /// `parse` on an array or any contiguous collection of bytes.
    package static func parse<Bytes: Collection<UInt8>>(_ bytes: Bytes, mode: ProxyProtocolMode, v2Limit: Int = defaultV2Limit) -> Result {
        if let result = bytes.withContiguousStorageIfAvailable({ parse(UnsafeRawBufferPointer($0), mode: mode, v2Limit: v2Limit) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { parse($0, mode: mode, v2Limit: v2Limit) }
    }
}
