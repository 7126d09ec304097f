/// A socket address as a user writes it: `HOST:PORT`, or `[IPV6]:PORT` with the IPv6 address in brackets.
///
/// The one grammar for addresses, wherever a user types one: `listen` and `admin.listen` in the configuration
/// file and `ECHOD_*` variables, `echod probe HOST:PORT` and `--http URL`, `echod bench HOST:PORT`. What the host may
/// be is the caller's rule: the daemon takes numeric addresses only (it never depends on DNS at start-up), the
/// clients also resolve names.
package struct HostPort: Sendable, Hashable {
    /// The host without brackets: `127.0.0.1`, `::1`, `localhost`.
    package var host: String
    /// 1...65535.
    package var port: UInt16
    /// Whether the host was written in brackets (and so must be an IPv6 address).
    package var bracketed: Bool

    package init(host: String, port: UInt16, bracketed: Bool) {
        self.host = host
        self.port = port
        self.bracketed = bracketed
    }

    /// Splits `text` into host and port. The error says what is wrong and shows the expected form.
    package init(parsing text: String) throws(InvalidValue) {
        guard !text.isEmpty else {
            throw InvalidValue(reason: "empty address; expected HOST:PORT, e.g. 127.0.0.1:8888 or [::1]:8888")
        }
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw InvalidValue(reason: "missing \"]\" after the IPv6 address; expected [IPV6]:PORT, e.g. [::1]:8888")
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.first == ":" else {
                throw InvalidValue(reason: "missing port; expected [IPV6]:PORT, e.g. [\(hostPart)]:8888")
            }
            guard !hostPart.isEmpty else { throw InvalidValue(reason: "empty IPv6 address in brackets; e.g. [::1]:8888") }
            portPart = rest.dropFirst()
        } else {
            let colons = text.count(where: { $0 == ":" })
            if colons == 0 { throw InvalidValue(reason: "missing port; expected HOST:PORT, e.g. \(text):8888") }
            if colons > 1 { throw InvalidValue(reason: "an IPv6 address must be written in brackets, e.g. [::1]:8888") }
            let colon = text.firstIndex(of: ":")!
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            guard !hostPart.isEmpty else {
                throw InvalidValue(reason: "missing host; expected HOST:PORT, e.g. 127.0.0.1:\(portPart)")
            }
        }
        self.init(host: String(hostPart), port: try Self.port(portPart), bracketed: text.hasPrefix("["))
    }

    /// `127.0.0.1:8888`, `[::1]:8888`, `localhost:7`: the form `init(parsing:)` accepts. A host with a colon (an IPv6
    /// address given without brackets) is bracketed.
    package var description: String {
        bracketed || host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    private static func port(_ text: Substring) throws(InvalidValue) -> UInt16 {
        guard !text.isEmpty else { throw InvalidValue(reason: "missing port after \":\"") }
        guard text.allSatisfy(\.isASCIIDigit) else { throw InvalidValue(reason: "port \(quoted(String(text))) is not a number") }
        guard let value = Int(text), (1...65535).contains(value) else {
            throw InvalidValue(reason: "port \(text) is out of range: must be between 1 and 65535")
        }
        return UInt16(value)
    }
}

extension HostPort: CustomStringConvertible {}
