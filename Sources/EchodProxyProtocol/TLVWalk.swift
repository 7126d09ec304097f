/// v2's TLVs: type (1 byte), length (2 bytes, big-endian), value. Each must end inside the header; the ones echod
/// decodes are recorded as byte ranges, at most once each; NOOP and unknown types (the custom and experimental
/// ranges, AWS's and Azure's endpoint ids) are skipped.
enum TLVWalk {
    static let alpn: UInt8 = 0x01
    static let authority: UInt8 = 0x02
    static let crc32c: UInt8 = 0x03
    static let noop: UInt8 = 0x04
    static let uniqueID: UInt8 = 0x05
    static let ssl: UInt8 = 0x20
    static let netns: UInt8 = 0x30

    static let sslVersion: UInt8 = 0x21
    static let sslCommonName: UInt8 = 0x22
    static let sslCipher: UInt8 = 0x23

    /// Walks `header[start...]` (the whole header, so that a CRC32C covers it).
    static func walk(_ header: UnsafeRawBufferPointer, from start: Int, into tlvs: inout ProxyTLVs) throws(ProxyHeaderError) {
        var offset = start
        while offset < header.count {
            let (type, value) = try next(header, at: offset, end: header.count, overrun: ProxyHeaderError.tlvOverrun)
            offset = value.upperBound
            switch type {
            case alpn: try once(&tlvs.alpn, value, type)
            case authority:
                // A host name (TLS SNI) has at most 255 bytes.
                guard value.count <= 255 else { throw .tlvBadLength(type: type, length: value.count) }
                try once(&tlvs.authority, value, type)
            case uniqueID:
                // The specification's bound.
                guard value.count <= 128 else { throw .tlvBadLength(type: type, length: value.count) }
                try once(&tlvs.uniqueID, value, type)
            case netns: try once(&tlvs.netns, value, type)
            case crc32c:
                guard value.count == 4 else { throw .tlvBadLength(type: type, length: value.count) }
                guard tlvs.crc32c == nil else { throw .tlvDuplicate(type: type) }
                let sent =
                    UInt32(header[value.lowerBound]) << 24 | UInt32(header[value.lowerBound + 1]) << 16
                    | UInt32(header[value.lowerBound + 2]) << 8 | UInt32(header[value.lowerBound + 3])
                let computed = CRC32C.checksum(header, zeroing: value)
                guard sent == computed else { throw .crc32cMismatch(sent: sent, computed: computed) }
                tlvs.crc32c = sent
            case ssl:
                guard tlvs.ssl == nil else { throw .tlvDuplicate(type: type) }
                tlvs.ssl = try decodeSSL(header, value)
            default:
                break  // NOOP, and types echod does not use
            }
        }
    }

    /// The TLV at `offset`: its type and its value's range, which must end by `end`.
    private static func next(
        _ bytes: UnsafeRawBufferPointer, at offset: Int, end: Int, overrun: (UInt8) -> ProxyHeaderError
    ) throws(ProxyHeaderError) -> (UInt8, Range<Int>) {
        guard end - offset >= 3 else { throw .tlvTruncated(offset: offset) }
        let type = bytes[offset]
        let length = Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
        guard length <= end - offset - 3 else { throw overrun(type) }
        return (type, (offset + 3)..<(offset + 3 + length))
    }

    private static func once(_ slot: inout Range<Int>?, _ value: Range<Int>, _ type: UInt8) throws(ProxyHeaderError) {
        guard slot == nil else { throw .tlvDuplicate(type: type) }
        slot = value
    }

    /// PP2_TYPE_SSL: client flags (1 byte), verify (4 bytes, big-endian), then sub-TLVs inside the value.
    private static func decodeSSL(_ header: UnsafeRawBufferPointer, _ value: Range<Int>) throws(ProxyHeaderError) -> ProxySSL {
        guard value.count >= 5 else { throw .tlvBadLength(type: ssl, length: value.count) }
        let start = value.lowerBound
        let verify =
            UInt32(header[start + 1]) << 24 | UInt32(header[start + 2]) << 16 | UInt32(header[start + 3]) << 8
            | UInt32(header[start + 4])
        var result = ProxySSL(client: header[start], verify: verify)
        var offset = start + 5
        while offset < value.upperBound {
            let (type, sub) = try next(header, at: offset, end: value.upperBound, overrun: ProxyHeaderError.sslSubTLVOverrun)
            offset = sub.upperBound
            switch type {
            case sslVersion: try once(&result.version, sub, type)
            case sslCommonName: try once(&result.commonName, sub, type)
            case sslCipher: try once(&result.cipher, sub, type)
            default: break
            }
        }
        return result
    }
}
