/// The one escaper of text echod writes for machines and terminals: log lines (text and JSON), JSON reports of
/// `echod probe` and `echod bench`. Works on UTF-8 bytes and copies unescaped runs in bulk, so the log writer
/// can call it per record.
package enum Escaping {
    /// The escaping shared by text and JSON, on the UTF-8 bytes of a (valid UTF-8) string, copying unescaped runs
    /// in bulk:
    /// - `\` → `\\`, `"` → `\"` (when `escapeQuote`), LF/CR/TAB → `\n` `\r` `\t`, and in JSON BS/FF → `\b` `\f`;
    /// - other C0 controls, DEL, C1 controls (UTF-8 `C2 80`–`C2 9F`) and U+2028/U+2029 (`E2 80 A8`/`A9`) → `\uXXXX`;
    /// - every other byte as is.
    package static func appendEscapedUTF8(
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

    /// A JSON string literal (RFC 8259): `"` and `\` escaped, C0 controls as `\n`-style or `\u00XX`; DEL, C1 controls
    /// and U+2028/U+2029 escaped too (legal raw in JSON, but they confuse terminals and JavaScript readers).
    package static func appendJSONString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { appendEscapedUTF8($0, escapeQuote: true, json: true, to: &out) }
        out.append(UInt8(ascii: "\""))
    }

    /// C0 controls, DEL, C1 controls (U+0085 NEL among them) and the Unicode line/paragraph separators: the
    /// characters that could break a line or drive a terminal.
    @inlinable
    package static func needsEscape(_ v: UInt32) -> Bool {
        v < 0x20 || (v >= 0x7F && v <= 0x9F) || v == 0x2028 || v == 0x2029
    }

    /// `\uXXXX` (only called for scalars in the BMP).
    package static func appendUnicodeEscape(_ v: UInt32, to out: inout [UInt8]) {
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

    /// A JSON string literal of `string`, quotes included, as a `String` (for reports; logs use the byte form).
    package static func jsonString(_ string: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count + 2)
        appendJSONString(string, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
