import EchodTestSupport
import EchodText
import Foundation
import Logging
import Testing

@testable import EchodLog

/// Properties of the escaping on seeded random input (the seed is in every failure message; the same seed replays
/// the same input). A reader written from the documented rules (EscapeDecoding.swift) must get back exactly what was
/// logged, and no output may hold a raw character that breaks a line or drives a terminal.
@Suite("Formatters: escaping properties")
struct FormatterPropertyTests {
    /// Characters that exercise every rule: all of ASCII (controls, space, `"`, `=`, `\`, DEL), C1 controls (NEL
    /// among them), Unicode white space, the line/paragraph separators, a BOM, noncharacters, a combining mark, a
    /// joiner, U+FFFD, astral scalars; plain letters to make runs.
    private static let palette: [Unicode.Scalar] = {
        var scalars: [Unicode.Scalar] = (0..<0x80).compactMap { Unicode.Scalar(UInt32($0)) }
        for v: UInt32 in [
            0x80, 0x85, 0x9B, 0x9F, 0xA0, 0xA9, 0xE9, 0xFF, 0x301, 0x1680, 0x2000, 0x200A, 0x200D, 0x2026, 0x2027,
            0x2028, 0x2029, 0x202A, 0x202F, 0x205F, 0x3000, 0xFDD0, 0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF, 0x1F600, 0x10FFFF,
        ] {
            scalars.append(Unicode.Scalar(v)!)
        }
        for _ in 0..<40 { scalars.append("a") }
        return scalars
    }()

    /// A string from the palette, any scalar at all, or random bytes (invalid UTF-8 is repaired to U+FFFD when the
    /// String is made, as it is for anything echod logs).
    static func randomString(_ rng: inout SeededRandom, maxLength: Int = 12) -> String {
        let length = Int.random(in: 0...maxLength, using: &rng)
        switch Int.random(in: 0..<8, using: &rng) {
        case 0:
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            return String(decoding: bytes, as: UTF8.self)
        case 1:
            var string = ""
            for _ in 0..<length {
                var v = UInt32.random(in: 0...0x10FFFF, using: &rng)
                if (0xD800..<0xE000).contains(v) { v = 0xFFFD }
                string.unicodeScalars.append(Unicode.Scalar(v)!)
            }
            return string
        default:
            var string = ""
            for _ in 0..<length { string.unicodeScalars.append(palette.randomElement(using: &rng)!) }
            return string
        }
    }

    static func randomValue(_ rng: inout SeededRandom, depth: Int = 0) -> Logger.MetadataValue {
        switch Int.random(in: 0..<(depth < 2 ? 5 : 3), using: &rng) {
        case 0, 1: return .string(randomString(&rng))
        case 2: return .stringConvertible(randomString(&rng))
        case 3: return .array((0..<Int.random(in: 0...3, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1) })
        default:
            var dictionary: Logger.Metadata = [:]
            for _ in 0..<Int.random(in: 0...3, using: &rng) {
                dictionary[randomString(&rng)] = randomValue(&rng, depth: depth + 1)
            }
            return .dictionary(dictionary)
        }
    }

    /// A random record, its timestamp mostly within years 0...9999 (where it can be read back) and sometimes far out.
    static func randomRecord(_ rng: inout SeededRandom) -> LogRecord {
        var metadata: Logger.Metadata = [:]
        for _ in 0..<Int.random(in: 0...4, using: &rng) { metadata[randomString(&rng)] = randomValue(&rng) }
        if Bool.random(using: &rng) { metadata[["ts", "level", "label", "msg"].randomElement(using: &rng)!] = "x" }
        let seconds =
            Int.random(in: 0..<10, using: &rng) == 0
            ? Int.random(in: -100_000_000_000...300_000_000_000, using: &rng)
            : Int.random(in: -62_167_219_200...253_402_300_799, using: &rng)
        return makeRecord(
            message: randomString(&rng, maxLength: 24),
            level: Logger.Level.allCases.randomElement(using: &rng)!,
            label: randomString(&rng),
            metadata: metadata.isEmpty && Bool.random(using: &rng) ? nil : metadata,
            error: Int.random(in: 0..<8, using: &rng) == 0 ? GoldenBoom() : nil,
            seconds: seconds,
            nanoseconds: Int.random(in: -5...1_000_000_005, using: &rng))
    }

    /// The bytes no output may hold raw: C0 controls (LF included), DEL, C1 controls (`C2 80`-`C2 9F`), U+2028/U+2029
    /// (`E2 80 A8`/`A9`). Returns the first offending offset.
    static func rawControl(in bytes: some Collection<UInt8>) -> Int? {
        let b = Array(bytes)
        for i in b.indices {
            if b[i] < 0x20 || b[i] == 0x7F { return i }
            if b[i] == 0xC2 && i + 1 < b.count && (0x80...0x9F).contains(b[i + 1]) { return i }
            if b[i] == 0xE2 && i + 2 < b.count && b[i + 1] == 0x80 && (b[i + 2] == 0xA8 || b[i + 2] == 0xA9) { return i }
        }
        return nil
    }

    @Test("escaped text (bare and quoted) has no raw control character and decodes back to the input")
    func textEscapingRoundTrips() {
        var rng = SeededRandom(seed: 0x5EED_0001)
        var failures: [String] = []
        for _ in 0..<20_000 where failures.count < 5 {
            let string = Self.randomString(&rng, maxLength: 24)
            var bare: [UInt8] = []
            LogFormatter.appendEscaped(string, quote: false, to: &bare)
            var quoted: [UInt8] = []
            LogFormatter.appendEscaped(string, quote: true, to: &quoted)
            let interior = quoted.dropFirst().dropLast()
            if let at = Self.rawControl(in: bare) { failures.append("\(string.debugDescription): raw control at \(at) of bare") }
            if let at = Self.rawControl(in: quoted) { failures.append("\(string.debugDescription): raw control at \(at) of quoted") }
            if unescape(bare, json: false) != string {
                failures.append("\(string.debugDescription): bare decodes to \(unescape(bare, json: false).debugDescription)")
            }
            if quoted.first != 0x22 || quoted.last != 0x22 || quoted.count < 2 {
                failures.append("\(string.debugDescription): not in quotes")
            } else if interior.indices.contains(where: { interior[$0] == 0x22 && interior[$0 - 1] != 0x5C }) {
                failures.append("\(string.debugDescription): an unescaped quote inside the quotes")
            } else if unescape(interior, json: false) != string {
                failures.append("\(string.debugDescription): quoted decodes to \(unescape(interior, json: false).debugDescription)")
            }
        }
        #expect(failures.isEmpty, "seed 0x5EED0001: \(failures)")
    }

    @Test("a JSON string literal parses (RFC 8259, and Foundation's parser) back to the input, with no raw control character")
    func jsonStringRoundTrips() throws {
        var rng = SeededRandom(seed: 0x5EED_0002)
        var failures: [String] = []
        for _ in 0..<20_000 where failures.count < 5 {
            let string = Self.randomString(&rng, maxLength: 24)
            var out: [UInt8] = []
            Escaping.appendJSONString(string, to: &out)
            if let at = Self.rawControl(in: out) { failures.append("\(string.debugDescription): raw control at \(at)") }
            if parseJSON(out) != .string(string) { failures.append("\(string.debugDescription): parses to \(String(describing: parseJSON(out)))") }
            // Foundation's parser as a second opinion, except on U+FEFF: it drops that scalar from inside strings
            // (RFC 8259 keeps it; the strict parser above checks those strings).
            let foundation = try? JSONSerialization.jsonObject(with: Data(out), options: .fragmentsAllowed) as? String
            if !string.unicodeScalars.contains("\u{FEFF}") && foundation != string {
                failures.append("\(string.debugDescription): Foundation reads \(foundation.debugDescription)")
            }
        }
        #expect(failures.isEmpty, "seed 0x5EED0002: \(failures)")
    }

    @Test("a text key or value is bare exactly when the documented rule allows it, and reads back either way")
    func textTokens() {
        var rng = SeededRandom(seed: 0x5EED_0003)
        var failures: [String] = []
        for _ in 0..<20_000 where failures.count < 5 {
            let string = Self.randomString(&rng)
            var out: [UInt8] = [UInt8(ascii: " ")]
            LogFormatter.appendTextToken(string, to: &out)
            out.append(UInt8(ascii: "="))
            LogFormatter.appendTextToken(string, to: &out)
            guard let pairs = metadataTokens(out[...]), pairs.count == 1 else {
                failures.append("\(string.debugDescription): \(String(decoding: out, as: UTF8.self).debugDescription) does not split")
                continue
            }
            let pair = pairs[0]
            if pair.key != string || pair.value != string { failures.append("\(string.debugDescription): read back as \(pair)") }
            if pair.keyQuoted == isBareToken(string) || pair.valueQuoted == isBareToken(string) {
                failures.append("\(string.debugDescription): quoted \(pair.keyQuoted), bare by the rule \(isBareToken(string))")
            }
        }
        #expect(failures.isEmpty, "seed 0x5EED0003: \(failures)")
    }

    /// The text line of `record` without its metadata: `prefix` is what precedes the message's escaped form.
    private func textLine(_ record: LogRecord, label: String? = nil, message: String? = nil) -> [UInt8] {
        var r = record
        r.label = label ?? r.label
        r.event = LogEvent(
            level: r.event.level, message: "\(message ?? r.event.message.description)", error: nil, metadata: nil,
            source: "Tests", file: r.event.file, function: r.event.function, line: r.event.line)
        var out: [UInt8] = []
        LogFormatter.appendText(r, to: &out)
        return out
    }

    @Test("a text line: one line, no raw control character, timestamp, level, label, message and every metadata pair read back")
    func textLines() {
        var rng = SeededRandom(seed: 0x5EED_0004)
        var failures: [String] = []
        for _ in 0..<5000 where failures.count < 5 {
            let record = Self.randomRecord(&rng)
            var line: [UInt8] = []
            LogFormatter.appendText(record, to: &line)
            let shown = String(decoding: line, as: UTF8.self).debugDescription
            guard line.last == 0x0A, let at = Optional(Self.rawControl(in: line.dropLast())), at == nil,
                String(validating: line, as: UTF8.self) != nil
            else {
                failures.append("\(shown): not one clean line of UTF-8")
                continue
            }
            if let failure = checkTimestamp(line.prefix(24), record) { failures.append("\(shown): \(failure)") }
            // The label's and the message's escaped forms, each from a line where the other is empty (so that a ": "
            // inside either cannot blur where it ends), must read back and compose the line.
            let head = Array(line.prefix(24)) + Array(" \(record.level.rawValue)".utf8)
            let labelOnly = textLine(record, message: "")
            let messageOnly = textLine(record, label: "")
            let escapedLabel = record.label.isEmpty ? [] : Array(labelOnly[(head.count + 1)..<(labelOnly.count - 3)])
            let escapedMessage = Array(messageOnly[(head.count + 2)..<(messageOnly.count - 1)])
            if !record.label.isEmpty && (labelOnly[head.count] != 0x20 || labelOnly.suffix(3) != Array(": \n".utf8)) {
                failures.append("\(shown): label line \(String(decoding: labelOnly, as: UTF8.self).debugDescription)")
                continue
            }
            if unescape(escapedLabel, json: false) != record.label { failures.append("\(shown): label does not read back") }
            if unescape(escapedMessage, json: false) != record.event.message.description {
                failures.append("\(shown): message does not read back")
            }
            let prefix = head + (record.label.isEmpty ? [] : [0x20] + escapedLabel) + Array(": ".utf8) + escapedMessage
            guard Array(line.prefix(prefix.count)) == prefix else {
                failures.append("\(shown): does not start with \(String(decoding: prefix, as: UTF8.self).debugDescription)")
                continue
            }
            let expected = record.renderedMetadataEntries().map { ($0.key, LogFormatter.textValue($0.value)) }
            guard let pairs = metadataTokens(line[prefix.count..<(line.count - 1)]) else {
                failures.append("\(shown): metadata does not split into key=value pairs")
                continue
            }
            if pairs.map(\.key) != expected.map(\.0) || pairs.map(\.value) != expected.map(\.1) {
                failures.append("\(shown): metadata reads back as \(pairs.map { ($0.key, $0.value) })")
            }
            for pair in pairs where pair.keyQuoted == isBareToken(pair.key) || pair.valueQuoted == isBareToken(pair.value) {
                failures.append("\(shown): \(pair) quoted against the rule")
            }
        }
        #expect(failures.isEmpty, "seed 0x5EED0004: \(failures)")
    }

    @Test("a JSON line: one line, valid RFC 8259, fixed keys then metadata in order (reserved ones as meta.*), values as logged")
    func jsonLines() throws {
        var rng = SeededRandom(seed: 0x5EED_0005)
        var failures: [String] = []
        for _ in 0..<5000 where failures.count < 5 {
            let record = Self.randomRecord(&rng)
            var line: [UInt8] = []
            LogFormatter.appendJSON(record, to: &line)
            let shown = String(decoding: line, as: UTF8.self).debugDescription
            guard line.last == 0x0A, Self.rawControl(in: line.dropLast()) == nil else {
                failures.append("\(shown): not one clean line")
                continue
            }
            guard case .object(let members) = parseJSON(line.dropLast()) else {
                failures.append("\(shown): not a JSON object")
                continue
            }
            let entries = record.renderedMetadataEntries()
            var expected: [JSONMember] = [
                JSONMember(key: "ts", value: members.first?.value ?? .null),
                JSONMember(key: "level", value: .string(record.level.rawValue)),
                JSONMember(key: "label", value: .string(record.label)),
                JSONMember(key: "msg", value: .string(record.event.message.description)),
            ]
            for (key, value) in entries {
                let name = ["ts", "level", "label", "msg"].contains(key) || key.hasPrefix("meta.") ? "meta." + key : key
                expected.append(JSONMember(key: name, value: Self.json(value)))
            }
            if members != expected { failures.append("\(shown): expected \(expected)") }
            if case .string(let ts)? = members.first?.value, let failure = checkTimestamp(Array(ts.utf8), record) {
                failures.append("\(shown): \(failure)")
            }
            // An independent parser agrees that it is JSON, and sees as many distinct keys (no key twice).
            let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
            if object?.count != Set(expected.map(\.key)).count { failures.append("\(shown): Foundation reads \(String(describing: object))") }
        }
        #expect(failures.isEmpty, "seed 0x5EED0005: \(failures)")
    }

    /// The documented JSON mapping of a metadata value: strings and descriptions as strings, arrays as arrays,
    /// dictionaries as objects with sorted keys.
    private static func json(_ value: Logger.MetadataValue) -> JSONValue {
        switch value {
        case .string(let s): .string(s)
        case .stringConvertible(let c): .string(c.description)
        case .array(let a): .array(a.map(json))
        case .dictionary(let d): .object(d.sorted { $0.key < $1.key }.map { JSONMember(key: $0.key, value: json($0.value)) })
        }
    }

    /// Reads the timestamp back; within years 0...9999 it must be the record's time to the millisecond (nanoseconds
    /// clamped to 0...999_999_999); outside, only its shape is checked (the year field keeps four digits).
    private func checkTimestamp(_ text: some Collection<UInt8>, _ record: LogRecord) -> String? {
        let shown = String(decoding: text, as: UTF8.self)
        guard let (seconds, millis) = parseTimestamp(text) else { return "timestamp \(shown) is malformed" }
        guard (-62_167_219_200...253_402_300_799).contains(record.seconds) else { return nil }
        let expectedMillis = min(max(record.nanoseconds, 0), 999_999_999) / 1_000_000
        if seconds != record.seconds || millis != expectedMillis {
            return "timestamp \(shown) for \(record.seconds) s \(record.nanoseconds) ns"
        }
        return nil
    }
}
