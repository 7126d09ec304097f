import EchodText
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
                Escaping.appendEscapedUTF8(bytes, escapeQuote: true, json: false, to: &out)
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
            if Escaping.needsEscape(scalar.value) || scalar.properties.isWhitespace { return false }
        }
        return true
    }

    /// Escapes backslash and control characters (and `"` when quoting); everything else is copied as UTF-8.
    static func appendEscaped(_ string: String, quote: Bool, to out: inout [UInt8]) {
        if quote { out.append(UInt8(ascii: "\"")) }
        var string = string
        string.withUTF8 { Escaping.appendEscapedUTF8($0, escapeQuote: quote, json: false, to: &out) }
        if quote { out.append(UInt8(ascii: "\"")) }
    }

    // MARK: json

    /// One JSON object and a newline: `{"ts":"...","level":"info","label":"...","msg":"...",<metadata>}`.
    ///
    /// Metadata keys come after the fixed keys, sorted; a metadata key that collides with a fixed key (or starts with
    /// `meta.`) is written as `meta.<key>` so that every object has unique keys. Nested arrays/dictionaries become JSON arrays/objects,
    /// `.stringConvertible` values JSON strings.
    static func appendJSON(_ record: LogRecord, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"ts":""#.utf8)
        appendTimestamp(seconds: record.seconds, nanoseconds: record.nanoseconds, to: &out)
        out.append(contentsOf: #"","level":""#.utf8)
        out.append(contentsOf: record.level.rawValue.utf8)
        out.append(contentsOf: #"","label":"#.utf8)
        Escaping.appendJSONString(record.label, to: &out)
        out.append(contentsOf: #","msg":"#.utf8)
        Escaping.appendJSONString(record.event.message.description, to: &out)
        for (key, value) in record.renderedMetadataEntries() {
            out.append(UInt8(ascii: ","))
            if isReservedJSONKey(key) {
                Escaping.appendJSONString("meta." + key, to: &out)
            } else {
                Escaping.appendJSONString(key, to: &out)
            }
            out.append(UInt8(ascii: ":"))
            appendJSONValue(value, to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
    }

    /// The keys renamed to `meta.<key>`: the fixed keys, and keys that already start with `meta.` (so that metadata
    /// `msg` and `meta.msg` become `meta.msg` and `meta.meta.msg`, never the same key twice).
    static func isReservedJSONKey(_ key: String) -> Bool {
        switch key {
        case "ts", "level", "label", "msg": true
        default: key.hasPrefix("meta.")
        }
    }

    static func appendJSONValue(_ value: Logger.MetadataValue, to out: inout [UInt8]) {
        switch value {
        case .string(let string):
            Escaping.appendJSONString(string, to: &out)
        case .stringConvertible(let convertible):
            Escaping.appendJSONString(convertible.description, to: &out)
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
                Escaping.appendJSONString(entry.key, to: &out)
                out.append(UInt8(ascii: ":"))
                appendJSONValue(entry.value, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
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
