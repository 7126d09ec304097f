// Readers of the formatters' output, written from the escaping rules documented in LogFormatters.swift (not from its
// code): what a log consumer would write. The property tests check that these get back exactly what was logged.

/// Decodes escaped text: `\\`, `\"`, `\n`, `\r`, `\t`, `\uXXXX` (four lower-case hex digits, no surrogates), and with
/// `json` also `\b`, `\f`, `\/` and upper-case hex. nil for any other escape, a truncated one, or invalid UTF-8.
func unescape(_ bytes: some Collection<UInt8>, json: Bool) -> String? {
    let bytes = Array(bytes)
    var out = String.UnicodeScalarView()
    var raw: [UInt8] = []
    func flushRaw() -> Bool {
        guard !raw.isEmpty else { return true }
        guard let text = String(validating: raw, as: UTF8.self) else { return false }
        out.append(contentsOf: text.unicodeScalars)
        raw.removeAll()
        return true
    }
    var i = 0
    while i < bytes.count {
        guard bytes[i] == UInt8(ascii: "\\") else {
            raw.append(bytes[i])
            i += 1
            continue
        }
        guard flushRaw(), i + 1 < bytes.count else { return nil }
        let escaped: Unicode.Scalar
        switch bytes[i + 1] {
        case UInt8(ascii: "\\"): escaped = "\\"
        case UInt8(ascii: "\""): escaped = "\""
        case UInt8(ascii: "n"): escaped = "\n"
        case UInt8(ascii: "r"): escaped = "\r"
        case UInt8(ascii: "t"): escaped = "\t"
        case UInt8(ascii: "b") where json: escaped = "\u{08}"
        case UInt8(ascii: "f") where json: escaped = "\u{0C}"
        case UInt8(ascii: "/") where json: escaped = "/"
        case UInt8(ascii: "u"):
            guard i + 6 <= bytes.count, let v = hexValue(bytes[(i + 2)..<(i + 6)], upperCaseToo: json),
                let scalar = Unicode.Scalar(v)
            else { return nil }
            escaped = scalar
            i += 4
        default:
            return nil
        }
        out.append(escaped)
        i += 2
    }
    guard flushRaw() else { return nil }
    return String(out)
}

private func hexValue(_ digits: ArraySlice<UInt8>, upperCaseToo: Bool) -> UInt32? {
    var value: UInt32 = 0
    for d in digits {
        switch d {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): value = value << 4 | UInt32(d - 0x30)
        case UInt8(ascii: "a")...UInt8(ascii: "f"): value = value << 4 | UInt32(d - 0x57)
        case UInt8(ascii: "A")...UInt8(ascii: "F") where upperCaseToo: value = value << 4 | UInt32(d - 0x37)
        default: return nil
        }
    }
    return value
}

/// The documented rule for a text key or value printed bare: non-empty, and no ASCII control, space, `"`, `=`, `\`,
/// DEL, C1 control, line/paragraph separator or other Unicode white space.
func isBareToken(_ string: String) -> Bool {
    !string.isEmpty
        && string.unicodeScalars.allSatisfy { s in
            let v = s.value
            return
                !(v <= 0x20 || v == 0x22 || v == 0x3D || v == 0x5C || (0x7F...0x9F).contains(v) || v == 0x2028
                || v == 0x2029 || s.properties.isWhitespace)
        }
}

/// The ` key=value key2="quoted value"` tail of a text line, split as a reader would: a bare token runs to the next
/// space (a key also to `=`), a quoted one to the next `"` not escaped. Each pair is decoded, with whether each token
/// was quoted. nil when the bytes do not have that shape.
func metadataTokens(_ bytes: ArraySlice<UInt8>) -> [(key: String, value: String, keyQuoted: Bool, valueQuoted: Bool)]? {
    var result: [(key: String, value: String, keyQuoted: Bool, valueQuoted: Bool)] = []
    var i = bytes.startIndex
    func token(stopAtEquals: Bool) -> (String, Bool)? {
        if i < bytes.endIndex && bytes[i] == UInt8(ascii: "\"") {
            var j = i + 1
            while j < bytes.endIndex && bytes[j] != UInt8(ascii: "\"") {
                j += bytes[j] == UInt8(ascii: "\\") ? 2 : 1
            }
            guard j < bytes.endIndex, let text = unescape(bytes[(i + 1)..<j], json: false) else { return nil }
            i = j + 1
            return (text, true)
        }
        let start = i
        while i < bytes.endIndex && bytes[i] != UInt8(ascii: " ") && !(stopAtEquals && bytes[i] == UInt8(ascii: "=")) {
            i += 1
        }
        guard let text = String(validating: bytes[start..<i], as: UTF8.self) else { return nil }
        return (text, false)
    }
    while i < bytes.endIndex {
        guard bytes[i] == UInt8(ascii: " ") else { return nil }
        i += 1
        guard let (key, keyQuoted) = token(stopAtEquals: true), i < bytes.endIndex, bytes[i] == UInt8(ascii: "=")
        else { return nil }
        i += 1
        guard let (value, valueQuoted) = token(stopAtEquals: false) else { return nil }
        result.append((key, value, keyQuoted, valueQuoted))
    }
    return result
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` back to seconds since the epoch and milliseconds, with Howard Hinnant's
/// `days_from_civil` (the inverse of what the formatter uses). nil when the text does not have that shape.
func parseTimestamp(_ text: some Collection<UInt8>) -> (seconds: Int, milliseconds: Int)? {
    let t = Array(text)
    guard t.count == 24 else { return nil }
    for (i, c) in [(4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "."), (23, "Z")] where t[i] != UInt8(ascii: Unicode.Scalar(c)!) {
        return nil
    }
    func number(_ range: Range<Int>) -> Int? {
        var v = 0
        for d in t[range] {
            guard d >= 0x30 && d <= 0x39 else { return nil }
            v = v * 10 + Int(d - 0x30)
        }
        return v
    }
    guard var year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
        let minute = number(14..<16), let second = number(17..<19), let millis = number(20..<23),
        (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 60
    else { return nil }
    year -= month <= 2 ? 1 : 0
    let era = (year >= 0 ? year : year - 399) / 400
    let yearOfEra = year - era * 400
    let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    let days = era * 146_097 + dayOfEra - 719_468
    return (days * 86_400 + hour * 3600 + minute * 60 + second, millis)
}
