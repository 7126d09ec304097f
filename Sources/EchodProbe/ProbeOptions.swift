import EchodProxyProtocol
import EchodText

/// What `echod probe` checks.
package enum ProbeTarget: Sendable, Equatable {
    /// A UDP echo listener (`udp://HOST:PORT`): send one random datagram, expect exactly it back.
    case udp(host: String, port: UInt16)
    /// An echo listener: send random bytes, expect exactly them back.
    case echo(host: String, port: UInt16)
    /// An HTTP endpoint (the admin `/livez`, `/readyz`): healthy on status 200.
    case http(HTTPURL)
    /// An echo listener on a Unix stream socket (`unix:/PATH` or `unix:@NAME`).
    case unixEcho(UnixPath)

    /// `HOST:PORT`, `[IPV6]:PORT` or `NAME:PORT` in the one address grammar (``HostPort``); names are resolved
    /// when the probe runs, so that an unresolvable name is a result (exit 2), not a usage error.
    /// `unix:/PATH` and `unix:@NAME` (``UnixPath``) select a Unix socket.
    package static func echo(parsing text: String) throws(InvalidValue) -> ProbeTarget {
        if UnixPath.isUnix(text) { return .unixEcho(try UnixPath(parsing: text)) }
        let address = try HostPort(parsing: text)
        return .echo(host: address.host, port: address.port)
    }
}

extension ProbeTarget {
    static let udpScheme = "udp://"

    /// The target as the command line gives it: `udp://HOST:PORT` (``udp(parsing:)``), else an echo listener
    /// (``echo(parsing:)``).
    package static func parsing(_ text: String) throws(InvalidValue) -> ProbeTarget {
        text.lowercased().hasPrefix(udpScheme) ? try udp(parsing: text) : try echo(parsing: text)
    }

    /// `udp://HOST:PORT`, `udp://[IPV6]:PORT` or `udp://NAME:PORT`: the address in the one grammar (``HostPort``).
    package static func udp(parsing text: String) throws(InvalidValue) -> ProbeTarget {
        guard text.lowercased().hasPrefix(udpScheme) else { throw InvalidValue(reason: "expected udp://HOST:PORT") }
        let address = try HostPort(parsing: String(text.dropFirst(udpScheme.count)))
        return .udp(host: address.host, port: address.port)
    }
}

/// A plain `http://host[:port][/path][?query]` URL (no TLS, no user info).
package struct HTTPURL: Sendable, Equatable, CustomStringConvertible {
    package var host: String
    package var port: UInt16
    /// Path and query as sent on the request line, e.g. `/readyz?verbose`.
    package var target: String

    package init(host: String, port: UInt16, target: String) {
        self.host = host
        self.port = port
        self.target = target
    }

    /// `http://host[:port][/path][?query]`; the authority is `HOST:PORT` in the one address grammar (``HostPort``),
    /// or a host alone for port 80. A fragment is dropped (it never goes on the wire).
    package init(parsing text: String) throws(InvalidValue) {
        let lower = text.lowercased()
        if lower.hasPrefix("https://") {
            throw InvalidValue(reason: "https is not supported (the admin endpoint is plain HTTP)")
        }
        guard lower.hasPrefix("http://") else { throw InvalidValue(reason: "expected http://HOST:PORT/PATH") }
        let rest = text.dropFirst("http://".count)
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = String(rest[..<authorityEnd])
        var target = String(rest[authorityEnd...])
        if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        if authority.contains("@") { throw InvalidValue(reason: "user info is not supported") }
        guard !authority.isEmpty else { throw InvalidValue(reason: "the host is empty") }
        let hasPort = authority.hasPrefix("[") ? authority.contains("]:") : authority.contains(":")
        if hasPort {
            let address = try HostPort(parsing: authority)
            self.init(host: address.host, port: address.port, target: target)
        } else if authority.hasPrefix("[") && authority.hasSuffix("]") {
            self.init(host: String(authority.dropFirst().dropLast()), port: 80, target: target)
        } else {
            self.init(host: authority, port: 80, target: target)
        }
    }

    package var description: String {
        "http://\(bracketedHost):\(port)\(target)"
    }

    /// The `Host` header value.
    var hostHeader: String {
        port == 80 ? bracketedHost : "\(bracketedHost):\(port)"
    }

    private var bracketedHost: String { host.contains(":") ? "[\(host)]" : host }
}

/// The probe's settings.
package struct ProbeOptions: Sendable {
    package var target: ProbeTarget
    /// For the whole probe: resolving, connecting and every round trip together.
    package var timeout: Duration
    /// Bytes per echo round trip (random each time).
    package var payloadSize: Int
    /// Round trips (echo: on one connection; HTTP: one request per connection; UDP: on one socket).
    package var count: Int
    /// UDP: datagrams sent again (each with new random bytes) when no reply came, per round trip. Each send waits
    /// `timeout / (retries + 1)` for its reply (the deadline still bounds the whole probe).
    package var retries: Int
    /// Echo (TCP or Unix): send a PROXY protocol header of this version first, the kind a proxy's own health check
    /// sends (v2 LOCAL, v1 `PROXY UNKNOWN`), so that a listener expecting the header can be probed directly.
    package var proxyProtocol: ProxyVersion?

    package init(
        target: ProbeTarget, timeout: Duration = .seconds(2), payloadSize: Int = 64, count: Int = 1, retries: Int = 2,
        proxyProtocol: ProxyVersion? = nil
    ) {
        self.target = target
        self.timeout = timeout
        self.payloadSize = payloadSize
        self.count = count
        self.retries = retries
        self.proxyProtocol = proxyProtocol
    }

    /// The largest UDP payload of an IPv4 datagram (65,535 minus the IP and UDP headers); IPv6 allows 20 bytes more,
    /// but one limit for both keeps the option's meaning independent of what a name resolves to.
    package static let maximumDatagramPayload = 65_507
    /// `--retries`.
    package static let retriesRange = 0...10

    /// Why these options cannot be run, or nil (what the ranges of the single options cannot say).
    package var problem: String? {
        if case .udp = target, payloadSize > Self.maximumDatagramPayload {
            return "--payload-size must be at most \(Self.maximumDatagramPayload) bytes for udp:// (one datagram)"
        }
        if proxyProtocol != nil {
            switch target {
            case .udp: return "--proxy-protocol cannot be used with udp://: the PROXY protocol is for TCP and Unix stream listeners only"
            case .http: return "--proxy-protocol cannot be used with --http: the admin endpoint does not take the PROXY protocol"
            case .echo, .unixEcho: break
            }
        }
        return nil
    }

    package static let maximumPayloadSize = 16 << 20

    /// `--timeout`: long enough for one poll to mean something, short enough for a health check.
    package static let timeoutRange: ClosedRange<Duration> = .milliseconds(1) ... .seconds(3600)
    /// `--payload-size`.
    package static let payloadSizeRange = 1...maximumPayloadSize
    /// `--count`.
    package static let countRange = 1...1_000_000

    /// `--timeout` in the one duration grammar (``Units/parseDuration(_:)``: `2s`, `500ms`, `1m30s`).
    package static func parseTimeout(_ text: String) throws(InvalidValue) -> Duration {
        try Units.parseDuration(text, in: timeoutRange)
    }

    /// `--proxy-protocol`: `v1` or `v2`, the spelling `echod bench` takes too (``ProxyVersion/init(parsing:)``).
    package static func parseProxyProtocol(_ text: String) throws(InvalidValue) -> ProxyVersion {
        try ProxyVersion(parsing: text)
    }

    /// `--payload-size` in the one size grammar (``Units/parseSize(_:)``: `64`, `16KiB`, `1MiB`).
    package static func parsePayloadSize(_ text: String) throws(InvalidValue) -> Int {
        try Units.parseSize(text, in: payloadSizeRange)
    }
}
