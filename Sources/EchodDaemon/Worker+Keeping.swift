import EchodEcho
import EchodEventLoop
import EchodSystem
import EchodSystemd
import Logging

/// One loop's part in keeping connections across restarts (`restart.keep_connections`): it puts its own connections
/// in systemd's fd store and takes them out again, through a channel of its own, so that a connection's fd is only
/// ever used by the thread that owns it (never a number another thread may have closed and reused meanwhile).
///
/// The store is fed on a timer, not at accept: a connection is one `FDSTORE=1` message and, once it closes, one
/// `FDSTOREREMOVE=1` (systemd removes by name, so each connection has a name of its own and a message of its own), and
/// a connection that closes before the next tick costs neither. What that leaves out: a crash within one interval of
/// a connection's accept loses that connection. Sends never block the loop: the channel is non-blocking, and what the
/// socket does not take now waits for the next tick.
extension Worker {
    /// How often the loop feeds the store.
    static let keepInterval: Duration = .milliseconds(100)

    /// On the loop thread: starts keeping this loop's connections (or stops: the kept ones are taken out of the store).
    func setKeeping(_ on: Bool, environment: [String: String]) {
        guard let service else { return }
        if on {
            if fdStore == nil {
                do throws(IOError) {
                    fdStore = try FDStoreChannel(environment: environment)
                    keepTimer = try LoopTimer(loop: loop) { [unowned self] in self.feedStore(blocking: false) }
                } catch {
                    keepLogger.error("cannot keep connections across restarts: no channel to systemd", metadata: ["error": .stringConvertible(error)])
                    fdStore?.close()
                    fdStore = nil
                    return
                }
            }
            guard fdStore != nil else { return }
            service.setKeepsConnections(true)
            keepTimer?.schedule(after: Self.keepInterval, every: Self.keepInterval)
        } else {
            service.setKeepsConnections(false)
            removals += service.releaseAllKept()
            feedStore(blocking: false)
            keepTimer?.cancel()
        }
    }

    /// Takes the closed connections out of the store, then puts the new ones in. With `blocking` (a handover, when
    /// every connection must be in the store before this process lets go of it), waits for the socket to take each
    /// message, for up to `deadline`; otherwise stops at the first that would block.
    func feedStore(blocking: Bool, deadline: Int64 = 0) {
        guard let service, let channel = fdStore else { return }
        removals += service.takeReleasedKept()
        var removed = 0
        for identity in removals {
            guard send(blocking: blocking, deadline: deadline, { channel.removeConnection(inode: identity) }) else { break }
            removed += 1
        }
        removals.removeFirst(removed)
        service.takeConnectionsToKeep { fd in
            // A socket that cannot be named is not kept (and is served on): its identity is how a restart finds it.
            guard let identity = EchoService.identity(of: fd) else { return true }
            return send(blocking: blocking, deadline: deadline) { channel.storeConnection(fd, inode: identity) }
        }
    }

    /// One message: true when it went (or failed for good, logged: retrying would not help), false when the socket
    /// would block (and, blocking, the deadline passed).
    private func send(blocking: Bool, deadline: Int64, _ message: () -> FDStoreSend) -> Bool {
        while true {
            switch message() {
            case .sent:
                return true
            case .failed(let error):
                if let suppressed = storeWarning.admit(now: Syscall.monotonicNanoseconds()) {
                    keepLogger.warning(
                        "systemd's fd store refused a message: a connection may not survive a restart",
                        metadata: ["error": .stringConvertible(error), "suppressed": .stringConvertible(suppressed)])
                }
                return true
            case .wouldBlock:
                let left = deadline - Syscall.monotonicNanoseconds()
                guard blocking, left > 0, let channel = fdStore, channel.waitWritable(timeout: .nanoseconds(left)) else { return false }
            }
        }
    }

    /// On the loop thread, at an orderly restart: every connection into the store (waiting up to `deadline`), then
    /// off this loop with its state, its fd closed (the store holds it now). What is returned goes into the state the
    /// next instance reads.
    func handOver(deadline: Int64) -> [ConnectionSnapshot] {
        guard let service else { return [] }
        feedStore(blocking: true, deadline: deadline)
        let unkept = service.connectionsToKeep
        let handed = service.handOver()
        for h in handed { Syscall.close(h.fd) }
        if unkept > 0 {
            keepLogger.warning(
                "systemd's fd store did not take every connection in time: some will be closed",
                metadata: ["connections": .stringConvertible(unkept)])
        }
        keepTimer?.close()
        keepTimer = nil
        fdStore?.close()
        fdStore = nil
        return handed.map(\.snapshot)
    }
}
