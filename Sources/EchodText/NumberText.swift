/// Numbers as echod prints them for people and JSON readers, without Foundation: fixed-point decimals and thousands
/// separators. One implementation for `echod probe`, `echod bench` and the daemon's messages.
package enum NumberText {
    /// `x` with `decimals` digits after the point, rounded half away from zero; JSON-safe (no exponent, no NaN:
    /// a non-finite value prints as `0`). `trimZeros` drops trailing zeros of the fraction (and the point).
    /// `fixed(0.214, decimals: 2)` is `0.21`; `fixed(2.50, decimals: 2, trimZeros: true)` is `2.5`.
    package static func fixed(_ x: Double, decimals: Int, trimZeros: Bool = false) -> String {
        guard x.isFinite else { return "0" }
        var scale: UInt64 = 1
        for _ in 0..<decimals { scale *= 10 }
        let magnitude = (abs(x) * Double(scale)).rounded()
        guard magnitude < 1.8e19 else { return String(Int64(clamping: Int64(x.rounded()))) }
        let n = UInt64(magnitude)
        var s = (x < 0 && n != 0 ? "-" : "") + String(n / scale)
        if decimals > 0 {
            var fraction = String(n % scale)
            fraction = String(repeating: "0", count: decimals - fraction.count) + fraction
            if trimZeros { while fraction.hasSuffix("0") { fraction.removeLast() } }
            if !fraction.isEmpty { s += "." + fraction }
        }
        return s
    }

    /// `1234567` as `1,234,567`.
    package static func grouped(_ n: UInt64) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(d)
        }
        return out
    }
}
