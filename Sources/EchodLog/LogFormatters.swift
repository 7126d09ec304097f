import Logging

/// Renders records as bytes for the `text` and `json` formats. Runs on the writer thread only (this is where
/// `.stringConvertible` metadata values get their `description` called).
///
/// Output is always valid UTF-8 (Swift strings are; invalid input was already repaired to U+FFFD when the string was
/// made) and never contains a raw control character, so one record is always exactly one line.
enum LogFormatter {
    // MARK: text

    /// `2024-05-01T12:00:00.123Z info echod.echo: message key=value key2="two words"`
    ///
    /// The message is printed bare with control characters and backslashes escaped; keys and values are printed bare
    /// when they are "simple" and otherwise double-quoted with escapes (see ``appendTextToken(_:to:)``).
    static func appendText(_ record: LogRecord, to out: inout [UInt8]) {
        appendTimestamp(seconds: record.seconds, nanoseconds: record.nanoseconds, to: &out)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: record.level.rawValue.utf8)
        if !record.label.isEmpty {
            out.append(UInt8(ascii: " "))
            appendEscaped(record.label, quote: false, to: &out)
        }
        out.append(UInt8(ascii: ":"))
        out.append(UInt8(ascii: " "))
        appendEscaped(record.event.message.description, quote: false, to: &out)
        for (key, value) in record.renderedMetadataEntries() {
            out.append(UInt8(ascii: " "))
            appendTextToken(key, to: &out)
            out.append(UInt8(ascii: "="))
            appendTextToken(textValue(value), to: &out)
        }
        out.append(UInt8(ascii: "\n"))
    }

    /// A metadata value as one string: nested arrays / dictionaries in swift-log's bracket notation
    /// (dictionary keys sorted, for stable output).
    static func textValue(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let string):
            return string
        case .stringConvertible(let convertible):
            return convertible.description
        case .array(let array):
            return "[" + array.map { textValue($0) }.joined(separator: ", ") + "]"
        case .dictionary(let dictionary):
            if dictionary.isEmpty { return "[:]" }
            return "["
                + dictionary.sorted { $0.key < $1.key }.map { "\($0.key): \(textValue($0.value))" }
                .joined(separator: ", ") + "]"
        }
    }

    /// A key or value: bare when non-empty and made only of printable characters other than space, `"`, `=`, `\`;
    /// otherwise quoted, so that `key=value` pairs always split unambiguously.
    static func appendTextToken(_ string: String, to out: inout [UInt8]) {
        var utf8 = string
        utf8.withUTF8 { bytes in
            if isSimpleToken(bytes, string) {
                out.append(contentsOf: bytes)
            } else {
                out.append(UInt8(ascii: "\""))
                appendEscapedUTF8(bytes, escapeQuote: true, json: false, to: &out)
                out.append(UInt8(ascii: "\""))
            }
        }
    }

    /// Non-empty, no ASCII control, space, `"`, `=`, `\`, DEL; no C1 control, line/paragraph separator or other
    /// Unicode white space. The byte scan decides for ASCII; `string` is decoded only when it has non-ASCII bytes.
    private static func isSimpleToken(_ bytes: UnsafeBufferPointer<UInt8>, _ string: String) -> Bool {
        guard !bytes.isEmpty else { return false }
        var ascii = true
        for b in bytes {
            if b >= 0x80 {
                ascii = false
            } else if b <= 0x20 || b == 0x22 || b == 0x3D || b == 0x5C || b == 0x7F {
                return false
            }
        }
        if ascii { return true }
        for scalar in string.unicodeScalars where scalar.value >= 0x80 {
            if needsEscape(scalar.value) || scalar.properties.isWhitespace { return false }
        }
        return true
    }

    /// Escapes backslash and control characters (and `"` when quoting); everything else is copied as UTF-8.
    static func appendEscaped(_ string: String, quote: Bool, to out: inout [UInt8]) {
        if quote { out.append(UInt8(ascii: "\"")) }
        var string = string
        string.withUTF8 { appendEscapedUTF8($0, escapeQuote: quote, json: false, to: &out) }
        if quote { out.append(UInt8(ascii: "\"")) }
    }

    /// The escaping shared by text and JSON, on the UTF-8 bytes of a (valid UTF-8) string, copying unescaped runs
    /// in bulk:
    /// - `\` → `\\`, `"` → `\"` (when `escapeQuote`), LF/CR/TAB → `\n` `\r` `\t`, and in JSON BS/FF → `\b` `\f`;
    /// - other C0 controls, DEL, C1 controls (UTF-8 `C2 80`–`C2 9F`) and U+2028/U+2029 (`E2 80 A8`/`A9`) → `\uXXXX`;
    /// - every other byte as is.
    static func appendEscapedUTF8(
        _ bytes: UnsafeBufferPointer<UInt8>, escapeQuote: Bool, json: Bool, to out: inout [UInt8]
    ) {
        let n = bytes.count
        var runStart = 0
        var i = 0
        while i < n {
            let b = bytes[i]
            var length = 1
            var scalar = UInt32(b)
            if b >= 0x20 && b < 0x7F {
                if b != 0x5C && (b != 0x22 || !escapeQuote) {
                    i += 1
                    continue
                }
            } else if b >= 0x80 {
                if b == 0xC2 && i + 1 < n && bytes[i + 1] <= 0x9F {
                    scalar = UInt32(bytes[i + 1])
                    length = 2
                } else if b == 0xE2 && i + 2 < n && bytes[i + 1] == 0x80 && (bytes[i + 2] == 0xA8 || bytes[i + 2] == 0xA9) {
                    scalar = bytes[i + 2] == 0xA8 ? 0x2028 : 0x2029
                    length = 3
                } else {
                    i += 1
                    continue
                }
            }
            if runStart < i { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i])) }
            switch scalar {
            case 0x5C, 0x22:
                out.append(0x5C)
                out.append(b)
            case 0x0A:
                out.append(0x5C)
                out.append(UInt8(ascii: "n"))
            case 0x0D:
                out.append(0x5C)
                out.append(UInt8(ascii: "r"))
            case 0x09:
                out.append(0x5C)
                out.append(UInt8(ascii: "t"))
            case 0x08 where json:
                out.append(0x5C)
                out.append(UInt8(ascii: "b"))
            case 0x0C where json:
                out.append(0x5C)
                out.append(UInt8(ascii: "f"))
            default:
                appendUnicodeEscape(scalar, to: &out)
            }
            i += length
            runStart = i
        }
        if runStart < n { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<n])) }
    }

    // MARK: json

    /// One JSON object and a newline: `{"ts":"...","level":"info","label":"...","msg":"...",<metadata>}`.
    ///
    /// Metadata keys come after the fixed keys, sorted; a metadata key that collides with a fixed key is written as
    /// `meta.<key>` so that every object has unique keys. Nested arrays/dictionaries become JSON arrays/objects,
    /// `.stringConvertible` values JSON strings.
    static func appendJSON(_ record: LogRecord, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"ts":""#.utf8)
        appendTimestamp(seconds: record.seconds, nanoseconds: record.nanoseconds, to: &out)
        out.append(contentsOf: #"","level":""#.utf8)
        out.append(contentsOf: record.level.rawValue.utf8)
        out.append(contentsOf: #"","label":"#.utf8)
        appendJSONString(record.label, to: &out)
        out.append(contentsOf: #","msg":"#.utf8)
        appendJSONString(record.event.message.description, to: &out)
        for (key, value) in record.renderedMetadataEntries() {
            out.append(UInt8(ascii: ","))
            switch key {
            case "ts", "level", "label", "msg": appendJSONString("meta." + key, to: &out)
            default: appendJSONString(key, to: &out)
            }
            out.append(UInt8(ascii: ":"))
            appendJSONValue(value, to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
    }

    static func appendJSONValue(_ value: Logger.MetadataValue, to out: inout [UInt8]) {
        switch value {
        case .string(let string):
            appendJSONString(string, to: &out)
        case .stringConvertible(let convertible):
            appendJSONString(convertible.description, to: &out)
        case .array(let array):
            out.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                appendJSONValue(element, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let dictionary):
            out.append(UInt8(ascii: "{"))
            for (index, entry) in dictionary.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                appendJSONString(entry.key, to: &out)
                out.append(UInt8(ascii: ":"))
                appendJSONValue(entry.value, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// A JSON string literal (RFC 8259): `"` and `\` escaped, C0 controls as `\n`-style or `\u00XX`; DEL, C1 controls
    /// and U+2028/U+2029 escaped too (legal raw in JSON, but they confuse terminals and JavaScript readers).
    static func appendJSONString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { appendEscapedUTF8($0, escapeQuote: true, json: true, to: &out) }
        out.append(UInt8(ascii: "\""))
    }

    // MARK: shared

    /// C0 controls, DEL, C1 controls (U+0085 NEL among them) and the Unicode line/paragraph separators: the
    /// characters that could break a line or drive a terminal.
    @inline(__always)
    static func needsEscape(_ v: UInt32) -> Bool {
        v < 0x20 || (v >= 0x7F && v <= 0x9F) || v == 0x2028 || v == 0x2029
    }

    /// `\uXXXX` (only called for scalars in the BMP).
    static func appendUnicodeEscape(_ v: UInt32, to out: inout [UInt8]) {
        @inline(__always) func hex(_ nibble: UInt32) -> UInt8 {
            UInt8(truncatingIfNeeded: nibble < 10 ? 0x30 + nibble : 0x57 + nibble)
        }
        out.append(UInt8(ascii: "\\"))
        out.append(UInt8(ascii: "u"))
        out.append(hex((v >> 12) & 0xF))
        out.append(hex((v >> 8) & 0xF))
        out.append(hex((v >> 4) & 0xF))
        out.append(hex(v & 0xF))
    }

    /// ISO-8601 UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ`, computed arithmetically (no `gmtime_r`, no locale,
    /// no time-zone file): days since the epoch to a civil date per Howard Hinnant's `civil_from_days`.
    static func appendTimestamp(seconds: Int, nanoseconds: Int, to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { buffer in
            var w = RawBytes(buffer.baseAddress!)
            w.timestamp(seconds: seconds, nanoseconds: nanoseconds)
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[0..<w.count(from: buffer.baseAddress!)]))
        }
    }
}
