#if canImport(Glibc)
import EchodText
import Glibc
#endif

/// A numeric socket address to listen on, written `HOST:PORT` for IPv4 and `[HOST]:PORT` for IPv6.
///
/// Only numeric addresses are accepted: a daemon that resolves names at start-up depends on DNS being up
/// and can bind something other than what the operator read in the file.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family, as the listener needs it for `socket(2)`.
    public enum Family: Sendable { case ipv4, ipv6 }

    /// The numeric address in canonical form ("127.0.0.1", "::1"), without brackets.
    public var host: String
    /// The TCP port, 1...65535.
    public var port: UInt16
    /// IPv4 or IPv6, matching `host`.
    public var family: Family

    init(host: String, port: UInt16, family: Family) {
        self.host = host
        self.port = port
        self.family = family
    }

    /// Parses `"127.0.0.1:8888"`, `"0.0.0.0:7"`, `"[::1]:8888"` or `"[::]:8888"`.
    ///
    /// The host is normalised (`[0:0::1]:7` becomes `[::1]:7`) so that two spellings of one address
    /// compare equal and are caught as duplicates. The thrown problem has an empty `source` and `key`:
    /// the caller knows where the text came from.
    public init(parsing text: String) throws(ConfigProblem) {
        func fail(_ reason: String) -> ConfigProblem {
            ConfigProblem(source: "", key: "", value: text, reason: reason)
        }
        guard !text.isEmpty else { throw fail("empty address; expected HOST:PORT, e.g. 127.0.0.1:8888 or [::1]:8888") }
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw fail("missing \"]\" after the IPv6 address; expected [IPV6]:PORT, e.g. [::1]:8888")
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.first == ":" else {
                throw fail("missing port; expected [IPV6]:PORT, e.g. [\(hostPart)]:8888")
            }
            portPart = rest.dropFirst()
            guard let host = Self.canonical(String(hostPart), family: .ipv6) else {
                if hostPart.contains("%") { throw fail("IPv6 scope ids (%eth0) are not supported") }
                throw fail("\(quoted(String(hostPart))) is not a numeric IPv6 address")
            }
            self.init(host: host, port: try Self.port(portPart, fail), family: .ipv6)
        } else {
            let colons = text.count(where: { $0 == ":" })
            if colons == 0 {
                throw fail("missing port; expected HOST:PORT, e.g. \(text):8888")
            }
            if colons > 1 {
                throw fail("an IPv6 address must be written in brackets, e.g. [::1]:8888")
            }
            let colon = text.firstIndex(of: ":")!
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            guard !hostPart.isEmpty else {
                throw fail("missing host; use 0.0.0.0:\(portPart) for every IPv4 address or [::]:\(portPart) for every IPv6 address")
            }
            guard let host = Self.canonical(String(hostPart), family: .ipv4) else {
                if hostPart.contains(where: \.isLetter) {
                    throw fail("\(quoted(String(hostPart))) is a hostname; only numeric addresses are accepted (names are not resolved), e.g. 127.0.0.1 instead of localhost")
                }
                throw fail("\(quoted(String(hostPart))) is not a numeric IPv4 address")
            }
            self.init(host: host, port: try Self.port(portPart, fail), family: .ipv4)
        }
    }

    /// `127.0.0.1:8888` or `[::1]:8888`: the form `init(parsing:)` accepts.
    public var description: String {
        family == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// `0.0.0.0` or `::`: binds every address of its family.
    var isWildcard: Bool {
        host == "0.0.0.0" || host == "::"
    }

    private static func port(_ text: Substring, _ fail: (String) -> ConfigProblem) throws(ConfigProblem) -> UInt16 {
        guard !text.isEmpty else { throw fail("missing port after \":\"") }
        guard text.allSatisfy(\.isASCIIDigit) else { throw fail("port \(quoted(String(text))) is not a number") }
        guard let value = Int(text), (1...65535).contains(value) else {
            throw fail("port \(text) is out of range: must be between 1 and 65535")
        }
        return UInt16(value)
    }

    /// The canonical text of a numeric address, or nil when `inet_pton` refuses it.
    private static func canonical(_ text: String, family: Family) -> String? {
        let af = family == .ipv4 ? AF_INET : AF_INET6
        var storage = in6_addr()  // large enough for either family
        let parsed = withUnsafeMutableBytes(of: &storage) { inet_pton(af, text, $0.baseAddress) }
        guard parsed == 1 else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = withUnsafeBytes(of: &storage) { raw in
            buffer.withUnsafeMutableBufferPointer { inet_ntop(af, raw.baseAddress, $0.baseAddress, socklen_t($0.count)) }
        }
        guard ok != nil else { return nil }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
