/// A JSON value as the tests read echod's JSON output (log lines, `probe --json`, `bench --json`): object members in
/// the order written (Foundation's parser forgets the order and accepts more than RFC 8259 does).
package indirect enum JSONValue: Equatable, Sendable {
    case string(String)
    /// The number's text as written.
    case number(String)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([JSONMember])
}

package struct JSONMember: Equatable, Sendable {
    package var key: String
    package var value: JSONValue

    package init(key: String, value: JSONValue) {
        self.key = key
        self.value = value
    }
}

extension JSONValue {
    /// The value of the first member named `key` of an object.
    package subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    /// The member names of an object, in order.
    package var keys: [String] {
        guard case .object(let members) = self else { return [] }
        return members.map(\.key)
    }

    package var string: String? {
        if case .string(let s) = self { s } else { nil }
    }

    /// An integer written without fraction or exponent.
    package var int: Int? {
        if case .number(let text) = self { Int(text) } else { nil }
    }

    package var double: Double? {
        if case .number(let text) = self { Double(text) } else { nil }
    }

    package var bool: Bool? {
        if case .bool(let b) = self { b } else { nil }
    }

    package var array: [JSONValue]? {
        if case .array(let a) = self { a } else { nil }
    }
}

/// A strict RFC 8259 parser: no raw control characters in strings, only the standard escapes, surrogates paired,
/// valid UTF-8, nothing after the value but white space. nil for anything else.
package func parseJSON(_ bytes: some Collection<UInt8>) -> JSONValue? {
    var parser = JSONParser(bytes: Array(bytes))
    guard let value = parser.value() else { return nil }
    parser.skipWhiteSpace()
    return parser.i == parser.bytes.count ? value : nil
}

/// `text` as a JSON object; throws when it is not one.
package func jsonObject(_ text: String) throws -> JSONValue {
    guard let value = parseJSON(text.utf8), case .object = value else { throw TestFailure("not a JSON object: \(text)") }
    return value
}

private struct JSONParser {
    let bytes: [UInt8]
    var i = 0

    mutating func skipWhiteSpace() {
        while i < bytes.count && [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
    }

    mutating func literal(_ word: String) -> Bool {
        let w = Array(word.utf8)
        guard bytes.count - i >= w.count, Array(bytes[i..<(i + w.count)]) == w else { return false }
        i += w.count
        return true
    }

    mutating func value() -> JSONValue? {
        skipWhiteSpace()
        guard i < bytes.count else { return nil }
        switch bytes[i] {
        case UInt8(ascii: "\""): return string().map(JSONValue.string)
        case UInt8(ascii: "{"): return object()
        case UInt8(ascii: "["): return array()
        case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
        case UInt8(ascii: "n"): return literal("null") ? .null : nil
        default: return number()
        }
    }

    mutating func digits() -> Int {
        let start = i
        while i < bytes.count && (0x30...0x39).contains(bytes[i]) { i += 1 }
        return i - start
    }

    mutating func number() -> JSONValue? {
        let start = i
        if i < bytes.count && bytes[i] == UInt8(ascii: "-") { i += 1 }
        let integer = i
        let count = digits()
        guard count > 0, !(bytes[integer] == 0x30 && count > 1) else { return nil }
        if i < bytes.count && bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { return nil }
        }
        if i < bytes.count && (bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E")) {
            i += 1
            if i < bytes.count && (bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-")) { i += 1 }
            guard digits() > 0 else { return nil }
        }
        return .number(String(decoding: bytes[start..<i], as: UTF8.self))
    }

    mutating func string() -> String? {
        i += 1
        var out = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flush() -> Bool {
            guard !raw.isEmpty else { return true }
            guard let text = String(validating: raw, as: UTF8.self) else { return false }
            out.append(contentsOf: text.unicodeScalars)
            raw.removeAll()
            return true
        }
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                return flush() ? String(out) : nil
            }
            if b < 0x20 { return nil }
            if b != UInt8(ascii: "\\") {
                raw.append(b)
                i += 1
                continue
            }
            guard flush(), i + 1 < bytes.count else { return nil }
            let escaped: Unicode.Scalar
            switch bytes[i + 1] {
            case UInt8(ascii: "\""): escaped = "\""
            case UInt8(ascii: "\\"): escaped = "\\"
            case UInt8(ascii: "/"): escaped = "/"
            case UInt8(ascii: "b"): escaped = "\u{08}"
            case UInt8(ascii: "f"): escaped = "\u{0C}"
            case UInt8(ascii: "n"): escaped = "\n"
            case UInt8(ascii: "r"): escaped = "\r"
            case UInt8(ascii: "t"): escaped = "\t"
            case UInt8(ascii: "u"):
                guard let unit = hex4(at: i + 2) else { return nil }
                i += 6
                if (0xD800..<0xDC00).contains(unit) {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u"),
                        let low = hex4(at: i + 2), (0xDC00..<0xE000).contains(low)
                    else { return nil }
                    i += 6
                    out.append(Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))!)
                } else {
                    guard let scalar = Unicode.Scalar(unit) else { return nil }
                    out.append(scalar)
                }
                continue
            default:
                return nil
            }
            out.append(escaped)
            i += 2
        }
        return nil
    }

    func hex4(at index: Int) -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for d in bytes[index..<(index + 4)] {
            switch d {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = value << 4 | UInt32(d - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = value << 4 | UInt32(d - 0x57)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = value << 4 | UInt32(d - 0x37)
            default: return nil
            }
        }
        return value
    }

    mutating func array() -> JSONValue? {
        i += 1
        var elements: [JSONValue] = []
        skipWhiteSpace()
        if i < bytes.count && bytes[i] == UInt8(ascii: "]") {
            i += 1
            return .array(elements)
        }
        while true {
            guard let element = value() else { return nil }
            elements.append(element)
            skipWhiteSpace()
            guard i < bytes.count else { return nil }
            i += 1
            if bytes[i - 1] == UInt8(ascii: "]") { return .array(elements) }
            guard bytes[i - 1] == UInt8(ascii: ",") else { return nil }
        }
    }

    mutating func object() -> JSONValue? {
        i += 1
        var members: [JSONMember] = []
        skipWhiteSpace()
        if i < bytes.count && bytes[i] == UInt8(ascii: "}") {
            i += 1
            return .object(members)
        }
        while true {
            skipWhiteSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\""), let key = string() else { return nil }
            skipWhiteSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            guard let value = value() else { return nil }
            members.append(JSONMember(key: key, value: value))
            skipWhiteSpace()
            guard i < bytes.count else { return nil }
            i += 1
            if bytes[i - 1] == UInt8(ascii: "}") { return .object(members) }
            guard bytes[i - 1] == UInt8(ascii: ",") else { return nil }
        }
    }
}
