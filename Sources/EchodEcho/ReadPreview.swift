/// The first bytes of a read, copied inline (no heap), rendered only when the log writer formats the record.
///
/// Passed as a `.stringConvertible` metadata value, so the loop thread pays a 40-byte copy, not text formatting.
public struct ReadPreview: CustomStringConvertible, Sendable {
    public static let capacity = 32
    private var bytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var count: UInt8
    private var truncated: Bool

    public init(_ data: UnsafeRawBufferPointer) {
        count = UInt8(min(data.count, Self.capacity))
        truncated = data.count > Self.capacity
        let n = Int(count)
        withUnsafeMutableBytes(of: &bytes) { dst in
            if n > 0, let src = data.baseAddress { dst.baseAddress!.copyMemory(from: src, byteCount: n) }
        }
    }

    /// Printable ASCII as is; `\n`, `\r`, `\t`, `\\`, `"` escaped; anything else as `\xNN`; `…` when cut short.
    public var description: String {
        var out = ""
        withUnsafeBytes(of: bytes) { raw in
            for b in raw.prefix(Int(count)) {
                switch b {
                case UInt8(ascii: "\n"): out += "\\n"
                case UInt8(ascii: "\r"): out += "\\r"
                case UInt8(ascii: "\t"): out += "\\t"
                case UInt8(ascii: "\\"): out += "\\\\"
                case UInt8(ascii: "\""): out += "\\\""
                case 0x20..<0x7f: out.unicodeScalars.append(Unicode.Scalar(b))
                default:
                    let hex = Array("0123456789abcdef")
                    out += "\\x" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 15)])
                }
            }
        }
        return truncated ? out + "…" : out
    }
}
