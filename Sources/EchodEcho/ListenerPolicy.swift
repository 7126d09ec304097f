import EchodProxyProtocol
import EchodSystem

/// How the connections of one listener are served: the PROXY protocol and instance tagging, both off by default (a
/// plain listener is byte-exact RFC 862). The daemon builds one from each `listen` entry; the echo service keeps the
/// policies of its listeners in a table, and each connection carries the index of its listener's.
package struct ListenerPolicy: Sendable {
    /// What a connection from outside `trusted` gets on a listener that takes the PROXY protocol.
    package enum Untrusted: Sendable, Equatable {
        /// Closed at accept: only the configured proxies may connect.
        case refuse
        /// Served as a plain echo, without a header (a header it sends is echoed like any other bytes).
        case serve
    }

    /// Instance tagging: what the connection gets besides (or instead of) the echo.
    package enum Tag: Sendable, Equatable {
        case off
        /// One line made from the template on connect, then the byte-exact echo.
        case banner
        /// Every line the client sends comes back as the tag, a space, then the line.
        case prefix
        /// The tag line, then our side closes; what the client sends is read and discarded.
        case hostnameOnly
    }

    /// A tag template with everything but the client's address filled in by the daemon (host name, instance, pid...):
    /// the address is only known per connection, after the PROXY header.
    package enum TagPiece: Sendable, Equatable {
        case text([UInt8])
        case client
    }

    /// The listener's name in logs (`127.0.0.1:9000`, `unix:/run/echod/echo.sock (from systemd)`).
    package var label: String
    /// nil: the PROXY protocol is off.
    package var proxy: ProxyProtocolMode?
    /// Whether a connection's real peer may send a header (for a Unix listener, every peer: its file mode decides who
    /// connects). Called once per accepted connection on a PROXY listener.
    package var trusts: @Sendable (SocketAddress) -> Bool
    package var untrusted: Untrusted
    /// The whole header must have arrived within this long of the accept.
    package var headerTimeout: Duration
    package var tag: Tag
    package var tagPieces: [TagPiece]

    /// The longest tag line (banner, host name) echod sends, and the longest line prefix; a longer expansion is cut.
    /// Kept small so that the tag always fits in a connection's pending buffer (`max_pending_bytes` is at least 4 KiB)
    /// next to the output of one read.
    package static let maximumTagBytes = 1024

    package init(
        label: String, proxy: ProxyProtocolMode? = nil, trusts: @escaping @Sendable (SocketAddress) -> Bool = { _ in true },
        untrusted: Untrusted = .refuse, headerTimeout: Duration = .seconds(3), tag: Tag = .off, tagPieces: [TagPiece] = []
    ) {
        self.label = label
        self.proxy = proxy
        self.trusts = trusts
        self.untrusted = untrusted
        self.headerTimeout = headerTimeout
        self.tag = tag
        self.tagPieces = tagPieces
    }

    /// A plain listener: no header, no tag.
    package static func plain(label: String) -> ListenerPolicy { ListenerPolicy(label: label) }

    /// Whether the template needs the connection's address (rendered per connection, after its header).
    var tagUsesClient: Bool { tagPieces.contains(.client) }

    /// The tag as bytes for one connection: the template's pieces with `client` filled in, cut at
    /// ``maximumTagBytes``, plus what the mode adds (a newline for the banner and the host-name line unless the text
    /// ends with one; a space after a line prefix). Called once per connection, never per read.
    func renderTag(client: SocketAddress) -> [UInt8] {
        var bytes: [UInt8] = []
        for piece in tagPieces {
            switch piece {
            case .text(let text): bytes += text
            case .client: bytes += Array(client.description.utf8)
            }
        }
        let suffix: [UInt8]
        switch tag {
        case .off: return []
        case .prefix: suffix = [UInt8(ascii: " ")]
        case .banner, .hostnameOnly: suffix = bytes.last == UInt8(ascii: "\n") ? [] : [UInt8(ascii: "\n")]
        }
        if bytes.count + suffix.count > Self.maximumTagBytes {
            bytes.removeLast(bytes.count + suffix.count - Self.maximumTagBytes)
        }
        return bytes + suffix
    }
}
