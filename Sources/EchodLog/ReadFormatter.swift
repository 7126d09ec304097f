import CSystemd
import EchodSystem
import Glibc

/// Renders read records (``ReadRecord``) on the writer thread: straight into a stack buffer with raw stores, then
/// one copy into the output. No String, no metadata dictionary, no sorting, no `printf`.
///
/// Same shape as the generic formatter's output for a record with metadata `bytes`, `data`, `loop`, `peer` (keys
/// in that, sorted, order), except that `data` (the escaped preview of the bytes read) is always quoted in text,
/// and `bytes` and `loop` are JSON numbers.
enum ReadFormatter {
    /// Upper bound of what follows the label prefix in either format (the preview at 5 bytes per byte in JSON, an
    /// IPv6 peer with brackets and port, two integers, the fixed keys).
    static let maxTail = 24 + 20 + 12 + ReadRecord.previewCapacity * 5 + 3 + 12 + 11 + 12 + 48 + 6 + 8

    // MARK: text and JSON

    /// `<ts> info <label>: read bytes=N data="<preview>" loop=N peer=<addr>\n`
    static func appendText(_ record: ReadRecord, label: ReadLabel, to out: inout [UInt8]) {
        label.textPrefix.withUnsafeBufferPointer { prefix in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: prefix.count + maxTail) { buffer in
                var w = RawBytes(buffer.baseAddress!)
                w.timestamp(seconds: record.seconds, nanoseconds: Int(record.nanoseconds))
                w.put(prefix)
                w.decimal(record.totalBytes)
                w.put(#" data=""#)
                w.preview(record, json: false)
                w.put(#"" loop="#)
                w.decimal(Int(record.loop))
                w.put(" peer=")
                w.peer(record)
                w.put(UInt8(ascii: "\n"))
                out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[0..<w.count(from: buffer.baseAddress!)]))
            }
        }
    }

    /// `{"ts":"<ts>","level":"info","label":"<label>","msg":"read","bytes":N,"data":"<preview>","loop":N,"peer":"<addr>"}\n`
    static func appendJSON(_ record: ReadRecord, label: ReadLabel, to out: inout [UInt8]) {
        label.jsonPrefix.withUnsafeBufferPointer { prefix in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: prefix.count + maxTail) { buffer in
                var w = RawBytes(buffer.baseAddress!)
                w.put(#"{"ts":""#)
                w.timestamp(seconds: record.seconds, nanoseconds: Int(record.nanoseconds))
                w.put(prefix)
                w.decimal(record.totalBytes)
                w.put(#","data":""#)
                w.preview(record, json: true)
                w.put(#"","loop":"#)
                w.decimal(Int(record.loop))
                w.put(#","peer":""#)
                w.peer(record)
                w.put("\"}\n")
                out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[0..<w.count(from: buffer.baseAddress!)]))
            }
        }
    }

    // MARK: journal

    /// Calls `body` with the record's journal fields as iovecs: MESSAGE=read, PRIORITY=6, SYSLOG_IDENTIFIER,
    /// CODE_FILE/LINE/FUNC, ECHOD_LABEL (all fixed per ``ReadLabel``), then ECHOD_BYTES, ECHOD_DATA (the preview
    /// text, unquoted), ECHOD_LOOP, ECHOD_PEER. The iovecs point into `label` and a stack buffer: valid in `body` only.
    static func withJournalFields<R>(
        _ record: ReadRecord, label: ReadLabel, _ body: (UnsafeMutableBufferPointer<iovec>) -> R
    ) -> R {
        label.journalFixed.withUnsafeBufferPointer { fixed in
            withUnsafeTemporaryAllocation(of: iovec.self, capacity: label.journalFixedRanges.count + 4) { iov in
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: maxTail + 64) { buffer in
                    let fixedBase = UnsafeMutableRawPointer(mutating: fixed.baseAddress)
                    var n = 0
                    for range in label.journalFixedRanges {
                        iov[n] = iovec(iov_base: fixedBase.map { $0 + range.lowerBound }, iov_len: range.count)
                        n += 1
                    }
                    let base = buffer.baseAddress!
                    var w = RawBytes(base)
                    func field(_ write: (inout RawBytes) -> Void) {
                        let start = w.p
                        write(&w)
                        iov[n] = iovec(iov_base: UnsafeMutableRawPointer(start), iov_len: w.p - start)
                        n += 1
                    }
                    field {
                        $0.put("ECHOD_BYTES=")
                        $0.decimal(record.totalBytes)
                    }
                    field {
                        $0.put("ECHOD_DATA=")
                        $0.preview(record, json: false)
                    }
                    field {
                        $0.put("ECHOD_LOOP=")
                        $0.decimal(Int(record.loop))
                    }
                    field {
                        $0.put("ECHOD_PEER=")
                        $0.peer(record)
                    }
                    return body(UnsafeMutableBufferPointer(rebasing: iov[0..<n]))
                }
            }
        }
    }

    /// Sends the record to journald; 0 or a negative errno (like ``JournalFields/send(_:)``).
    static func sendJournal(_ record: ReadRecord, label: ReadLabel) -> Int32 {
        withJournalFields(record, label: label) { iov in
            sd_journal_sendv(iov.baseAddress, Int32(iov.count))
        }
    }
}

/// A cursor writing bytes through a raw pointer; the caller guarantees the room (see ``ReadFormatter/maxTail``).
struct RawBytes {
    var p: UnsafeMutablePointer<UInt8>

    @inline(__always)
    init(_ p: UnsafeMutablePointer<UInt8>) { self.p = p }

    @inline(__always)
    func count(from start: UnsafeMutablePointer<UInt8>) -> Int { p - start }

    @inline(__always)
    mutating func put(_ byte: UInt8) {
        p.pointee = byte
        p += 1
    }

    @inline(__always)
    mutating func put(_ string: StaticString) {
        let n = string.utf8CodeUnitCount
        p.update(from: string.utf8Start, count: n)
        p += n
    }

    @inline(__always)
    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
        if let base = bytes.baseAddress {
            p.update(from: base, count: bytes.count)
            p += bytes.count
        }
    }

    /// Unsigned decimal, no leading zeros.
    @inline(__always)
    mutating func decimal(_ value: UInt) {
        var digits = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        var v = value
        var i = digits
        while i > 0 {
            i -= 1
            p[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
            v /= 10
        }
        p += digits
    }

    /// Signed decimal, as `Int.description` prints it.
    @inline(__always)
    mutating func decimal(_ value: Int) {
        if value < 0 { put(UInt8(ascii: "-")) }
        decimal(value.magnitude)
    }

    /// `count` digits, zero-padded, higher digits cut off (negative values as zeros): the timestamp fields.
    @inline(__always)
    mutating func fixedDigits(_ value: Int, count: Int) {
        var v = max(value, 0)
        var i = count
        while i > 0 {
            i -= 1
            p[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
            v /= 10
        }
        p += count
    }

    /// ISO-8601 UTC with milliseconds, exactly 24 bytes; see ``LogFormatter/appendTimestamp(seconds:nanoseconds:to:)``.
    mutating func timestamp(seconds: Int, nanoseconds: Int) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)

        fixedDigits(year, count: 4)
        put(UInt8(ascii: "-"))
        fixedDigits(month, count: 2)
        put(UInt8(ascii: "-"))
        fixedDigits(day, count: 2)
        put(UInt8(ascii: "T"))
        fixedDigits(secondOfDay / 3600, count: 2)
        put(UInt8(ascii: ":"))
        fixedDigits(secondOfDay / 60 % 60, count: 2)
        put(UInt8(ascii: ":"))
        fixedDigits(secondOfDay % 60, count: 2)
        put(UInt8(ascii: "."))
        fixedDigits(min(max(nanoseconds, 0), 999_999_999) / 1_000_000, count: 3)
        put(UInt8(ascii: "Z"))
    }

    // MARK: preview

    /// One character of the preview text; in JSON, `\` and `"` get a backslash (JSON escaping of that text).
    @inline(__always)
    private mutating func previewChar(_ c: UInt8, json: Bool) {
        if json && (c == 0x5C || c == 0x22) { put(0x5C) }
        put(c)
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 0x30 &+ nibble : 0x57 &+ nibble
    }

    /// The preview text: printable ASCII as is; `\n`, `\r`, `\t`, `\\`, `\"` escaped; other bytes `\xNN`; `…` when
    /// truncated. With `json`, that text JSON-escaped (at most 5 bytes per input byte).
    mutating func preview(_ record: ReadRecord, json: Bool) {
        var bytes = record.preview
        let count = Int(record.previewCount)
        withUnsafeBytes(of: &bytes) { raw in
            for i in 0..<min(count, ReadRecord.previewCapacity) {
                let b = raw[i]
                switch b {
                case 0x0A:
                    previewChar(0x5C, json: json)
                    put(UInt8(ascii: "n"))
                case 0x0D:
                    previewChar(0x5C, json: json)
                    put(UInt8(ascii: "r"))
                case 0x09:
                    previewChar(0x5C, json: json)
                    put(UInt8(ascii: "t"))
                case 0x5C, 0x22:
                    previewChar(0x5C, json: json)
                    previewChar(b, json: json)
                case 0x20..<0x7F:
                    put(b)
                default:
                    previewChar(0x5C, json: json)
                    put(UInt8(ascii: "x"))
                    put(Self.hexDigit(b >> 4))
                    put(Self.hexDigit(b & 0xF))
                }
            }
        }
        if record.truncated {
            // U+2026 HORIZONTAL ELLIPSIS (a one-scalar StaticString would have no UTF-8 pointer).
            put(0xE2)
            put(0x80)
            put(0xA6)
        }
    }

    // MARK: addresses

    mutating func peer(_ record: ReadRecord) {
        peer(family: record.family, port: record.port, high: record.high, low: record.low)
    }

    /// `a.b.c.d:port` or `[v6]:port`, exactly as glibc's `inet_ntop` (what `SocketAddress.description` uses) writes
    /// the address, without its `sprintf`; a Unix-socket peer as `SocketAddress.description` writes it,
    /// `unix:uid:1000,pid:4242` (uid in the low 32 bits of `high`, pid in those of `low`).
    mutating func peer(family: UInt8, port: UInt16, high: UInt64, low: UInt64) {
        if family == 2 {
            put("unix:uid:")
            decimal(UInt(UInt32(truncatingIfNeeded: high)))
            put(",pid:")
            decimal(UInt(UInt32(truncatingIfNeeded: low)))
            return
        }
        if family == 0 {
            ipv4(UInt32(truncatingIfNeeded: high))
        } else {
            put(UInt8(ascii: "["))
            ipv6(high: high, low: low)
            put(UInt8(ascii: "]"))
        }
        put(UInt8(ascii: ":"))
        decimal(UInt(port))
    }

    /// `in_addr.s_addr` (network order in memory): the first byte in memory is the first octet.
    mutating func ipv4(_ sAddr: UInt32) {
        withUnsafeBytes(of: sAddr) { octets in
            for i in 0..<4 {
                if i > 0 { put(UInt8(ascii: ".")) }
                decimal(UInt(octets[i]))
            }
        }
    }

    /// RFC 5952 text as glibc's `inet_ntop6` writes it: lower-case hex groups without leading zeros; the longest run
    /// of two or more zero groups (the first of equal runs) as `::`; IPv4-mapped (`::ffff:a.b.c.d`) and
    /// IPv4-compatible (`::a.b.c.d`, when the run is exactly the first six groups) with a dotted quad.
    mutating func ipv6(high: UInt64, low: UInt64) {
        var address = (high, low)
        withUnsafeBytes(of: &address) { bytes in
            @inline(__always) func word(_ i: Int) -> UInt16 { UInt16(bytes[2 * i]) << 8 | UInt16(bytes[2 * i + 1]) }
            var bestBase = -1
            var bestLength = 0
            var currentBase = -1
            var currentLength = 0
            for i in 0..<8 {
                if word(i) == 0 {
                    if currentBase == -1 {
                        currentBase = i
                        currentLength = 1
                    } else {
                        currentLength += 1
                    }
                } else if currentBase != -1 {
                    if bestBase == -1 || currentLength > bestLength {
                        bestBase = currentBase
                        bestLength = currentLength
                    }
                    currentBase = -1
                }
            }
            if currentBase != -1 && (bestBase == -1 || currentLength > bestLength) {
                bestBase = currentBase
                bestLength = currentLength
            }
            if bestBase != -1 && bestLength < 2 { bestBase = -1 }

            var i = 0
            while i < 8 {
                if bestBase != -1 && i >= bestBase && i < bestBase + bestLength {
                    if i == bestBase { put(UInt8(ascii: ":")) }
                    i += 1
                    continue
                }
                if i != 0 { put(UInt8(ascii: ":")) }
                if i == 6 && bestBase == 0 && (bestLength == 6 || (bestLength == 5 && word(5) == 0xFFFF)) {
                    for k in 12..<16 {
                        if k > 12 { put(UInt8(ascii: ".")) }
                        decimal(UInt(bytes[k]))
                    }
                    return
                }
                hex(word(i))
                i += 1
            }
            if bestBase != -1 && bestBase + bestLength == 8 { put(UInt8(ascii: ":")) }
        }
    }

    /// Lower-case hex without leading zeros (`%x`).
    @inline(__always)
    private mutating func hex(_ value: UInt16) {
        var shift = 12
        while shift > 0 && (value >> UInt16(shift)) == 0 { shift -= 4 }
        while shift >= 0 {
            put(Self.hexDigit(UInt8(truncatingIfNeeded: (value >> UInt16(shift)) & 0xF)))
            shift -= 4
        }
    }
}
