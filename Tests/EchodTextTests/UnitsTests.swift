import EchodText
import Testing

@Suite("Durations and sizes")
struct UnitsTests {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)),
        ("30s", .seconds(30)),
        ("5m", .seconds(300)),
        ("1h", .seconds(3600)),
        ("1m30s", .seconds(90)),
        ("1h30m15s", .seconds(5415)),
        ("2s500ms", .milliseconds(2500)),
        ("90", .seconds(90)),
        ("0", .zero),
        ("0s", .zero),
        ("1.5s", .milliseconds(1500)),
        ("0.25h", .seconds(900)),
        ("1H", .seconds(3600)),
        ("2M", .seconds(120)),
        ("10MS", .milliseconds(10)),
        ("10 s", .seconds(10)),
        ("1_000ms", .seconds(1)),
        ("250us", .microseconds(250)),
        ("7ns", .nanoseconds(7)),
    ])
    func validDurations(text: String, expected: Duration) throws {
        #expect(try Units.parseDuration(text) == expected)
    }

    @Test(arguments: [
        ("", "empty value"),
        ("-5s", "cannot be negative"),
        ("5x", "unknown duration unit \"x\""),
        ("5 minutes", "unknown duration unit \"minutes\""),
        ("1m30", "missing unit after 30"),
        ("30s1m", "from largest to smallest"),
        ("1s1s", "from largest to smallest"),
        ("s", "\"s\" does not start with a number"),
        ("soon", "does not start with a number"),
        ("1.s", "expected digits after \".\""),
        ("0.5ns", "finer than one nanosecond"),
        ("999999999999999999h", "too large"),
        ("1m 30s", "no spaces between the parts"),
        ("_1s", "does not start with a number"),
        ("1234567890123456789s", "too many digits"),
    ])
    func invalidDurations(text: String, reason: String) {
        #expect {
            try Units.parseDuration(text)
        } throws: { error in
            (error as? InvalidValue)?.reason.contains(reason) == true
        }
    }

    @Test(arguments: [
        ("4096", 4096), ("4096B", 4096), ("4096b", 4096),
        ("64KiB", 65_536), ("64kib", 65_536), ("64 KiB", 65_536),
        ("1MiB", 1 << 20), ("1GiB", 1 << 30), ("2TiB", 2 << 40),
        ("1KB", 1000), ("1kb", 1000), ("1MB", 1_000_000), ("1GB", 1_000_000_000),
        ("1.5KiB", 1536), ("0.5MB", 500_000), ("256_000", 256_000),
    ])
    func validSizes(text: String, expected: Int) throws {
        #expect(try Units.parseSize(text) == expected)
    }

    @Test(arguments: [
        ("", "empty value"),
        ("-1", "cannot be negative"),
        ("-4KiB", "cannot be negative"),
        ("1.5B", "not a whole number of bytes"),
        ("1.1KiB", "not a whole number of bytes"),
        ("10XB", "unknown size unit \"XB\""),
        ("4k", "unknown size unit \"k\""),
        ("KiB", "does not start with a number"),
        ("1.", "expected digits after \".\""),
        ("999999999999999999TiB", "too large"),
    ])
    func invalidSizes(text: String, reason: String) {
        #expect {
            try Units.parseSize(text)
        } throws: { error in
            (error as? InvalidValue)?.reason.contains(reason) == true
        }
    }

    @Test(arguments: [
        (Duration.zero, "0s"), (.milliseconds(500), "500ms"), (.seconds(45), "45s"), (.seconds(300), "5m"),
        (.seconds(90), "1m30s"), (.seconds(3600), "1h"), (.milliseconds(1500), "1s500ms"), (.nanoseconds(1), "1ns"),
    ])
    func durationFormatting(duration: Duration, text: String) throws {
        #expect(Units.format(duration) == text)
        #expect(try Units.parseDuration(text) == duration)
    }

    @Test(arguments: [
        (262_144, "256KiB"), (4096, "4KiB"), (1 << 30, "1GiB"), (1000, "1KB"), (64_000, "64KB"), (4097, "4097"),
        (0, "0"), (1_500_000, "1500KB"),
    ])
    func sizeFormatting(bytes: Int, text: String) throws {
        #expect(Units.formatSize(bytes) == text)
        #expect(try Units.parseSize(text) == bytes)
    }

    /// Found by Fuzz/FuzzGrammar: a digit followed by a combining mark (U+064E) is one Character that sorts between
    /// "0" and "9", so it passed as a digit and `Int128(digits)!` crashed on it. Now it is refused as text.
    @Test(arguments: ["1\u{64E}", "1\u{64E}s", "2\u{301}m", "1.5\u{64E}s", "1_0\u{301}"])
    func digitsWithCombiningMarksAreRefused(text: String) {
        #expect(throws: InvalidValue.self) { try Units.parseDuration(text) }
        #expect(throws: InvalidValue.self) { try Units.parseSize(text) }
    }

    /// Found by Fuzz/FuzzGrammar: `1232345678012.253456mb` is 1232345678012253456 bytes, which `formatSize` prints
    /// as 19 digits, and the parser refused more than 18 whole digits: what check-config printed did not load.
    @Test(arguments: [1_232_345_678_012_253_456, Int.max, 1_000_000_000_000_000_001])
    func everySizePrintedParsesBack(bytes: Int) throws {
        #expect(try Units.parseSize(Units.formatSize(bytes)) == bytes)
    }
}
