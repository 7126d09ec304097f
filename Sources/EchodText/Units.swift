/// Why one value was refused: a sentence for the user. The config loader adds where the value came from; the
/// command line prints it next to the option.
package struct InvalidValue: Error, Sendable, Equatable {
    package var reason: String

    package init(reason: String) { self.reason = reason }
}

/// Durations and byte sizes in human units, parsed exactly (no floating point) and formatted back in the
/// shortest exact form, so that what `check-config` prints can be pasted into a file unchanged.
///
/// The one grammar for both, wherever a user types one: the configuration file, `ECHOD_*` variables, and the
/// options of `echod`, `echod probe` and `echod bench`.
package enum Units {
    // MARK: Durations

    /// Units of a duration, largest first; the index is the order a compound duration must follow.
    private static let durationUnits: [(names: [String], nanoseconds: Int128)] = [
        (["h"], 3_600_000_000_000),
        (["m"], 60_000_000_000),
        (["s"], 1_000_000_000),
        (["ms"], 1_000_000),
        (["us", "µs"], 1_000),
        (["ns"], 1),
    ]

    /// `500ms`, `30s`, `5m`, `1h`, `1m30s`, `1.5s`; a bare number is seconds. Units are case-insensitive.
    package static func parseDuration(_ text: String) throws(InvalidValue) -> Duration {
        let example = "expected a duration such as 500ms, 30s, 5m, 1h or 1m30s"
        guard !text.isEmpty else { throw InvalidValue(reason: "empty value; \(example)") }
        guard !text.hasPrefix("-") else { throw InvalidValue(reason: "a duration cannot be negative") }
        var rest = Substring(text)
        var total: Int128 = 0
        var previousUnit = -1
        while !rest.isEmpty {
            if previousUnit >= 0 && rest.first == " " {
                throw InvalidValue(reason: "no spaces between the parts of a duration: write 1m30s, not 1m 30s")
            }
            let number = try scanNumber(&rest, example: example)
            rest = rest.drop(while: { $0 == " " })
            let unitText = rest.prefix(while: { $0.isLetter })
            rest = rest.dropFirst(unitText.count)
            let unitIndex: Int
            if unitText.isEmpty {
                // A bare number means seconds, but only on its own: "1m30" is more likely a typo than 1m30s.
                guard previousUnit == -1, rest.isEmpty else {
                    throw InvalidValue(reason: "missing unit after \(number.text); \(example)")
                }
                unitIndex = 2
            } else {
                guard let index = durationUnits.firstIndex(where: { $0.names.contains(unitText.lowercased()) }) else {
                    throw InvalidValue(reason: "unknown duration unit \(quoted(String(unitText))); use ms, s, m or h (also us, ns)")
                }
                unitIndex = index
            }
            guard unitIndex > previousUnit else {
                throw InvalidValue(reason: "units must go from largest to smallest, each at most once, e.g. 1h30m or 1m30s")
            }
            previousUnit = unitIndex
            guard let nanoseconds = number.times(durationUnits[unitIndex].nanoseconds) else {
                throw InvalidValue(reason: "\(number.text)\(unitText) is finer than one nanosecond")
            }
            total += nanoseconds
            guard total <= Int128(Int64.max) else { throw InvalidValue(reason: "duration is too large") }
        }
        return .nanoseconds(Int64(total))
    }

    /// The shortest exact spelling: `0s`, `500ms`, `45s`, `5m`, `1m30s`, `1h`.
    package static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        var remaining = Int128(seconds) * 1_000_000_000 + Int128(attoseconds / 1_000_000_000)
        guard remaining > 0 else { return "0s" }
        var out = ""
        for unit in durationUnits where remaining >= unit.nanoseconds {
            out += "\(remaining / unit.nanoseconds)\(unit.names[0])"
            remaining %= unit.nanoseconds
        }
        return out
    }

    // MARK: Sizes

    /// Every size unit, in the order ``formatSize(_:)`` tries them: largest first, powers of 1024 before powers
    /// of 1000. One table for parsing and printing; and a table rather than array literals inside the loop,
    /// because with literals the optimiser unrolled the loop and materialised the constants in an order that
    /// changed from build to build (swiftlang/swift#77168), so two builds of one commit differed.
    ///
    /// One-letter units (`4k`, `1M`) are refused on purpose: coreutils reads `k` as 1024 and Kubernetes as 1000, so
    /// either reading would surprise someone; the error names the unambiguous spellings.
    private static let sizeUnits: [(name: String, bytes: Int128)] = [
        ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
        ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000),
        ("B", 1),
    ]

    /// `4096`, `4096B`, `64KiB`, `1MiB`, `1GiB`, ; `KB`/`MB`/`GB` are powers of 1000. Case-insensitive.
    /// A fraction is accepted only when it comes to whole bytes (`1.5KiB` is 1536).
    package static func parseSize(_ text: String) throws(InvalidValue) -> Int {
        let example = "expected a size such as 4096, 64KiB, 1MiB or 1GiB"
        guard !text.isEmpty else { throw InvalidValue(reason: "empty value; \(example)") }
        guard !text.hasPrefix("-") else { throw InvalidValue(reason: "a size cannot be negative") }
        var rest = Substring(text)
        // 19 whole digits: every Int, so that whatever formatSize prints (a bare byte count) parses back.
        let number = try scanNumber(&rest, example: example, wholeDigits: 19)
        let unitText = rest.drop(while: { $0 == " " })
        let multiplier: Int128
        if unitText.isEmpty {
            multiplier = 1
        } else if let unit = sizeUnits.first(where: { $0.name.lowercased() == unitText.lowercased() }) {
            multiplier = unit.bytes
        } else {
            throw InvalidValue(reason: "unknown size unit \(quoted(String(unitText))); use B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000)")
        }
        guard let bytes = number.times(multiplier) else {
            throw InvalidValue(reason: "\(text) is not a whole number of bytes")
        }
        guard bytes <= Int128(Int.max) else { throw InvalidValue(reason: "size is too large") }
        return Int(bytes)
    }

    /// The shortest exact spelling: `256KiB`, `1GiB`, `64KB`, `1000`.
    package static func formatSize(_ bytes: Int) -> String {
        let value = Int128(bytes)
        for unit in sizeUnits where unit.bytes > 1 && value >= unit.bytes && value % unit.bytes == 0 {
            return "\(value / unit.bytes)\(unit.name)"
        }
        return "\(bytes)"
    }

    // MARK: Numbers

    /// A non-negative decimal as written, kept exact: `whole` plus `fraction / 10^fractionDigits`.
    struct DecimalNumber {
        var text: Substring
        var whole: Int128
        var fraction: Int128
        var fractionDigits: Int

        /// `self × unit` when that is a whole number, else nil.
        func times(_ unit: Int128) -> Int128? {
            var scale: Int128 = 1
            for _ in 0..<fractionDigits { scale *= 10 }
            let fractional = fraction * unit
            guard fractional % scale == 0 else { return nil }
            return whole * unit + fractional / scale
        }
    }

    /// Reads `123`, `1_000`, `1.5` from the front of `rest`. Limits keep `Int128` arithmetic from overflowing:
    /// `wholeDigits` (at most 19) whole digits and 9 fraction digits, far beyond any value a key accepts.
    static func scanNumber(_ rest: inout Substring, example: String, wholeDigits: Int = 18) throws(InvalidValue) -> DecimalNumber {
        let start = rest
        let wholeText = rest.prefix(while: { $0.isASCIIDigit || $0 == "_" })
        rest = rest.dropFirst(wholeText.count)
        var fractionText: Substring = ""
        if rest.first == "." {
            rest = rest.dropFirst()
            fractionText = rest.prefix(while: \.isASCIIDigit)
            rest = rest.dropFirst(fractionText.count)
            guard !fractionText.isEmpty else { throw InvalidValue(reason: "expected digits after \".\"; \(example)") }
        }
        let digits = wholeText.filter { $0 != "_" }
        guard !digits.isEmpty, wholeText.first != "_", wholeText.last != "_" else {
            throw InvalidValue(reason: "\(quoted(String(start))) does not start with a number; \(example)")
        }
        let text = start[start.startIndex..<rest.startIndex]
        guard digits.count <= wholeDigits, fractionText.count <= 9 else {
            throw InvalidValue(reason: "\(text) has too many digits")
        }
        return DecimalNumber(
            text: text, whole: Int128(digits)!, fraction: Int128(fractionText) ?? 0, fractionDigits: fractionText.count)
    }
}

extension Character {
    /// `0`...`9` only: `isNumber` would also accept other scripts' digits and fractions. By ASCII value, not by
    /// `("0"..."9").contains`: a digit with a combining mark (`1` + U+064E) is one Character that sorts inside that
    /// range, and callers convert what passes with `Int(_:)`.
    package var isASCIIDigit: Bool { asciiValue.map { (0x30...0x39).contains($0) } ?? false }
}
