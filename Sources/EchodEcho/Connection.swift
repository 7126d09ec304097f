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
    /// Over `limits.max_connections_per_ip`: accepted and closed at once.
    case perIPLimit

    package var description: String {
        switch self {
        case .peerClosed: "peer_closed"
        case .reset: "reset"
        case .idleTimeout: "idle_timeout"
        case .drainTimeout: "drain_timeout"
        case .connectionLimit: "connection_limit"
        case .perIPLimit: "per_ip_limit"
        }
    }
}

/// One echo connection's state, stored inline in the loop's fd-indexed table. About 80 bytes, no heap while idle.
/// All zeroes is a free entry (`flags` empty), as `FDTable` requires.
package struct Connection {
    package struct Flags: OptionSet, Sendable {
        package let rawValue: UInt8
        package init(rawValue: UInt8) { self.rawValue = rawValue }
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
    }

    package internal(set) var pending = PendingBuffer()
    package internal(set) var bytesIn: UInt64 = 0
    package internal(set) var bytesOut: UInt64 = 0
    /// Monotonic nanoseconds at accept.
    package internal(set) var openedAt: Int64 = 0
    /// The loop's tick at the last byte moved either way; the idle sweep compares it with the current tick.
    package internal(set) var lastActiveTick: UInt32 = 0
    package internal(set) var flags: Flags = []
    package internal(set) var peer: SocketAddress

    package init(peer: SocketAddress, openedAt: Int64, tick: UInt32) {
        self.peer = peer
        self.openedAt = openedAt
        self.lastActiveTick = tick
        self.flags = [.open, .watchingRead]
    }

    var isOpen: Bool { flags.contains(.open) }
}
