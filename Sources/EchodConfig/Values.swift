import EchodText

/// Parsers for single values. All layers hand values over as text (a YAML scalar, an environment
/// variable, an option), so one parser per kind of value gives the same rules and the same messages
/// wherever a value was written.
enum Values {
    /// A whole number in `range`; `_` may group digits (`10_000_000`).
    static func integer(_ text: String, in range: ClosedRange<Int>, orWord word: String? = nil) throws(InvalidValue) -> Int {
        let number = "a whole number between \(range.lowerBound) and \(range.upperBound)"
        let expected = "expected " + (word.map { "\(quoted($0)) or \(number)" } ?? number)
        guard !text.isEmpty else { throw InvalidValue(reason: "empty value; \(expected)") }
        if text.hasPrefix("-"), text.dropFirst().allSatisfy({ $0.isASCIIDigit || $0 == "_" }), text.count > 1 {
            throw InvalidValue(reason: "must not be negative; \(expected)")
        }
        let digits = text.filter { $0 != "_" }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigit), text.first != "_", text.last != "_" else {
            throw InvalidValue(reason: "not a whole number; \(expected)")
        }
        guard let value = Int(digits), range.contains(value) else {
            throw InvalidValue(reason: "out of range; \(expected)")
        }
        return value
    }

    /// `true`/`false`, also `yes`/`no`, `on`/`off`, `1`/`0` (the spellings YAML 1.1 and shells use).
    static func bool(_ text: String) throws(InvalidValue) -> Bool {
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw InvalidValue(reason: "expected true or false")
        }
    }

    /// One of an enumeration's names, case-insensitively, with a suggestion for a near miss.
    static func choice<T: RawRepresentable & CaseIterable>(_ text: String, of type: T.Type) throws(InvalidValue) -> T
    where T.RawValue == String {
        if let value = T(rawValue: text.lowercased()) { return value }
        let names = T.allCases.map(\.rawValue)
        var reason = "expected one of " + names.joined(separator: ", ")
        if let near = Suggestions.closest(to: text, among: names) { reason += " (did you mean \(quoted(near))?)" }
        throw InvalidValue(reason: reason)
    }

    /// `auto` (nil) or a thread count.
    static func threads(_ text: String) throws(InvalidValue) -> Int? {
        if text.lowercased() == "auto" { return nil }
        return try integer(text, in: threadRange, orWord: "auto")
    }

    static let threadRange = 1...1024

    /// An absolute file path. Relative paths are refused: a daemon's working directory is `/` under systemd
    /// but the operator's shell directory under `check-config`, so the two would disagree.
    static func absolutePath(_ text: String) throws(InvalidValue) -> String {
        guard text.hasPrefix("/") else { throw InvalidValue(reason: "must be an absolute path (starting with /)") }
        guard !text.hasSuffix("/") else { throw InvalidValue(reason: "names a directory; expected a file path") }
        return text
    }

    /// A user name as `useradd` and systemd accept: letters, digits, `_`, `-`, `.`, not starting with `-` or a
    /// digit-only name (echod looks the user up by name; a number would be taken for a name and not found),
    /// at most 32 characters (glibc's utmp limit). Whether the user exists is checked at start, on the host
    /// that runs echod, not here: `check-config` may run elsewhere.
    static func userName(_ text: String) throws(InvalidValue) -> String {
        guard !text.isEmpty else { throw InvalidValue(reason: "empty user name") }
        guard text.count <= 32 else { throw InvalidValue(reason: "longer than 32 characters; expected a user name") }
        guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isASCIIDigit || "_-.".contains($0)) }), text.first != "-" else {
            throw InvalidValue(reason: "expected a user name (letters, digits, _, - and .)")
        }
        guard !text.allSatisfy(\.isASCIIDigit) else {
            throw InvalidValue(reason: "a number, not a user name: echod switches to a user by name (e.g. nobody)")
        }
        return text
    }

    /// A `listen` entry, TCP or Unix, with the parser's reason.
    static func listenTarget(_ text: String) throws(InvalidValue) -> ListenTarget {
        do {
            return try ListenTarget(parsing: text)
        } catch {
            throw InvalidValue(reason: error.reason)
        }
    }

    /// A permission mode in octal, as chmod takes it: `0660`, `660`, `0o660`; at most `0777` (no set-id or sticky
    /// bits, which mean nothing on a socket).
    static func octalMode(_ text: String) throws(InvalidValue) -> UInt32 {
        let expected = "expected an octal mode between 0000 and 0777, e.g. \"0660\""
        let digits = text.lowercased().hasPrefix("0o") ? text.dropFirst(2) : Substring(text)
        guard (1...4).contains(digits.count), digits.allSatisfy({ ("0"..."7").contains($0) }), let value = UInt32(digits, radix: 8)
        else { throw InvalidValue(reason: "not an octal mode; \(expected)") }
        guard value <= 0o777 else { throw InvalidValue(reason: "out of range; \(expected)") }
        return value
    }

    /// `0660`: four octal digits, how `octalMode` reads it back.
    static func formatMode(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// A user or group for the socket file: a name (as ``userName(_:)`` checks it, with `kind` in the messages) or a
    /// numeric ID. Whether it exists is checked at start, on the host that runs echod, as for `user`.
    static func accountName(_ text: String, kind: String) throws(InvalidValue) -> String {
        if !text.isEmpty && text.allSatisfy(\.isASCIIDigit) {
            guard let id = UInt32(text), id != UInt32.max else { throw InvalidValue(reason: "\(kind) ID out of range") }
            return String(id)
        }
        guard !text.isEmpty else { throw InvalidValue(reason: "empty \(kind) name") }
        guard text.count <= 32 else { throw InvalidValue(reason: "longer than 32 characters; expected a \(kind) name or ID") }
        guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isASCIIDigit || "_-.".contains($0)) }), text.first != "-" else {
            throw InvalidValue(reason: "expected a \(kind) name (letters, digits, _, - and .) or a numeric ID")
        }
        return text
    }

    /// A listen address, with the parser's reason. A Unix socket is named as such, not as a malformed `HOST:PORT`.
    static func address(_ text: String) throws(InvalidValue) -> ListenAddress {
        if UnixPath.isUnix(text) { throw InvalidValue(reason: "Unix sockets are not supported here; expected HOST:PORT") }
        do {
            return try ListenAddress(parsing: text)
        } catch {
            throw InvalidValue(reason: error.reason)
        }
    }

    /// `instance`: how this echod names itself in tags (`{instance}`) and for people reading them. Any text of 1 to 253
    /// bytes (a DNS name's limit, so a pod or host name fits) without control characters: it is sent and logged as is,
    /// and a line feed would split a tag in two.
    static func instanceName(_ text: String) throws(InvalidValue) -> String {
        guard !text.isEmpty else { throw InvalidValue(reason: "empty name; give a name such as web-1, or null for the host name") }
        guard text.utf8.count <= 253 else { throw InvalidValue(reason: "longer than 253 bytes") }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else {
            throw InvalidValue(reason: "contains a control character (such as a line feed); an instance name is one line of text")
        }
        return text
    }

    /// A listener's `name`, as systemd accepts it in `FileDescriptorName=` (so that it can match one): 1 to 255
    /// printable ASCII characters other than `:`. `admin` and `udp` are taken: echod gives passed sockets of those
    /// names to the admin endpoint and the UDP echo.
    static func socketName(_ text: String) throws(InvalidValue) -> String {
        guard !text.isEmpty else { throw InvalidValue(reason: "empty name") }
        guard text.utf8.count <= 255 else { throw InvalidValue(reason: "longer than 255 characters (systemd's limit for FileDescriptorName=)") }
        guard text.utf8.allSatisfy({ (0x20..<0x7F).contains($0) && $0 != UInt8(ascii: ":") }) else {
            throw InvalidValue(reason: "expected printable ASCII without \":\", as systemd's FileDescriptorName= takes it")
        }
        guard !ListenEntry.reservedNames.contains(text) else {
            let role = text == "admin" ? "admin endpoint" : "UDP echo"
            throw InvalidValue(reason: "reserved: a socket named \(quoted(text)) is echod's \(role) under socket activation")
        }
        return text
    }
}
