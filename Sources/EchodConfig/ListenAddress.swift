import EchodSystem
import EchodText

/// A numeric socket address to listen on, written `HOST:PORT` for IPv4 and `[HOST]:PORT` for IPv6.
///
/// Only numeric addresses are accepted: a daemon that resolves names at start-up depends on DNS being up
/// and can bind something other than what the operator read in the file.
package struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family, as the listener needs it for `socket(2)`.
    package enum Family: Sendable { case ipv4, ipv6 }

    /// The numeric address in canonical form ("127.0.0.1", "::1"), without brackets.
    package var host: String
    /// The TCP port, 1...65535.
    package var port: UInt16
    /// IPv4 or IPv6, matching `host`.
    package var family: Family

    init(host: String, port: UInt16, family: Family) {
        self.host = host
        self.port = port
        self.family = family
    }

    /// Parses `"127.0.0.1:8888"`, `"0.0.0.0:7"`, `"[::1]:8888"` or `"[::]:8888"`.
    ///
    /// `HostPort` splits the text (the one address grammar of echod); the rule added here is that the host is a
    /// numeric address of the family its brackets say. The host is normalised (`[0:0::1]:7` becomes `[::1]:7`) so
    /// that two spellings of one address compare equal and are caught as duplicates. The thrown problem has an
    /// empty `source` and `key`: the caller knows where the text came from.
    package init(parsing text: String) throws(ConfigProblem) {
        func fail(_ reason: String) -> ConfigProblem {
            ConfigProblem(source: "", key: "", value: text, reason: reason)
        }
        let parsed: HostPort
        do {
            parsed = try HostPort(parsing: text)
        } catch {
            // A listener's own advice for a missing host: a wildcard binds every address of its family.
            if text.first == ":" && !text.dropFirst().contains(":") {
                let port = text.dropFirst()
                throw fail("missing host; use 0.0.0.0:\(port) for every IPv4 address or [::]:\(port) for every IPv6 address")
            }
            throw fail(error.reason)
        }
        let hostText = parsed.host
        if parsed.bracketed {
            guard let address = SocketAddress(host: hostText, port: parsed.port), address.family == .ipv6 else {
                if hostText.contains("%") { throw fail("IPv6 scope ids (%eth0) are not supported") }
                throw fail("\(quoted(hostText)) is not a numeric IPv6 address")
            }
            self.init(host: address.host, port: parsed.port, family: .ipv6)
        } else {
            // Unbracketed, the host has no colon (HostPort refuses that), so it cannot parse as IPv6.
            guard let address = SocketAddress(host: hostText, port: parsed.port) else {
                if hostText.contains(where: \.isLetter) {
                    throw fail(
                        "\(quoted(hostText)) is a hostname; only numeric addresses are accepted (names are not resolved), e.g. 127.0.0.1 instead of localhost")
                }
                throw fail("\(quoted(hostText)) is not a numeric IPv4 address")
            }
            self.init(host: address.host, port: parsed.port, family: .ipv4)
        }
    }

    /// `127.0.0.1:8888` or `[::1]:8888`: the form `init(parsing:)` accepts.
    package var description: String {
        family == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// `0.0.0.0` or `::`: binds every address of its family.
    var isWildcard: Bool {
        host == "0.0.0.0" || host == "::"
    }
}
