// libFuzzer target: the PROXY protocol header parser and writer (Fuzz/README.md). The input is the first bytes of a
// connection; it is parsed in each mode and with two v2 limits, whole and cut at every length before the decision.
// Properties: a complete header lies within the input and the limit, and its byte ranges within the header; `needMore`
// asks for more than it was given; a cut input decides nothing or decides what the whole input decides; `any` agrees
// with `v1` and `v2`; a header written again by `ProxyHeaderWriter` from what was parsed parses to the same values.
// The same input, read as the writer's arguments (`WriterArguments`), gives a header the parser reads back equal.
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
            reencode(header, input)
        }
        roundTrip(WriterArguments(input))
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

    /// Writes `header` again from its values (no unknown TLVs, a fresh checksum) and parses what was written.
    static func reencode(_ header: ProxyHeader, _ input: UnsafeRawBufferPointer) {
        let addresses = ProxyHeaderWriter.Addresses(header.addresses, in: input)
        let tlvs = ProxyHeaderWriter.TLVs(header.tlvs, in: input)
        let written: [UInt8]
        do throws(ProxyHeaderWriter.Failure) {
            written = try header.version == .v1 ? ProxyHeaderWriter.v1(addresses) : ProxyHeaderWriter.v2(header.command, addresses, tlvs: tlvs)
        } catch {
            check(false, "the writer refuses what the parser accepted (\(header)): \(error)")
            return
        }
        expectReadBack(written, header.version, header.command, addresses, tlvs)
    }

    /// Writes the header the arguments describe; it must parse back to them (v1 refuses only Unix addresses).
    static func roundTrip(_ arguments: WriterArguments) {
        let written: [UInt8]
        do throws(ProxyHeaderWriter.Failure) {
            written =
                try arguments.version == .v1
                ? ProxyHeaderWriter.v1(arguments.addresses) : ProxyHeaderWriter.v2(arguments.command, arguments.addresses, tlvs: arguments.tlvs)
        } catch {
            guard case .unix = arguments.addresses, arguments.version == .v1, error == .unixInV1 else {
                check(false, "the writer refuses \(arguments): \(error)")
                return
            }
            return
        }
        let command = arguments.version == .v1 ? ProxyCommand.proxy : arguments.command
        let addresses = command == .local ? .unspecified : arguments.addresses
        expectReadBack(written, arguments.version, command, addresses, arguments.version == .v1 ? ProxyHeaderWriter.TLVs() : arguments.tlvs)
    }

    /// `written` is exactly one header of `version` that says `command`, `addresses` and `tlvs`.
    static func expectReadBack(
        _ written: [UInt8], _ version: ProxyVersion, _ command: ProxyCommand, _ addresses: ProxyHeaderWriter.Addresses, _ tlvs: ProxyHeaderWriter.TLVs
    ) {
        let result = ProxyHeaderParser.parse(written, mode: version == .v1 ? .v1 : .v2, v2Limit: ProxyHeaderParser.v2MaximumLength)
        guard case .complete(let again, let consumed) = result else {
            check(false, "the writer's \(written) does not parse: \(result)")
            return
        }
        check(consumed == written.count, "the writer wrote \(written.count) bytes, the parser took \(consumed)")
        check(again.version == version && again.command == command, "\(version) \(command) came back as \(again.version) \(again.command)")
        written.withUnsafeBytes { bytes in
            let back = ProxyHeaderWriter.Addresses(again.addresses, in: bytes)
            check(back == addresses, "addresses \(addresses) came back as \(back)")
            let backTLVs = ProxyHeaderWriter.TLVs(again.tlvs, in: bytes)
            check(backTLVs == tlvs, "TLVs \(tlvs) came back as \(backTLVs)")
        }
    }
}

/// The fuzz input read as the writer's arguments: a flags byte (version, command, family, Unix abstract names, which
/// TLVs), then the addresses' bytes and each TLV's length and bytes, zeros once the input runs out. Shaped into what
/// the parser can read back equal: lengths within the TLVs' bounds, Unix paths without NULs after their first byte
/// and not ending in one.
struct WriterArguments: CustomStringConvertible {
    var version: ProxyVersion
    var command: ProxyCommand
    var addresses: ProxyHeaderWriter.Addresses
    var tlvs = ProxyHeaderWriter.TLVs()

    init(_ input: UnsafeRawBufferPointer) {
        var reader = Reader(input: input)
        let flags = reader.byte()
        let tlvFlags = reader.byte()
        version = flags & 1 == 0 ? .v1 : .v2
        command = flags & 2 == 0 ? .proxy : .local
        switch flags >> 2 & 3 {
        case 0:
            addresses = .unspecified
        case 1:
            let source = ProxyAddress(ipv4: reader.uint32(), port: reader.uint16())
            addresses = .inet(source: source, destination: ProxyAddress(ipv4: reader.uint32(), port: reader.uint16()))
        case 2:
            let source = ProxyAddress(ipv6: reader.uint128(), port: reader.uint16())
            addresses = .inet(source: source, destination: ProxyAddress(ipv6: reader.uint128(), port: reader.uint16()))
        default:
            addresses = .unix(source: reader.path(abstract: flags & 16 != 0), destination: reader.path(abstract: flags & 32 != 0))
        }
        if tlvFlags & 1 != 0 { tlvs.alpn = reader.bytes(Int(reader.byte())) }
        if tlvFlags & 2 != 0 { tlvs.authority = reader.bytes(Int(reader.byte())) }
        if tlvFlags & 4 != 0 { tlvs.uniqueID = reader.bytes(Int(reader.byte()) % 129) }
        if tlvFlags & 8 != 0 { tlvs.netns = reader.bytes(Int(reader.byte())) }
        if tlvFlags & 16 != 0 {
            var ssl = ProxyHeaderWriter.SSL(client: reader.byte(), verify: reader.uint32())
            if tlvFlags & 32 != 0 { ssl.version = reader.bytes(Int(reader.byte())) }
            if tlvFlags & 64 != 0 { ssl.commonName = reader.bytes(Int(reader.byte())) }
            if flags & 64 != 0 { ssl.cipher = reader.bytes(Int(reader.byte())) }
            tlvs.ssl = ssl
        }
        tlvs.crc32c = tlvFlags & 128 != 0
    }

    var description: String { "\(version) \(command) \(addresses) \(tlvs)" }

    struct Reader {
        let input: UnsafeRawBufferPointer
        var position = 0

        mutating func byte() -> UInt8 {
            defer { position += 1 }
            return position < input.count ? input[position] : 0
        }

        mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in byte() } }
        mutating func uint16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }
        mutating func uint32() -> UInt32 { UInt32(uint16()) << 16 | UInt32(uint16()) }
        mutating func uint128() -> UInt128 { (0..<4).reduce(UInt128(0)) { value, _ in value << 32 | UInt128(uint32()) } }

        /// A path the parser reads back whole: no NUL in it, or (abstract) a leading NUL and a name not ending in one.
        mutating func path(abstract: Bool) -> [UInt8] {
            let name = bytes(Int(byte()) % (abstract ? 108 : 109)).map { $0 == 0 ? 1 : $0 }
            return abstract ? [0] + (name.isEmpty ? [1] : name) : name
        }
    }
}
