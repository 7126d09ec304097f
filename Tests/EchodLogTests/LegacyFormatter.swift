// The generic formatter as it was before the escaping was rewritten on UTF-8 bytes (commit 52b49b2), kept verbatim
// as the reference that `FormatterEquivalenceTests` compares the current one against on random input.
import Logging

@testable import EchodLog

enum LegacyFormatter {
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
        // Fast path: plain printable ASCII (most keys and values) is copied as is.
        if !string.isEmpty && string.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x3D && $0 != 0x5C }) {
            out.append(contentsOf: string.utf8)
            return
        }
        var simple = !string.isEmpty
        if simple {
            for scalar in string.unicodeScalars {
                let v = scalar.value
                if v <= 0x20 || v == 0x22 || v == 0x3D || v == 0x5C || needsEscape(v) || scalar.properties.isWhitespace {
                    simple = false
                    break
                }
            }
        }
        if simple {
            out.append(contentsOf: string.utf8)
        } else {
            appendEscaped(string, quote: true, to: &out)
        }
    }

    /// Escapes backslash and control characters (and `"` when quoting); everything else is copied as UTF-8.
    static func appendEscaped(_ string: String, quote: Bool, to out: inout [UInt8]) {
        if quote { out.append(UInt8(ascii: "\"")) }
        defer { if quote { out.append(UInt8(ascii: "\"")) } }
        // Fast path: printable ASCII without `"` or `\` needs no escaping.
        if string.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) {
            out.append(contentsOf: string.utf8)
            return
        }
        for scalar in string.unicodeScalars {
            let v = scalar.value
            switch v {
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x22 where quote: out.append(contentsOf: [0x5C, 0x22])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            default:
                if needsEscape(v) {
                    appendUnicodeEscape(v, to: &out)
                } else {
                    appendUTF8(scalar, to: &out)
                }
            }
        }
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
        // Fast path: printable ASCII without `"` or `\` is its own JSON encoding.
        if string.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) {
            out.append(contentsOf: string.utf8)
            out.append(UInt8(ascii: "\""))
            return
        }
        for scalar in string.unicodeScalars {
            let v = scalar.value
            switch v {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            default:
                if needsEscape(v) {
                    appendUnicodeEscape(v, to: &out)
                } else {
                    appendUTF8(scalar, to: &out)
                }
            }
        }
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

    @inline(__always)
    static func appendUTF8(_ scalar: Unicode.Scalar, to out: inout [UInt8]) {
        if scalar.value < 0x80 {
            out.append(UInt8(truncatingIfNeeded: scalar.value))
        } else {
            UTF8.encode(scalar) { out.append($0) }
        }
    }

    /// ISO-8601 UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ`, computed arithmetically (no `gmtime_r`, no locale,
    /// no time-zone file): days since the epoch to a civil date per Howard Hinnant's `civil_from_days`.
    static func appendTimestamp(seconds: Int, nanoseconds: Int, to out: inout [UInt8]) {
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

        appendDigits(year, count: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDigits(month, count: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDigits(day, count: 2, to: &out)
        out.append(UInt8(ascii: "T"))
        appendDigits(secondOfDay / 3600, count: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay / 60 % 60, count: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay % 60, count: 2, to: &out)
        out.append(UInt8(ascii: "."))
        appendDigits(min(max(nanoseconds, 0), 999_999_999) / 1_000_000, count: 3, to: &out)
        out.append(UInt8(ascii: "Z"))
    }

    private static func appendDigits(_ value: Int, count: Int, to out: inout [UInt8]) {
        var value = max(value, 0)
        let start = out.count
        for _ in 0..<count {
            out.append(UInt8(ascii: "0") + UInt8(value % 10))
            value /= 10
        }
        out[start...].reverse()
    }

    // MARK: conveniences (tests, internal reports)

    static func text(_ record: LogRecord) -> String {
        var out: [UInt8] = []
        appendText(record, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func json(_ record: LogRecord) -> String {
        var out: [UInt8] = []
        appendJSON(record, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
