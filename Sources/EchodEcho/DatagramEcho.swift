import EchodEventLoop
import EchodSystem
import Logging

/// The UDP echo of one socket (RFC 862, UDP): each datagram that passes the guard (``DatagramGuard``) goes back to
/// its source unchanged, from the local address it was sent to.
///
/// On readable, the socket is drained in batches: one `recvmmsg` of up to ``batchSize`` datagrams, a decision per
/// datagram, one `sendmmsg` of the accepted ones. Every buffer is allocated here, once (``DatagramBatch``); the time
/// is read once per batch. At most ``batchesPerWakeup`` batches per readiness event: the socket is watched
/// level-triggered, so whatever is left is read at the loop's next turn, after the other handlers of this turn (a
/// flooded socket cannot starve the TCP connections of its loop).
///
/// One socket, one loop: created, used and destroyed on the loop thread; other threads reach it through
/// `loop.execute`. The owner closes the descriptor after ``stop()``.
package final class DatagramEcho: EventHandler, @unchecked Sendable {
    /// Datagrams per `recvmmsg`/`sendmmsg`.
    package static let batchSize = 32
    /// Batches per readiness event before yielding to the loop.
    package static let batchesPerWakeup = 8
    /// A flood of drops costs one warning per reason per interval, with the suppressed count.
    package static let warningInterval: Duration = .seconds(10)

    package unowned let loop: EventLoop
    package let fd: Int32
    package let stats: DatagramStats
    private let batch: DatagramBatch
    /// Behind a pointer, as `EchoService.machine` is: no dynamic exclusivity check per datagram.
    private let state: UnsafeMutablePointer<DatagramGuard>
    private let warnings: UnsafeMutablePointer<RateLimiter>
    private let logger: Logger
    private var registered = false

    /// - Parameter slotSize: the receive buffer per datagram; smaller than the default only in tests (truncation).
    package init(
        loop: EventLoop, fd: Int32, settings: DatagramGuard.Settings, stats: DatagramStats, logger: Logger = Logger(label: "echod.udp"),
        slotSize: Int = DatagramBatch.maximumDatagram
    ) throws(IOError) {
        self.loop = loop
        self.fd = fd
        self.stats = stats
        var logger = logger
        logger[metadataKey: "loop"] = .stringConvertible(loop.index)
        self.logger = logger
        batch = try DatagramBatch(count: Self.batchSize, slotSize: slotSize)
        state = .allocate(capacity: 1)
        state.initialize(to: DatagramGuard(settings: settings, now: Syscall.monotonicNanoseconds(), seed: UInt64.random(in: .min ... .max)))
        warnings = .allocate(capacity: DropReason.allCases.count)
        warnings.initialize(repeating: RateLimiter(interval: Self.warningInterval), count: DropReason.allCases.count)
        super.init()
    }

    deinit {
        state.pointee.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
        warnings.deinitialize(count: DropReason.allCases.count)
        warnings.deallocate()
    }

    /// Starts serving (loop thread).
    package func start() throws(IOError) {
        loop.assertInLoop()
        try loop.register(fd: fd, interest: .read, handler: self)
        registered = true
    }

    /// Stops serving (loop thread); the descriptor stays open for its owner to close.
    package func stop() {
        loop.assertInLoop()
        if registered { loop.deregister(fd: fd, willClose: false) }
        registered = false
    }

    /// Applies new guard settings (reload; loop thread).
    package func apply(_ settings: DatagramGuard.Settings) {
        loop.assertInLoop()
        state.pointee.apply(settings, now: Syscall.monotonicNanoseconds())
    }

    /// The guard's settings in force (loop thread; tests).
    package var settings: DatagramGuard.Settings { state.pointee.settings }

    // MARK: The hot path

    override package func handleEvent(fd: Int32, events: UInt32) {
        var rounds = 0
        while rounds < Self.batchesPerWakeup {
            rounds += 1
            let received: Int
            do throws(IOError) {
                received = try batch.receive(fd)
            } catch {
                // Not expected on an unconnected UDP socket (ICMP errors are not reported without IP_RECVERR). Back
                // to the loop rather than retry here: the socket is level-triggered, so waiting data brings it back.
                warnError(error)
                return
            }
            if received == 0 { return }
            serve(received)
            if received < batch.count { return }
        }
    }

    @inline(__always)
    private func serve(_ received: Int) {
        let now = Syscall.monotonicNanoseconds()
        var replies = 0
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0
        var i = 0
        while i < received {
            let info = batch.info(i)
            let slot = i
            i += 1
            bytesIn &+= UInt64(info.length)
            guard let source = info.source else { continue }
            if info.truncated {
                drop(.truncated, source, now)
                continue
            }
            if let reason = state.pointee.decide(
                source: source, destination: info.destination, localAddress: info.localAddress, length: info.length, now: now)
            {
                drop(reason, source, now)
                continue
            }
            batch.queueReply(slot: slot, at: replies)
            replies += 1
            bytesOut &+= UInt64(info.length)
        }
        stats.received.add(UInt64(received))
        stats.bytesReceived.add(bytesIn)
        guard replies > 0 else { return }
        let (sent, unsentBytes) = send(replies)
        stats.sent.add(UInt64(sent))
        stats.bytesSent.add(bytesOut &- unsentBytes)
    }

    /// Sends the queued replies: how many went. A full socket buffer drops the rest of the batch (a reflector must
    /// never queue); a reply the kernel refuses is skipped and counted.
    @inline(__always)
    private func send(_ count: Int) -> (sent: Int, unsentBytes: UInt64) {
        var next = 0
        var sent = 0
        var unsentBytes: UInt64 = 0
        while next < count {
            do throws(IOError) {
                switch try batch.send(fd, from: next, to: count) {
                case .processed(let n):
                    next += n
                    sent += n
                case .wouldBlock:
                    for position in next..<count { unsentBytes &+= UInt64(batch.replyLength(position)) }
                    dropUnsent(count - next)
                    return (sent, unsentBytes)
                }
            } catch {
                unsentBytes &+= UInt64(batch.replyLength(next))
                dropUnsent(1)
                warnError(error)
                next += 1
            }
        }
        return (sent, unsentBytes)
    }

    private func dropUnsent(_ count: Int) {
        stats.dropped[DropReason.sendFailed.rawValue].add(UInt64(count))
        if let suppressed = warnings[DropReason.sendFailed.rawValue].admit(now: Syscall.monotonicNanoseconds()) {
            logger.warning(
                "UDP replies dropped: the socket's send buffer is full",
                metadata: ["reason": "send_failed", "dropped": .stringConvertible(count), "suppressed": .stringConvertible(suppressed)])
        }
    }

    @inline(__always)
    private func drop(_ reason: DropReason, _ source: SocketAddress, _ now: Int64) {
        stats.dropped[reason.rawValue].add(1)
        if let suppressed = warnings[reason.rawValue].admit(now: now) {
            warnDrop(reason, source, suppressed)
        }
    }

    private func warnDrop(_ reason: DropReason, _ source: SocketAddress, _ suppressed: Int) {
        logger.warning(
            "UDP datagram not answered",
            metadata: [
                "reason": .stringConvertible(reason), "source": .stringConvertible(source),
                "suppressed": .stringConvertible(suppressed),
            ])
    }

    private func warnError(_ error: IOError) {
        if let suppressed = warnings[DropReason.sendFailed.rawValue].admit(now: Syscall.monotonicNanoseconds()) {
            logger.warning("UDP socket error", metadata: ["error": .stringConvertible(error), "suppressed": .stringConvertible(suppressed)])
        }
    }
}
