import EchodProxyProtocol
import Testing

/// Builds v2 headers field by field, valid or not, for the tests.
struct V2Header {
    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    var versionCommand: UInt8 = 0x21
    var familyTransport: UInt8 = 0x11
    var addresses: [UInt8] = []
    var tlvs: [UInt8] = []
    /// Overrides the length field (the true length otherwise).
    var length: Int?
    /// Adds a CRC32C TLV last and fills it with the right checksum (or `crcOverride`).
    var crc = false
    var crcOverride: UInt32?

    static func ipv4(_ a: [UInt8], _ b: [UInt8], _ sport: UInt16, _ dport: UInt16) -> [UInt8] {
        a + b + be16(sport) + be16(dport)
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }

    static func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] { [type] + be16(UInt16(value.count)) + value }

    var bytes: [UInt8] {
        var body = addresses + tlvs
        var crcAt: Int?
        if crc {
            crcAt = 16 + body.count + 3
            body += Self.tlv(0x03, [0, 0, 0, 0])
        }
        var out = Self.signature + [versionCommand, familyTransport] + Self.be16(UInt16(length ?? body.count)) + body
        if let crcAt {
            let value = crcOverride ?? out.withUnsafeBytes { CRC32C.checksum($0) }
            out[crcAt..<crcAt + 4] = [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)][...]
        }
        return out
    }
}

func parse(_ bytes: [UInt8], _ mode: ProxyProtocolMode = .any, v2Limit: Int = ProxyHeaderParser.defaultV2Limit) -> ProxyHeaderParser.Result {
    ProxyHeaderParser.parse(bytes, mode: mode, v2Limit: v2Limit)
}

func parse(_ text: String, _ mode: ProxyProtocolMode = .any) -> ProxyHeaderParser.Result {
    parse(Array(text.utf8), mode)
}

func header(_ result: ProxyHeaderParser.Result, sourceLocation: SourceLocation = #_sourceLocation) -> ProxyHeader? {
    guard case .complete(let header, let consumed) = result else {
        Issue.record("expected a complete header, got \(result)", sourceLocation: sourceLocation)
        return nil
    }
    #expect(consumed == header.length, sourceLocation: sourceLocation)
    return header
}

func inet(_ source: ProxyAddress, _ destination: ProxyAddress) -> ProxyAddresses {
    .inet(source: source, destination: destination)
}

func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) -> ProxyAddress {
    ProxyAddress(ipv4: UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d), port: port)
}

func text(_ range: Range<Int>?, in bytes: [UInt8]) -> String? {
    range.map { String(decoding: bytes[$0], as: UTF8.self) }
}

/// Feeds `bytes` one more byte at a time from the start, as reads would deliver them: every prefix before the decision
/// must be `needMore` with a minimum beyond it (and no later than the decision), and the decision must be the whole
/// input's.
func expectSameAtEverySplit(_ bytes: [UInt8], _ mode: ProxyProtocolMode = .any, sourceLocation: SourceLocation = #_sourceLocation) {
    let whole = parse(bytes, mode)
    var decidedAt: Int?
    for count in 0...bytes.count {
        let result = parse(Array(bytes[..<count]), mode)
        if case .needMore(let minimum) = result {
            #expect(minimum > count, "prefix \(count): needMore(\(minimum))", sourceLocation: sourceLocation)
            continue
        }
        decidedAt = decidedAt ?? count
        #expect(result == whole, "prefix of \(count) bytes decides \(result), the whole input \(whole)", sourceLocation: sourceLocation)
    }
    if let decidedAt {
        for count in 0..<decidedAt {
            if case .needMore(let minimum) = parse(Array(bytes[..<count]), mode) {
                #expect(minimum <= decidedAt, "prefix \(count) asks for \(minimum) bytes, the decision came at \(decidedAt)", sourceLocation: sourceLocation)
            }
        }
    }
}
