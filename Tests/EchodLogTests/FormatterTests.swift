import Foundation
import Logging
import Testing

@testable import EchodLog

@Suite("Formatters")
struct FormatterTests {
    @Test("ISO-8601 UTC timestamps with milliseconds")
    func timestamps() {
        func ts(_ seconds: Int, _ nanoseconds: Int = 0) -> String {
            var out: [UInt8] = []
            LogFormatter.appendTimestamp(seconds: seconds, nanoseconds: nanoseconds, to: &out)
            return String(decoding: out, as: UTF8.self)
        }
        #expect(ts(0) == "1970-01-01T00:00:00.000Z")
        #expect(ts(1_700_000_000, 123_999_999) == "2023-11-14T22:13:20.123Z")
        #expect(ts(951_782_400) == "2000-02-29T00:00:00.000Z")
        #expect(ts(951_868_799, 999_999_999) == "2000-02-29T23:59:59.999Z")
        #expect(ts(4_102_444_800) == "2100-01-01T00:00:00.000Z")
        #expect(ts(-1) == "1969-12-31T23:59:59.000Z")
    }

    @Test("text: one line, message and values escaped, values quoted when needed")
    func textEscaping() {
        let record = makeRecord(
            message: "line1\nline2\t\"q\" back\\slash \u{1B}[31m",
            metadata: [
                "plain": "abc",
                "spaced": "two words",
                "quote": "say \"hi\"",
                "ctrl": "a\u{0}b\r",
                "empty": "",
                "eq": "k=v",
                "list": .array(["x", "y z"]),
                "dict": .dictionary(["b": "2", "a": "1"]),
                "conv": .stringConvertible(42),
            ])
        let line = LogFormatter.text(record)
        let expected =
            #"2023-11-14T22:13:20.123Z info echod.test: line1\nline2\t"q" back\\slash \u001b[31m"#
            + #" conv=42 ctrl="a\u0000b\r" dict="[a: 1, b: 2]" empty="" eq="k=v" list="[x, y z]" plain=abc"#
            + #" quote="say \"hi\"" spaced="two words""# + "\n"
        #expect(line == expected)
    }

    @Test("text: no raw control byte ever reaches the output; invalid UTF-8 is replaced")
    func textNoControlBytes() {
        var all = ""
        for v in 0..<0x20 { all.unicodeScalars.append(Unicode.Scalar(UInt8(v))) }
        all += "\u{7F}\u{85}\u{9B}\u{2028}\u{2029}"
        let invalid = String(decoding: [0x66, 0xFF, 0xC3, 0x28, 0x6F] as [UInt8], as: UTF8.self)
        let record = makeRecord(
            message: all + invalid, label: "lab\nel", metadata: ["k\ney": .string(all), "bad": .string(invalid)])
        var out: [UInt8] = []
        LogFormatter.appendText(record, to: &out)
        #expect(out.last == 0x0A)
        let body = out.dropLast()
        #expect(!body.contains { $0 < 0x20 || $0 == 0x7F })
        let text = String(decoding: out, as: UTF8.self)
        #expect(Array(text.utf8) == out, "output is valid UTF-8")
        #expect(text.contains("f\u{FFFD}\u{FFFD}(o"))
        #expect(text.contains(#"\u0085\u009b\u2028\u2029"#))
        #expect(text.contains(#""k\ney"="#))
    }

    @Test("json: lines parse with JSONSerialization and round-trip awkward strings")
    func jsonRoundTrip() throws {
        var all = ""
        for v in 0..<0x20 { all.unicodeScalars.append(Unicode.Scalar(UInt8(v))) }
        all += "\"\\/\u{7F}\u{2028}é😀"
        let invalid = String(decoding: [0x61, 0xFE, 0x62] as [UInt8], as: UTF8.self)
        let record = makeRecord(
            message: all,
            level: .warning,
            metadata: [
                "ctrl": .string(all),
                "bad": .string(invalid),
                "msg": "collides",
                "list": .array(["1", .dictionary(["k": "v"])]),
                "conv": .stringConvertible(3.5),
            ])
        let line = LogFormatter.json(record)
        #expect(line.hasSuffix("}\n"))
        #expect(line.dropLast().firstIndex(of: "\n") == nil)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["ts"] as? String == "2023-11-14T22:13:20.123Z")
        #expect(object["level"] as? String == "warning")
        #expect(object["label"] as? String == "echod.test")
        #expect(object["msg"] as? String == all)
        #expect(object["ctrl"] as? String == all)
        #expect(object["bad"] as? String == "a\u{FFFD}b")
        #expect(object["meta.msg"] as? String == "collides")
        #expect(object["conv"] as? String == "3.5")
        let list = try #require(object["list"] as? [Any])
        #expect(list.first as? String == "1")
        #expect((list.last as? [String: Any])?["k"] as? String == "v")
    }

    @Test("errors are rendered as error.message / error.type")
    func errorMetadata() throws {
        struct Boom: Error, CustomStringConvertible { var description: String { "kaboom" } }
        let record = makeRecord(message: "failed", metadata: ["a": "1"], error: Boom())
        let text = LogFormatter.text(record)
        #expect(text.contains("a=1 error.message=kaboom error.type="))
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(LogFormatter.json(record).utf8)) as? [String: Any])
        #expect(object["error.message"] as? String == "kaboom")
        #expect((object["error.type"] as? String)?.hasSuffix("Boom") == true)
    }

    @Test("json: metadata `msg` and `meta.msg` stay two keys (meta.msg, meta.meta.msg), never one key twice")
    func reservedKeysStayUnique() {
        let record = makeRecord(message: "m", metadata: ["msg": "a", "meta.msg": "b", "meta": "c"])
        #expect(
            LogFormatter.json(record)
                == #"{"ts":"2023-11-14T22:13:20.123Z","level":"info","label":"echod.test","msg":"m","meta":"c","meta.meta.msg":"b","meta.msg":"a"}"#
                + "\n")
    }
}
