import EchodEventLoop
import EchodSystem
import Synchronization

/// The global and per-IP connection limits, shared by every loop. "Per IP" is per `SocketAddress.hostKey`: an IP
/// address, or for Unix-socket peers a uid.
///
/// Touched once at accept and once at close, never per read, so a mutex is fine here. The per-IP counts are kept
/// under it even while the per-IP limit is off, so that a reload can switch the limit on with correct counts for the
/// connections already open. The global count is an atomic, checked first, so that a connection over the global
/// limit is refused without taking the lock.
package final class ConnectionLimiter: Sendable {
    package enum Verdict: Equatable { case admitted, overTotal, overPerIP }

    private let total = Atomic<Int>(0)
    private let maxTotal: Atomic<Int>
    private let maxPerIP: Atomic<Int>
    private let perIP = Mutex<[HostKey: Int32]>([:])

    package init(maxConnections: Int, maxPerIP: Int) {
        maxTotal = Atomic(maxConnections)
        self.maxPerIP = Atomic(maxPerIP)
    }

    /// Applies new limits (reload). Connections over a lowered limit stay; new ones are refused until below it.
    package func setLimits(maxConnections: Int, maxPerIP: Int) {
        maxTotal.store(maxConnections, ordering: .relaxed)
        self.maxPerIP.store(maxPerIP, ordering: .relaxed)
    }

    /// Open connections, all loops together.
    package var openConnections: Int { total.load(ordering: .relaxed) }

    /// Counts a new connection from `host` if the limits allow it.
    package func admit(_ host: HostKey) -> Verdict {
        guard admitTotal() else { return .overTotal }
        guard admitPerIP(host) else {
            releaseTotal()
            return .overPerIP
        }
        return .admitted
    }

    /// Counts a new connection against `max_connections` only: one whose client is not known yet (a PROXY protocol
    /// header will name it; ``admitPerIP(_:)`` then counts it for that client).
    package func admitTotal() -> Bool {
        let now = total.wrappingAdd(1, ordering: .relaxed).newValue
        if now > maxTotal.load(ordering: .relaxed) {
            total.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Counts a connection from `host` against `max_connections_per_ip`, if the limit allows it.
    package func admitPerIP(_ host: HostKey) -> Bool {
        let limit = maxPerIP.load(ordering: .relaxed)
        return perIP.withLock { counts -> Bool in
            let current = counts[host, default: 0]
            if limit > 0 && Int(current) >= limit { return false }
            counts[host] = current + 1
            return true
        }
    }

    /// Counts a connection that exists already (taken over from the previous instance at a restart), for `host` too
    /// unless nil (its client is not known yet). Never refused: like a lowered limit, a count over the limit only
    /// makes new connections wait.
    package func adoptExisting(_ host: HostKey?) {
        total.wrappingAdd(1, ordering: .relaxed)
        if let host { perIP.withLock { $0[host, default: 0] += 1 } }
    }

    /// Forgets a connection that `admit` admitted.
    package func release(_ host: HostKey) {
        releaseTotal()
        releasePerIP(host)
    }

    /// Forgets a connection counted by ``admitTotal()`` alone.
    package func releaseTotal() {
        total.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Forgets a connection counted by ``admitPerIP(_:)``.
    package func releasePerIP(_ host: HostKey) {
        perIP.withLock { counts in
            guard let current = counts[host] else { return }
            if current <= 1 { counts[host] = nil } else { counts[host] = current - 1 }
        }
    }
}
