// libFuzzer target: the PROXY protocol header parser (Fuzz/README.md). The input is the first bytes of a connection;
// it is parsed in each mode and with two v2 limits, whole and cut at every length before the decision.
// Properties: a complete header lies within the input and the limit, and its byte ranges within the header; `needMore`
// asks for more than it was given; a cut input decides nothing or decides what the whole input decides; `any` agrees
// with `v1` and `v2`; a v2 header encoded again from what was parsed parses to the same values.
import EchodProxyProtocol
import FuzzSupport

@main
enum FuzzProxyProtocol: FuzzTarget {
    static func fuzz(_ input: UnsafeRawBufferPointer) {
        let any = checked(input, .any, limit: ProxyHeaderParser.defaultV2Limit)
        let v1 = checked(input, .v1, limit: ProxyHeaderParser.defaultV2Limit)
        let v2 = checked(input, .v2, limit: ProxyHeaderParser.defaultV2Limit)
        _ = checked(input, .any, limit: 64)
        if case .complete(let header, _) = any {
            check((header.version == .v1 ? v1 : v2) == any, "mode any says \(any), the version's own mode does not")
            check((header.version == .v1 ? v2 : v1) == .invalid(.versionNotAccepted(header.version)), "the other mode accepts \(header.version)")
            if header.version == .v2 { reencode(header, input) }
        }
    }

    /// Parses `input` whole and cut, checks the properties that hold in every mode, returns the whole input's result.
    static func checked(_ input: UnsafeRawBufferPointer, _ mode: ProxyProtocolMode, limit: Int) -> ProxyHeaderParser.Result {
        let whole = ProxyHeaderParser.parse(input, mode: mode, v2Limit: limit)
        switch whole {
        case .needMore(let minimum):
            check(minimum > input.count, "needMore(\(minimum)) with \(input.count) bytes in hand")
        case .complete(let header, let consumed):
            check(consumed == header.length && consumed <= input.count, "consumed \(consumed) of \(input.count), header \(header.length)")
            check(consumed <= (header.version == .v1 ? ProxyHeaderParser.v1MaximumLength : limit), "\(consumed) bytes over the limit")
            checkRanges(header)
        case .invalid:
            break
        }
        // Every cut before the decision waits, asking for no more than the decision needed; the first that decides,
        // decides the same. Cuts before a v2 header's end return on its fixed part, so this stays linear.
        for count in 0...input.count {
            let cut = ProxyHeaderParser.parse(UnsafeRawBufferPointer(rebasing: input[0..<count]), mode: mode, v2Limit: limit)
            if case .needMore(let minimum) = cut {
                check(minimum > count, "a cut of \(count) bytes asks for \(minimum)")
                if case .complete(_, let consumed) = whole { check(minimum <= consumed, "a cut of \(count) asks for \(minimum), the header has \(consumed)") }
                continue
            }
            check(cut == whole, "a cut of \(count) bytes decides \(cut), the whole input \(whole)")
            break
        }
        return whole
    }

    static func checkRanges(_ header: ProxyHeader) {
        let inside = { (range: Range<Int>?) in
            check(range.map { $0.lowerBound >= 0 && $0.upperBound <= header.length } ?? true, "range \(range!) outside the header")
        }
        if case .unix(let source, let destination) = header.addresses {
            inside(source)
            inside(destination)
        }
        for range in [
            header.tlvs.alpn, header.tlvs.authority, header.tlvs.uniqueID, header.tlvs.netns, header.tlvs.ssl?.version, header.tlvs.ssl?.commonName,
            header.tlvs.ssl?.cipher,
        ] {
            inside(range)
        }
    }

    /// Encodes `header` again from its values (no unknown TLVs, a fresh checksum) and parses the encoding.
    static func reencode(_ header: ProxyHeader, _ input: UnsafeRawBufferPointer) {
        let encoded = V2Encoder.encode(header, from: input)
        let result = encoded.withUnsafeBytes { ProxyHeaderParser.parse($0, mode: .v2, v2Limit: ProxyHeaderParser.v2MaximumLength) }
        guard case .complete(let again, let consumed) = result else {
            check(false, "the encoding of \(header) does not parse: \(result)")
            return
        }
        check(consumed == encoded.count, "the encoding has \(encoded.count) bytes, the parser took \(consumed)")
        check(again.command == header.command, "command \(header.command) came back as \(again.command)")
        let bytes = Array(input[0..<header.length])
        switch (header.addresses, again.addresses) {
        case (.unix(let s1, let d1), .unix(let s2, let d2)):
            check(bytes[s1] == encoded[s2] && bytes[d1] == encoded[d2], "unix paths changed")
        default:
            check(header.addresses == again.addresses, "addresses \(header.addresses) came back as \(again.addresses)")
        }
        let same = { (a: Range<Int>?, b: Range<Int>?) -> Bool in a.map { bytes[$0] } == b.map { encoded[$0] } }
        check(same(header.tlvs.alpn, again.tlvs.alpn) && same(header.tlvs.authority, again.tlvs.authority), "ALPN or authority changed")
        check(same(header.tlvs.uniqueID, again.tlvs.uniqueID) && same(header.tlvs.netns, again.tlvs.netns), "unique id or netns changed")
        check((header.tlvs.crc32c == nil) == (again.tlvs.crc32c == nil), "CRC32C presence changed")
        check(header.tlvs.ssl?.client == again.tlvs.ssl?.client && header.tlvs.ssl?.verify == again.tlvs.ssl?.verify, "SSL flags changed")
        check(same(header.tlvs.ssl?.version, again.tlvs.ssl?.version) && same(header.tlvs.ssl?.commonName, again.tlvs.ssl?.commonName), "SSL changed")
        check(same(header.tlvs.ssl?.cipher, again.tlvs.ssl?.cipher), "SSL cipher changed")
    }
}

/// A v2 encoder from parsed values, for the round trip only (echod receives headers, it never sends one).
enum V2Encoder {
    static func encode(_ header: ProxyHeader, from input: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
        out.append(header.command == .local ? 0x20 : 0x21)
        var body: [UInt8] = []
        switch header.command == .local ? .none : header.addresses {
        case .none:
            out.append(0x00)
        case .inet(let source, let destination):
            out.append(source.family == .ipv4 ? 0x11 : 0x21)
            for address in [source, destination] {
                withUnsafeBytes(of: (address.high, address.low)) { body += $0.prefix(source.family == .ipv4 ? 4 : 16) }
            }
            body += be16(source.port) + be16(destination.port)
        case .unix(let source, let destination):
            out.append(0x31)
            for path in [source, destination] {
                body += input[path] + [UInt8](repeating: 0, count: 108 - path.count)
            }
        }
        func tlv(_ type: UInt8, _ range: Range<Int>?) {
            if let range { body += [type] + be16(UInt16(range.count)) + input[range] }
        }
        tlv(0x01, header.tlvs.alpn)
        tlv(0x02, header.tlvs.authority)
        tlv(0x05, header.tlvs.uniqueID)
        tlv(0x30, header.tlvs.netns)
        if let ssl = header.tlvs.ssl {
            var value: [UInt8] = [ssl.client] + be16(UInt16(ssl.verify >> 16)) + be16(UInt16(ssl.verify & 0xffff))
            for (type, range) in [(UInt8(0x21), ssl.version), (0x22, ssl.commonName), (0x23, ssl.cipher)] {
                if let range { value += [type] + be16(UInt16(range.count)) + input[range] }
            }
            body += [0x20] + be16(UInt16(value.count)) + value
        }
        var crcAt: Int?
        if header.tlvs.crc32c != nil {
            crcAt = out.count + 2 + body.count + 3  // after the length field and the TLV's type and length
            body += [0x03, 0, 4, 0, 0, 0, 0]
        }
        out += be16(UInt16(body.count)) + body
        if let crcAt {
            let crc = out.withUnsafeBytes { CRC32C.checksum($0) }
            out[crcAt..<crcAt + 4] = [UInt8(crc >> 24), UInt8(crc >> 16 & 0xff), UInt8(crc >> 8 & 0xff), UInt8(crc & 0xff)]
        }
        return out
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
}
