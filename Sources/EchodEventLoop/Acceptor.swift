import CEchodLinux
import EchodSystem
import Glibc

/// Accepts connections from one listening socket on one loop and hands each to `onAccept`.
///
/// Several loops share one listening descriptor, each registering it with `EPOLLEXCLUSIVE`, so that a new
/// connection wakes one loop, not all of them. We chose one shared socket over one `SO_REUSEPORT` socket per
/// loop because it works the same for sockets systemd passes in (exactly one fd per address), a stalled loop
/// strands no connections that the kernel hashed to it, and a reload adds or removes one fd per address.
///
/// Descriptor exhaustion (`EMFILE`/`ENFILE`, also `ENOBUFS`/`ENOMEM`) must not busy-spin the core: the listener
/// stays readable, so a level-triggered loop would wake and fail forever — the bug libuv, tokio, node and
/// SwiftNIO's classic bootstrap all had. Instead the listener is taken out of this loop's epoll set and re-armed
/// by a timer with exponential back-off, while existing connections are served as usual.
package final class Acceptor: EventHandler {
    /// What happened, for the layer above to log and count.
    package enum Event {
        /// Accepting stopped on exhaustion (or re-arming the listener after a pause failed); it is retried after
        /// the given delay, which doubles with each failed attempt up to ``Acceptor/maximumBackoff``.
        case paused(IOError, retryAfter: Duration)
        /// Accepting works again after a pause (a connection was accepted).
        case resumed
        /// After a pause, the listener is watched again; the next accept shows whether descriptors are back.
        case retrying
        /// An accept failed for a reason that affects only that one connection (e.g. `ECONNABORTED`).
        case transientFailure(IOError)
    }

    package let listenerFD: Int32
    private unowned let loop: EventLoop
    private let onAccept: (Int32, SocketAddress) -> Void
    private let onEvent: (Event) -> Void
    private var retryTimer: LoopTimer?
    private var backoff: Duration = .zero
    private var registered = false
    private var enabled = false
    private var peer = sockaddr_storage()

    /// The longest run of accepts in one turn, so that a connection flood cannot starve established connections.
    package static let acceptBatch = 64
    static let minimumBackoff: Duration = .milliseconds(10)
    static let maximumBackoff: Duration = .seconds(1)

    package init(loop: EventLoop, listenerFD: Int32, onAccept: @escaping (Int32, SocketAddress) -> Void, onEvent: @escaping (Event) -> Void) {
        self.loop = loop
        self.listenerFD = listenerFD
        self.onAccept = onAccept
        self.onEvent = onEvent
    }

    /// Starts accepting on this loop.
    package func start() throws(IOError) {
        loop.assertInLoop()
        // The retry timer is made now: at exhaustion time there would be no descriptor left for its timerfd.
        if retryTimer == nil {
            retryTimer = try LoopTimer(loop: loop) { [unowned self] in self.retry() }
        }
        enabled = true
        try arm()
    }

    /// Stops accepting on this loop (drain, or a listener removed by reload). The descriptor stays open: other
    /// loops may still use it, and its owner closes it.
    package func stop() {
        loop.assertInLoop()
        enabled = false
        retryTimer?.cancel()
        retryTimer?.close()
        retryTimer = nil
        if registered {
            loop.deregister(fd: listenerFD, willClose: false)
            registered = false
        }
    }

    private func arm() throws(IOError) {
        guard enabled, !registered else { return }
        try loop.register(fd: listenerFD, interest: [.read, .exclusive], handler: self)
        registered = true
    }

    /// The back-off timer fired: watch the listener again. If even that fails (`epoll_ctl` out of memory or watches,
    /// the loop's descriptor table full, the descriptor still broken), this is one more failed attempt: report it and
    /// wait longer, as after a failed accept. Giving up here would leave this loop never accepting again.
    private func retry() {
        do throws(IOError) {
            try arm()
        } catch {
            pause(error)
            return
        }
        onEvent(.retrying)
    }

    override package func handleEvent(fd: Int32, events: UInt32) {
        var accepted = 0
        while accepted < Self.acceptBatch {
            do throws(IOError) {
                guard let connection = try Socket.accept(listenerFD, peer: &peer) else { break }
                accepted += 1
                if backoff != .zero {
                    backoff = .zero
                    onEvent(.resumed)
                }
                let address = withUnsafePointer(to: &peer) { Socket.peerAddress(of: connection, accepted: $0) }
                guard let address else {
                    Syscall.close(connection)  // neither IP nor Unix, or a Unix peer whose credentials are unreadable
                    continue
                }
                onAccept(connection, address)
            } catch {
                switch error.errno {
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    pause(error)
                    return
                case EBADF, EINVAL, ENOTSOCK, EOPNOTSUPP:
                    // The listener itself is broken (closed under us): stop rather than spin.
                    pause(error)
                    return
                default:
                    // ECONNABORTED, EPERM (firewall), EPROTO, ETIMEDOUT...: that one connection is gone.
                    onEvent(.transientFailure(error))
                }
            }
        }
    }

    private func pause(_ error: IOError) {
        if registered {
            loop.deregister(fd: listenerFD, willClose: false)
            registered = false
        }
        backoff = backoff == .zero ? Self.minimumBackoff : min(backoff * 2, Self.maximumBackoff)
        onEvent(.paused(error, retryAfter: backoff))
        retryTimer?.schedule(after: backoff)
    }
}
