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
    ///
    /// Built byte by byte in a stack buffer and turned into a String once: this runs on the log writer thread
    /// for every read when `log.reads` is on, so it must be cheap.
    public var description: String {
        let hex: StaticString = "0123456789abcdef"
        return withUnsafeBytes(of: bytes) { raw in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.capacity * 4 + 3) { out in
                var n = 0
                for b in raw.prefix(Int(count)) {
                    switch b {
                    case 0x0A, 0x0D, 0x09, 0x5C, 0x22:
                        out[n] = 0x5C
                        out[n + 1] = b == 0x0A ? 0x6E : b == 0x0D ? 0x72 : b == 0x09 ? 0x74 : b
                        n += 2
                    case 0x20..<0x7F:
                        out[n] = b
                        n += 1
                    default:
                        out[n] = 0x5C
                        out[n + 1] = 0x78
                        out[n + 2] = hex.utf8Start[Int(b >> 4)]
                        out[n + 3] = hex.utf8Start[Int(b & 15)]
                        n += 4
                    }
                }
                if truncated {
                    for b in "…".utf8 { out[n] = b; n += 1 }
                }
                return String(decoding: UnsafeBufferPointer(rebasing: out[0..<n]), as: UTF8.self)
            }
        }
    }
}
