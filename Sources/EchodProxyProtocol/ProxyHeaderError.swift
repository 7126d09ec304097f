import EchodText

/// Why a header was refused: small values (no text until `description` is asked for, once, by the log line).
package enum ProxyHeaderError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The first byte starts neither signature ("PROXY " nor v2's `\r\n\r\n\0\r\nQUIT\n`).
    case notProxyProtocol(firstByte: UInt8)
    /// A well-formed start of a version the listener does not accept.
    case versionNotAccepted(ProxyVersion)
    case badV1Signature
    /// No CRLF within the first 107 bytes, the longest line the specification allows.
    case v1LineTooLong
    /// Not `TCP4`, `TCP6` or `UNKNOWN`, each followed by exactly one space (or CRLF after UNKNOWN).
    case v1BadProtocol
    case v1BadAddress(V1Field, ProxyAddress.Family)
    case v1BadPort(V1Field)
    case v1PortLeadingZero(V1Field)
    case v1PortOutOfRange(V1Field)
    /// A field was not followed by exactly one space.
    case v1ExpectedSpace(after: V1Field)
    /// The line does not end with CRLF (a lone CR or LF, or a byte after the last field).
    case v1MissingCRLF
    case badV2Signature
    case v2Version(UInt8)
    case v2Command(UInt8)
    case v2Family(UInt8)
    case v2Transport(UInt8)
    /// DGRAM: echod accepts the PROXY protocol on stream listeners only.
    case v2Datagram
    /// An address family with the UNSPEC transport, or UNSPEC with a transport: the byte 14 as sent.
    case v2FamilyTransport(UInt8)
    case v2AddressTooShort(length: Int, family: UInt8)
    /// A v2 header longer than the limit the caller set (16 + the length field).
    case v2TooLong(length: Int, limit: Int)
    /// Fewer than 3 bytes left for a TLV's type and length.
    case tlvTruncated(offset: Int)
    case tlvOverrun(type: UInt8)
    case tlvBadLength(type: UInt8, length: Int)
    case tlvDuplicate(type: UInt8)
    case sslSubTLVOverrun(type: UInt8)
    case crc32cMismatch(sent: UInt32, computed: UInt32)

    package enum V1Field: Equatable, Sendable, CustomStringConvertible {
        case sourceAddress, destinationAddress, sourcePort, destinationPort, proto

        package var description: String {
            switch self {
            case .sourceAddress: "source address"
            case .destinationAddress: "destination address"
            case .sourcePort: "source port"
            case .destinationPort: "destination port"
            case .proto: "protocol"
            }
        }
    }

    package var description: String {
        switch self {
        case .notProxyProtocol(let byte): "not a PROXY protocol header (first byte \(Self.hex(byte)))"
        case .versionNotAccepted(let version): "a PROXY protocol \(version) header where only \(version == .v1 ? "v2" : "v1") is accepted"
        case .badV1Signature: "bad v1 signature (expected \"PROXY \")"
        case .v1LineTooLong: "v1 line too long (no CRLF in the first 107 bytes)"
        case .v1BadProtocol: "v1 protocol is not TCP4, TCP6 or UNKNOWN"
        case .v1BadAddress(let field, let family): "v1 \(field) is not an \(family == .ipv4 ? "IPv4" : "IPv6") address"
        case .v1BadPort(let field): "v1 \(field) is not a number"
        case .v1PortLeadingZero(let field): "v1 \(field) has a leading zero"
        case .v1PortOutOfRange(let field): "v1 \(field) is out of range (0-65535)"
        case .v1ExpectedSpace(let field): "v1 \(field) is not followed by a single space"
        case .v1MissingCRLF: "v1 line does not end with CRLF"
        case .badV2Signature: "bad v2 signature"
        case .v2Version(let version): "unsupported v2 version \(version)"
        case .v2Command(let command): "unknown v2 command \(Self.hex(command))"
        case .v2Family(let family): "unknown v2 address family \(Self.hex(family))"
        case .v2Transport(let transport): "unknown v2 transport \(Self.hex(transport))"
        case .v2Datagram: "v2 DGRAM transport refused: the PROXY protocol is accepted on stream listeners only"
        case .v2FamilyTransport(let byte): "v2 family and transport \(Self.hex(byte)) do not go together"
        case .v2AddressTooShort(let length, let family):
            "address length \(length) too short for \(["AF_UNSPEC", "AF_INET", "AF_INET6", "AF_UNIX"][Int(family & 3)])"
        case .v2TooLong(let length, let limit): "v2 header of \(length) bytes exceeds the limit of \(limit)"
        case .tlvTruncated(let offset): "TLV at byte \(offset) is cut by the end of the header"
        case .tlvOverrun(let type): "TLV \(Self.hex(type)) overruns the header"
        case .tlvBadLength(let type, let length): "TLV \(Self.hex(type)) has a bad length \(length)"
        case .tlvDuplicate(let type): "TLV \(Self.hex(type)) appears twice"
        case .sslSubTLVOverrun(let type): "SSL sub-TLV \(Self.hex(type)) overruns the SSL TLV"
        case .crc32cMismatch(let sent, let computed): "CRC32C mismatch: the header says \(Self.hex(sent)), its bytes give \(Self.hex(computed))"
        }
    }

    private static func hex(_ byte: UInt8) -> String { "0x" + NumberText.hex(byte) }

    private static func hex(_ word: UInt32) -> String {
        "0x" + NumberText.hex(UInt8(word >> 24)) + NumberText.hex(UInt8(word >> 16 & 0xff)) + NumberText.hex(UInt8(word >> 8 & 0xff))
            + NumberText.hex(UInt8(word & 0xff))
    }
}
