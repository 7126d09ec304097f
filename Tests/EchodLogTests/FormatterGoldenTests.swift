import Logging
import Testing

@testable import EchodLog

/// An error with a fixed description and a type name the golden lines can spell out.
struct GoldenBoom: Error, CustomStringConvertible {
    var description: String { "kaboom" }
}

/// Exact output lines for representative records: one case per formatter feature and escaping rule, so that a change
/// to any of them shows up as a diff of one line. The property tests (FormatterPropertyTests.swift) cover the inputs
/// nobody thought of; these pin the exact bytes.
@Suite("Formatters: golden lines")
struct FormatterGoldenTests {
    private let ts = "2023-11-14T22:13:20.123Z"

    @Test("a plain record; nil and empty metadata print the same")
    func plain() {
        for metadata in [nil, [:]] as [Logger.Metadata?] {
            let record = makeRecord(message: "hello", metadata: metadata)
            #expect(LogFormatter.text(record) == "\(ts) info echod.test: hello\n")
            #expect(LogFormatter.json(record) == #"{"ts":"\#(ts)","level":"info","label":"echod.test","msg":"hello"}"# + "\n")
        }
    }

    @Test("every level by its swift-log name")
    func levels() {
        for level in Logger.Level.allCases {
            let record = makeRecord(message: "m", level: level)
            #expect(LogFormatter.text(record) == "\(ts) \(level.rawValue) echod.test: m\n")
            #expect(LogFormatter.json(record).hasPrefix(#"{"ts":"\#(ts)","level":"\#(level.rawValue)","#))
        }
        #expect(Logger.Level.allCases.map(\.rawValue) == ["trace", "debug", "info", "notice", "warning", "error", "critical"])
    }

    @Test("message escapes: backslash, LF/CR/TAB short, other controls, DEL, C1 and U+2028/9 as \\u; quotes bare in text")
    func messageEscapes() {
        let message = "a\\b \"q\" \n\r\t\u{0}\u{8}\u{C}\u{1B}\u{7F}\u{85}\u{9B}\u{A0}\u{2028}\u{2029}é😀/"
        let record = makeRecord(message: message)
        #expect(
            LogFormatter.text(record)
                == #"\#(ts) info echod.test: a\\b "q" \n\r\t\u0000\u0008\u000c\u001b\u007f\u0085\u009b"#
                + "\u{A0}" + #"\u2028\u2029é😀/"# + "\n")
        #expect(
            LogFormatter.json(record)
                == #"{"ts":"\#(ts)","level":"info","label":"echod.test","msg":"a\\b \"q\" \n\r\t\u0000\b\f\u001b\u007f\u0085\u009b"#
                + "\u{A0}" + #"\u2028\u2029é😀/"}"# + "\n")
    }

    @Test("invalid UTF-8 in a string was repaired to U+FFFD when the string was made, and is printed as such")
    func invalidUTF8() {
        let record = makeRecord(message: String(decoding: [0x66, 0xFF, 0xC3, 0x28, 0x6F] as [UInt8], as: UTF8.self))
        #expect(LogFormatter.text(record) == "\(ts) info echod.test: f\u{FFFD}\u{FFFD}(o\n")
        #expect(LogFormatter.json(record).contains(#""msg":"f\#u{FFFD}\#u{FFFD}(o""#))
    }

    @Test("labels are escaped like messages; an empty label leaves no gap")
    func labels() {
        let odd = makeRecord(message: "m", label: "odd label\n\"x\"")
        #expect(LogFormatter.text(odd) == #"\#(ts) info odd label\n"x": m"# + "\n")
        #expect(LogFormatter.json(odd) == #"{"ts":"\#(ts)","level":"info","label":"odd label\n\"x\"","msg":"m"}"# + "\n")
        let none = makeRecord(message: "m", label: "")
        #expect(LogFormatter.text(none) == "\(ts) info: m\n")
        #expect(LogFormatter.json(none) == #"{"ts":"\#(ts)","level":"info","label":"","msg":"m"}"# + "\n")
    }

    @Test("text keys and values: bare when simple, else quoted with \\\" and the message escapes")
    func tokens() {
        let record = makeRecord(
            message: "tokens",
            metadata: [
                "plain": "abc", "spaced": "two words", "quote": "say \"hi\"", "eq": "k=v", "back": "a\\b", "empty": "",
                "k y": "1", "nbsp": "a\u{A0}b", "ideo": "a\u{3000}b", "nel": "a\u{85}b", "accent": "é", "emoji": "😀",
                "ctrl": "a\u{0}b\r", "tab": "\t", "del": "\u{7F}",
            ])
        #expect(
            LogFormatter.text(record)
                == #"\#(ts) info echod.test: tokens accent=é back="a\\b" ctrl="a\u0000b\r" del="\u007f" emoji=😀"#
                + #" empty="" eq="k=v" ideo="a\#u{3000}b" "k y"=1 nbsp="a\#u{A0}b" nel="a\u0085b" plain=abc"#
                + #" quote="say \"hi\"" spaced="two words" tab="\t""# + "\n")
        #expect(
            LogFormatter.json(record)
                == #"{"ts":"\#(ts)","level":"info","label":"echod.test","msg":"tokens","accent":"é","back":"a\\b","#
                + #""ctrl":"a\u0000b\r","del":"\u007f","emoji":"😀","empty":"","eq":"k=v","ideo":"a\#u{3000}b","#
                + #""k y":"1","nbsp":"a\#u{A0}b","nel":"a\u0085b","plain":"abc","quote":"say \"hi\"","#
                + #""spaced":"two words","tab":"\t"}"# + "\n")
    }

    @Test("metadata: sorted by key, errors as error.message/error.type (replacing the caller's), nested values, reserved JSON keys as meta.*")
    func metadataOrderAndNesting() {
        let record = makeRecord(
            message: "ordering",
            metadata: [
                "b": "2", "a": "1", "B": "up", "_x": "u", "a.b": "dot", "é": "e",
                "list": .array(["x", "y z", .dictionary(["k": "v"])]),
                "dict": .dictionary(["b": "2", "a": .array([])]),
                "none": .dictionary([:]),
                "conv": .stringConvertible(42),
                "msg": "m2", "ts": "t", "level": "l", "label": "lb",
                "error.message": "overridden",
            ],
            error: GoldenBoom())
        #expect(
            LogFormatter.text(record)
                == #"\#(ts) info echod.test: ordering B=up _x=u a=1 a.b=dot b=2 conv=42 dict="[a: [], b: 2]""#
                + #" error.message=kaboom error.type=EchodLogTests.GoldenBoom label=lb level=l list="[x, y z, [k: v]]""#
                + #" msg=m2 none=[:] ts=t é=e"# + "\n")
        #expect(
            LogFormatter.json(record)
                == #"{"ts":"\#(ts)","level":"info","label":"echod.test","msg":"ordering","B":"up","_x":"u","a":"1","#
                + #""a.b":"dot","b":"2","conv":"42","dict":{"a":[],"b":"2"},"error.message":"kaboom","#
                + #""error.type":"EchodLogTests.GoldenBoom","meta.label":"lb","meta.level":"l","#
                + #""list":["x","y z",{"k":"v"}],"meta.msg":"m2","none":{},"meta.ts":"t","é":"e"}"# + "\n")
    }

    @Test("without an error, the caller's error.message stays")
    func callerErrorKey() {
        let record = makeRecord(message: "m", metadata: ["error.message": "mine"])
        #expect(LogFormatter.text(record) == "\(ts) info echod.test: m error.message=mine\n")
    }

    @Test("timestamps: milliseconds truncated, nanoseconds clamped, years outside 0...9999 cut to four digits")
    func timestampEdges() {
        func ts(_ seconds: Int, _ nanoseconds: Int = 0) -> String {
            var out: [UInt8] = []
            LogFormatter.appendTimestamp(seconds: seconds, nanoseconds: nanoseconds, to: &out)
            return String(decoding: out, as: UTF8.self)
        }
        #expect(ts(1_700_000_000, -5) == "2023-11-14T22:13:20.000Z")
        #expect(ts(1_700_000_000, 1_000_000_005) == "2023-11-14T22:13:20.999Z")
        #expect(ts(1_700_000_000, 1_999_999) == "2023-11-14T22:13:20.001Z")
        #expect(ts(-62_167_219_200) == "0000-01-01T00:00:00.000Z")
        #expect(ts(253_402_300_799, 999_999_999) == "9999-12-31T23:59:59.999Z")
        #expect(ts(-62_167_219_201) == "0000-12-31T23:59:59.000Z", "year -1: the year field clamps at 0")
        #expect(ts(253_402_300_800) == "0000-01-01T00:00:00.000Z", "year 10000: the lower four digits")
        let record = makeRecord(message: "m", seconds: 253_402_300_800, nanoseconds: -1)
        #expect(LogFormatter.text(record) == "0000-01-01T00:00:00.000Z info echod.test: m\n")
    }

    @Test("journal: values raw (newlines, controls), nested values in text notation, sanitised names may repeat")
    func journal() {
        let record = makeRecord(
            message: "two\nlines",
            level: .notice,
            metadata: [
                "multi": "line1\nline2\t\u{0}", "nested": .dictionary(["b": .array(["1", "2"]), "a": "x"]),
                "a.b": "dot", "a_b": "under", "label": "shadow", "é": "accent",
            ],
            error: GoldenBoom())
        #expect(
            JournalFields.fields(for: record) == [
                "MESSAGE=two\nlines",
                "PRIORITY=5",
                "SYSLOG_IDENTIFIER=echod",
                "CODE_FILE=EchodLogTests/Formatting.swift",
                "CODE_LINE=42",
                "CODE_FUNC=test()",
                "ECHOD_LABEL=echod.test",
                "ECHOD_A_B=dot",
                "ECHOD_A_B=under",
                "ECHOD_ERROR_MESSAGE=kaboom",
                "ECHOD_ERROR_TYPE=EchodLogTests.GoldenBoom",
                "ECHOD_LABEL=shadow",
                "ECHOD_MULTI=line1\nline2\t\u{0}",
                "ECHOD_NESTED=[a: x, b: [1, 2]]",
                "ECHOD___=accent",
            ])
    }
}
