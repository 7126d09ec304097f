import EchodEventLoop
import EchodSystem

/// Why a connection ended. Used in the close log line and as a metric label.
package enum CloseReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// The peer half-closed and everything it sent was echoed back.
    case peerClosed
    /// The peer reset the connection, a read/write failed, or the loop could not change what it watches.
    case reset
    /// No byte moved either way for `limits.idle_timeout`.
    case idleTimeout
    /// Still open when `shutdown.drain_timeout` ran out.
    case drainTimeout
    /// Over `limits.max_connections`: accepted and closed at once.
    case connectionLimit
    /// Over `limits.max_connections_per_ip`: accepted and closed at once (with the PROXY protocol: once the header
    /// named the client).
    case perIPLimit
    /// A PROXY protocol header that was malformed, of a version the listener does not take, too long, or cut short
    /// by the peer's close; or bytes that are not a header at all.
    case proxyHeaderInvalid
    /// The PROXY protocol header did not arrive within the listener's `proxy_protocol_timeout`.
    case proxyHeaderTimeout
    /// A connection to a PROXY protocol listener from outside `proxy_protocol_from` (with `untrusted: refuse`).
    case proxyUntrusted

    package var description: String {
        switch self {
        case .peerClosed: "peer_closed"
        case .reset: "reset"
        case .idleTimeout: "idle_timeout"
        case .drainTimeout: "drain_timeout"
        case .connectionLimit: "connection_limit"
        case .perIPLimit: "per_ip_limit"
        case .proxyHeaderInvalid: "proxy_header_invalid"
        case .proxyHeaderTimeout: "proxy_header_timeout"
        case .proxyUntrusted: "proxy_untrusted"
        }
    }
}

/// One echo connection's state, stored inline in the loop's fd-indexed table. 130 bytes, no heap while idle
/// (a connection on a `tag: prefix` listener holds its rendered prefix, a few dozen bytes).
/// All zeroes is a free entry (`flags` empty), as `FDTable` requires.
package struct Connection {
    package struct Flags: OptionSet, Sendable {
        package let rawValue: UInt16
        package init(rawValue: UInt16) { self.rawValue = rawValue }
        /// The slot holds a live connection.
        package static let open = Flags(rawValue: 1 << 0)
        /// The peer sent EOF; nothing more will be read.
        package static let readClosed = Flags(rawValue: 1 << 1)
        /// `max_pending_bytes` is reached: reading is paused until the peer drains its echo (backpressure).
        package static let readPaused = Flags(rawValue: 1 << 2)
        /// The `connection opened` line was logged (deferred to the first byte, so that probes do not flood the log).
        package static let announced = Flags(rawValue: 1 << 3)
        /// Interest currently registered with epoll, so that an unchanged interest costs no system call.
        package static let watchingRead = Flags(rawValue: 1 << 4)
        package static let watchingWrite = Flags(rawValue: 1 << 5)
        /// A PROXY protocol listener's connection whose header is not complete yet: nothing is echoed.
        package static let awaitingHeader = Flags(rawValue: 1 << 6)
        /// `peer` is the client a PROXY header named; `proxy` is the real peer.
        package static let proxied = Flags(rawValue: 1 << 7)
        /// The connection is counted against `max_connections_per_ip` (for `peer`); a connection waiting for its
        /// header is counted only in the total, as its client is not known yet.
        package static let countedPerIP = Flags(rawValue: 1 << 8)
        /// `tag: prefix`: every line comes back after the tag.
        package static let prefixing = Flags(rawValue: 1 << 9)
        /// In `prefix` mode: the last byte echoed was not a newline, so the next byte continues a line (no prefix).
        package static let midLine = Flags(rawValue: 1 << 10)
        /// `tag: hostname-only`: the tag line is all we send; reads are discarded until the peer closes.
        package static let discarding = Flags(rawValue: 1 << 11)
        /// Our sending direction is shut (FIN sent after the host-name line).
        package static let writeShut = Flags(rawValue: 1 << 12)
        /// The connection is also in the service manager's keeping (restart.keep_connections), so that it outlives
        /// this process: closing it must take it out of there too (``EchoService/releaseKept(fd:)``).
        package static let kept = Flags(rawValue: 1 << 13)
        /// Queued to be put in keeping (``EchoService/takeConnectionsToKeep(_:)``), not yet kept.
        package static let keepQueued = Flags(rawValue: 1 << 14)
        /// Another process may hold this socket too (systemd's fd store, now or until it handles a removal): its
        /// epoll registration outlives our close(2), which removes it only with the last descriptor of the socket, and
        /// a socket that closes stays ready forever there. It is taken out of the epoll set explicitly first.
        package static let shared = Flags(rawValue: 1 << 15)

        /// What a handover carries to the next instance: the connection's state, not this loop's bookkeeping
        /// (epoll interest, the pause, the per-IP count and keeping are worked out again where it lands).
        package static let handedOver: Flags = [
            .readClosed, .announced, .awaitingHeader, .proxied, .prefixing, .midLine, .discarding, .writeShut,
        ]

        /// Any mode off the plain echo path.
        static let special: Flags = [.awaitingHeader, .prefixing, .discarding]
    }

    package internal(set) var pending = PendingBuffer()
    package internal(set) var bytesIn: UInt64 = 0
    package internal(set) var bytesOut: UInt64 = 0
    /// Monotonic nanoseconds at accept.
    package internal(set) var openedAt: Int64 = 0
    /// The loop's tick at the last byte moved either way; the idle sweep compares it with the current tick.
    package internal(set) var lastActiveTick: UInt32 = 0
    package internal(set) var flags: Flags = []
    /// The client: the real peer, or the address a PROXY protocol header named.
    package internal(set) var peer: SocketAddress
    /// The real peer (the proxy) when `flags` has `.proxied`.
    package internal(set) var proxy: SocketAddress = .unspecified
    /// The index of the listener's ``ListenerPolicy`` in the service's table.
    package internal(set) var policy: UInt16 = 0
    /// The io_uring backend's requests and queue for a connection served by completions.
    package internal(set) var ring = RingState()
    /// `prefix` mode: the rendered prefix (tag and space), allocated when the mode starts and freed at close.
    var prefixBytes: UnsafeMutableRawPointer? = nil
    var prefixCount: UInt16 = 0

    package init(peer: SocketAddress, openedAt: Int64, tick: UInt32) {
        self.peer = peer
        self.openedAt = openedAt
        self.lastActiveTick = tick
        self.flags = [.open, .watchingRead]
    }

    var isOpen: Bool { flags.contains(.open) }
}
