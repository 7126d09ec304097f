import EchodEcho
import EchodEventLoop
import EchodLog
import EchodSystem
import EchodSystemd
import Logging
import Synchronization

/// One echo event loop and the thread running it. Its `service` and `acceptors` belong to the loop thread:
/// the daemon touches them only inside `loop.execute { }`.
final class Worker: @unchecked Sendable {
    let loop: EventLoop
    /// The echo counters of this loop, readable from any thread.
    let stats = EchoStats()
    /// Whether an acceptor of this loop is paused for descriptor exhaustion (for /readyz and metrics).
    let acceptPaused = Atomic<Bool>(false)
    var thread: LoopThread?
    /// Whether the loop's thread has ended on an error (control loop only): work queued to the loop would never run.
    var loopEnded = false
    var service: EchoService?
    var acceptors: [Int32: Acceptor] = [:]
    /// Which policy each listener's new connections get (loop thread only).
    var policySlots: [Int32: PolicySlot] = [:]
    /// The UDP echo counters of this loop, readable from any thread; its UDP sockets (loop thread only).
    let datagramStats = DatagramStats()
    var datagrams: [Int32: DatagramEcho] = [:]
    /// Keeping connections across restarts (``Worker+Keeping.swift``), loop thread only: this loop's own channel to
    /// systemd's fd store, the timer that feeds it, and the kept connections closed but not yet taken out of it.
    var fdStore: FDStoreChannel?
    var keepTimer: LoopTimer?
    var removals: [UInt64] = []
    var storeWarning = RateLimiter(interval: .seconds(10))
    var keepLogger = Logger(label: "echod.keep")

    init(loop: EventLoop) { self.loop = loop }

    /// On the loop thread: creates the echo service.
    func startService(limiter: ConnectionLimiter, settings: EchoService.Settings, logger: Logger, readLogger: ReadLogger) throws(IOError) {
        service = try EchoService(loop: loop, limiter: limiter, settings: settings, logger: logger, stats: stats) { loop, peer, data, total in
            readLogger.log(
                loop: loop, peerFamily: peer.family.rawValue, peerPort: peer.port, peerHigh: peer.high,
                peerLow: peer.low, data: data, totalBytes: total)
        }
    }

    /// On the loop thread: starts accepting on `listener`, its connections served by `policy` (numbered `index` by
    /// the daemon's ``PolicyRegistry``).
    func addAcceptor(_ fd: Int32, policy: ListenerPolicy, index: UInt16) throws(IOError) {
        guard acceptors[fd] == nil, let service else { return }
        service.setPolicy(policy, at: index)
        let slot = PolicySlot(index)
        let acceptor = Acceptor(
            loop: loop, listenerFD: fd,
            onAccept: { [unowned service] fd, peer in
                service.adopt(fd: fd, peer: peer, policy: slot.index)
            },
            onEvent: { [unowned service, unowned self] event in
                switch event {
                case .paused: self.acceptPaused.store(true, ordering: .relaxed)
                case .resumed, .retrying: self.acceptPaused.store(false, ordering: .relaxed)
                case .transientFailure: break
                }
                service.acceptorReported(event)
            })
        try acceptor.start()
        acceptors[fd] = acceptor
        policySlots[fd] = slot
    }

    /// On the loop thread: serves the listener's new connections by another policy (a reload changed its options);
    /// open connections keep the one they were accepted with.
    func changePolicy(_ fd: Int32, policy: ListenerPolicy, index: UInt16) {
        guard let slot = policySlots[fd], let service else { return }
        service.setPolicy(policy, at: index)
        slot.index = index
    }

    /// On the loop thread: stops accepting on `listener`.
    func removeAcceptor(_ fd: Int32) {
        acceptors.removeValue(forKey: fd)?.stop()
        policySlots[fd] = nil
    }

    /// On the loop thread: stops accepting on every listener, and serving every UDP socket.
    func removeAllAcceptors() {
        removeAllDatagrams()
        for a in acceptors.values { a.stop() }
        acceptors.removeAll()
        policySlots.removeAll()
        acceptPaused.store(false, ordering: .relaxed)
    }
}

extension Worker {
    /// Runs `work` on each worker's loop thread; once every loop has, runs `then` on `control`.
    static func onEach(
        _ workers: [Worker], reportingTo control: EventLoop, _ work: @escaping (Worker) -> Void,
        then: @escaping () -> Void
    ) {
        if workers.isEmpty {
            then()
            return
        }
        let remaining = Counter()
        remaining.value = workers.count
        let box = UncheckedBox((work, then))
        for w in workers {
            w.loop.execute {
                box.value.0(w)
                control.execute {
                    remaining.value -= 1
                    if remaining.value == 0 { box.value.1() }
                }
            }
        }
    }
}

/// The policy index an acceptor gives its connections, changed by a reload (loop thread only).
final class PolicySlot {
    var index: UInt16
    init(_ index: UInt16) { self.index = index }
}

/// A value handed between threads whose own synchronisation (the loop queues) makes it safe.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A counter confined to the control loop, captured by closures that run there.
final class Counter: @unchecked Sendable {
    var value = 0
}
