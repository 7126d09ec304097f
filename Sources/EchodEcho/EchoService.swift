import EchodEventLoop
import EchodProxyProtocol
import EchodSystem
import Glibc
import Logging

/// The echo service of one event loop: owns that loop's connections outright, in a flat table indexed by fd.
///
/// Created, used and destroyed on its loop's thread; other threads reach it only through `loop.execute`.
package final class EchoService: CompletionHandler, @unchecked Sendable {
    /// What can change at run time (reload).
    package struct Settings: Sendable, Equatable {
        package var maxPendingBytes: Int
        /// `.zero` turns the idle timeout off.
        package var idleTimeout: Duration
        package var logReads: Bool

        package init(maxPendingBytes: Int, idleTimeout: Duration, logReads: Bool) {
            self.maxPendingBytes = maxPendingBytes
            self.idleTimeout = idleTimeout
            self.logReads = logReads
        }
    }

    package unowned let loop: EventLoop
    package let stats: EchoStats
    let limiter: ConnectionLimiter
    var logger: Logger
    /// Behind a pointer rather than a stored `var`: an `inout` use of a class's stored property costs a dynamic
    /// exclusivity check (`swift_beginAccess`/`swift_endAccess`) on every event; this state has one owner, the
    /// loop thread, and is never reached re-entrantly.
    let machine: UnsafeMutablePointer<EchoMachine>
    let io: SocketIO
    let table: FDTable<Connection>
    var highestFD: Int32 = -1
    /// Connections open on this loop.
    package internal(set) var openCount = 0
    private(set) var settings: Settings
    var tick: UInt32 = 0
    private var idleTicks: UInt32 = 0
    private var sweepTimer: LoopTimer?
    var onDrained: (() -> Void)?
    /// A flood of refused connections or accept failures costs one warning per interval, with a suppressed count.
    private var limitWarning = RateLimiter(interval: .seconds(10))
    private var acceptWarning = RateLimiter(interval: .seconds(10))
    private var headerWarning = RateLimiter(interval: .seconds(10))
    /// The policies of the listeners this loop accepts on, by the index the daemon gave each (``setPolicy(_:at:)``);
    /// index 0 is a plain listener. Entries are replaced, never removed: a connection keeps its index for life.
    var policies: [ListenerPolicy] = [.plain(label: "")]
    /// Connections still waiting for their PROXY header, for the sweep that times them out.
    var awaitingHeaders = 0
    /// Whether connections are kept across restarts (``EchoService+Keeping.swift``): each one is queued, at accept, for
    /// the daemon to put in the service manager's keeping, and taken out of it when it closes.
    package internal(set) var keepsConnections = false
    /// Connections to be put in keeping (fds; a closed or reused fd is skipped by its flags).
    var keepQueue: [Int32] = []
    /// The identities (socket inodes) of kept connections closed since the daemon last asked.
    var releasedKept: [UInt64] = []
    /// The io_uring backend (``EchoService+Completions.swift``): the loop's provided buffers, each buffer's successor
    /// in its connection's queue and its received length (indexed by buffer id), and the connections waiting for
    /// buffers to come back. All nil or empty with epoll.
    var ringBuffers: ProvidedBuffers?
    var bufferNext: UnsafeMutablePointer<UInt16>?
    var bufferLength: UnsafeMutablePointer<UInt32>?
    var starved: [Int32] = []
    let ringBufferCount: Int
    /// The most buffers one connection holds (``updateMaxQueued()``).
    var maxQueued: UInt16 = 1

    /// Where per-read records go when `log.reads` is on: a sink that copies the fields and the first bytes
    /// without allocating or formatting (the daemon passes the log backend's `ReadLogger`). Reads are not logged
    /// through swift-log: a `Logger` call per read would allocate its metadata on the loop thread.
    package typealias ReadLogSink = (_ loop: Int32, _ peer: SocketAddress, _ data: UnsafeRawBufferPointer, _ totalBytes: Int) -> Void
    private let readLogSink: ReadLogSink

    /// How often the idle sweep runs; also the resolution of `idle_timeout`.
    package static let tickInterval: Duration = .seconds(1)

    /// - Parameter ringBufferCount: with the io_uring backend, the most provided buffers (a power of two, at most
    ///   ``ringBufferLimit``; fewer in tests of running out).
    package init(
        loop: EventLoop, limiter: ConnectionLimiter, settings: Settings, logger: Logger, stats: EchoStats = EchoStats(),
        ringBufferCount: Int = EchoService.ringBufferLimit, readLogSink: @escaping ReadLogSink
    ) throws(IOError) {
        self.loop = loop
        self.ringBufferCount = ringBufferCount
        self.readLogSink = readLogSink
        self.stats = stats
        self.limiter = limiter
        self.settings = settings
        self.logger = logger
        self.logger[metadataKey: "loop"] = .stringConvertible(loop.index)
        machine = .allocate(capacity: 1)
        machine.initialize(to: EchoMachine(maxPending: settings.maxPendingBytes))
        io = SocketIO(loop: loop)
        table = try FDTable<Connection>()
        super.init()
        idleTicks = Self.ticks(settings.idleTimeout)
        sweepTimer = try LoopTimer(loop: loop) { [unowned self] in self.sweep() }
        sweepTimer?.schedule(after: Self.tickInterval, every: Self.tickInterval)
        try prepareCompletions()
    }

    // MARK: Accepting

    /// Sets the policy that connections accepted with index `index` are served by (the daemon numbers the
    /// listeners' policies; a reload that changes one gives it a new index, so open connections keep theirs).
    package func setPolicy(_ policy: ListenerPolicy, at index: UInt16) {
        loop.assertInLoop()
        while policies.count <= Int(index) { policies.append(.plain(label: "")) }
        policies[Int(index)] = policy
    }

    /// Takes ownership of a freshly accepted connection (called by an `Acceptor` on this loop), served by the policy
    /// at index `policy`.
    package func adopt(fd: Int32, peer: SocketAddress, policy index: UInt16 = 0) {
        loop.assertInLoop()
        let policy = policies[Int(index)]
        var awaitingHeader = false
        if policy.proxy != nil {
            if policy.trusts(peer) {
                awaitingHeader = true
            } else if policy.untrusted == .refuse {
                Syscall.close(fd)
                stats.accepted.add(1)
                stats.closed[CloseReason.proxyUntrusted.rawValue].add(1)
                warnHeader("connection refused: not from an address in proxy_protocol_from", peer: peer, policy: policy)
                return
            }
        }
        // A connection whose header is to come counts in the total only: its client is not known yet.
        switch awaitingHeader ? (limiter.admitTotal() ? .admitted : .overTotal) : limiter.admit(peer.hostKey) {
        case .admitted:
            break
        case .overTotal:
            Syscall.close(fd)
            stats.rejected(.connectionLimit)
            warnLimit("connection refused: limits.max_connections reached", peer: peer)
            return
        case .overPerIP:
            Syscall.close(fd)
            stats.rejected(.perIPLimit)
            warnLimit("connection refused: limits.max_connections_per_ip reached", peer: peer)
            return
        }
        // TCP only: a Unix socket has no Nagle delay (and would refuse the option, one wasted call per connection).
        if peer.family != .unix { Socket.setNoDelay(fd) }
        let completions = !awaitingHeader && servedByCompletions(policy)
        do throws(IOError) {
            if completions {
                try loop.attach(fd: fd, handler: self)
            } else {
                try loop.register(fd: fd, interest: .read, handler: self)
            }
        } catch {
            Syscall.close(fd)
            if awaitingHeader { limiter.releaseTotal() } else { limiter.release(peer.hostKey) }
            logger.error("cannot watch accepted connection", metadata: ["peer": .stringConvertible(peer), "error": .stringConvertible(error)])
            return
        }
        let c = table[fd]
        c.pointee = Connection(peer: peer, openedAt: Syscall.monotonicNanoseconds(), tick: tick)
        c.pointee.policy = index
        if fd > highestFD { highestFD = fd }
        openCount += 1
        stats.accepted.add(1)
        logger.trace("connection accepted", metadata: ["peer": .stringConvertible(peer)])
        if keepsConnections { queueForKeeping(c, fd: fd) }
        if completions {
            startServing(c, fd: fd)
            return
        }
        if awaitingHeader {
            c.pointee.flags.insert(.awaitingHeader)
            awaitingHeaders += 1
        } else {
            c.pointee.flags.insert(.countedPerIP)
            if policy.tag != .off, case .close(let reason) = startTagging(c, fd: fd, policy: policy) { close(fd: fd, reason: reason) }
        }
    }

    /// Logs and counts what an `Acceptor` reports.
    package func acceptorReported(_ event: Acceptor.Event) {
        switch event {
        case .paused(let error, let retry):
            stats.acceptPauses.add(1)
            if let suppressed = acceptWarning.admit(now: Syscall.monotonicNanoseconds()) {
                logger.warning(
                    "accepting paused: out of descriptors or memory; serving existing connections, retrying",
                    metadata: [
                        "error": .stringConvertible(error), "retry_ms": .stringConvertible(retry.nanoseconds / 1_000_000),
                        "suppressed": .stringConvertible(suppressed),
                    ])
            }
        case .resumed:
            logger.notice("accepting resumed")
        case .retrying:
            break
        case .transientFailure(let error):
            logger.debug("accept failed for one connection", metadata: ["error": .stringConvertible(error)])
        }
    }

    private func warnHeader(_ message: Logger.Message, peer: SocketAddress, policy: ListenerPolicy, error: ProxyHeaderError? = nil) {
        if let suppressed = headerWarning.admit(now: Syscall.monotonicNanoseconds()) {
            var metadata: Logger.Metadata = [
                "peer": .stringConvertible(peer), "listener": .string(policy.label), "suppressed": .stringConvertible(suppressed),
            ]
            if let error { metadata["error"] = .stringConvertible(error) }
            logger.warning(message, metadata: metadata)
        }
    }

    private func warnLimit(_ message: Logger.Message, peer: SocketAddress) {
        if let suppressed = limitWarning.admit(now: Syscall.monotonicNanoseconds()) {
            logger.warning(message, metadata: ["peer": .stringConvertible(peer), "suppressed": .stringConvertible(suppressed)])
        }
    }

    // MARK: The hot path

    override package func handleEvent(fd: Int32, events: UInt32) {
        let c = table[fd]
        guard c.pointee.flags.isDisjoint(with: .special) else {
            handleSpecialEvent(c, fd: fd, events: events)
            return
        }
        let inBefore = c.pointee.bytesIn
        let outBefore = c.pointee.bytesOut
        var outcome = EchoMachine.Outcome.keep
        var io = self.io  // a local: no exclusivity check (it holds one unowned(unsafe) reference)
        if events & EventBits.writable != 0 {
            outcome = machine.pointee.writable(&c.pointee, fd: fd, io: &io, tick: tick)
        }
        if outcome == .keep && events & EventBits.readable != 0 {
            outcome = machine.pointee.readable(&c.pointee, fd: fd, io: &io, tick: tick)
        } else if outcome == .keep && events & (EventBits.error | EventBits.hangup) != 0 {
            // Error or hang-up without readable data (reading may be paused): nothing more can be delivered.
            outcome = .close(.reset)
        }
        finishEvent(c, fd: fd, inBefore: inBefore, outBefore: outBefore, outcome: outcome)
    }

    /// With the io_uring backend: a completion for a connection served by completions (EchoService+Completions.swift).
    override package func handleCompletion(fd: Int32, operation: UInt8, result: Int32, flags: UInt32) {
        completed(fd: fd, operation: operation, result: result, flags: flags)
    }

    /// The events of a connection off the plain path: waiting for its PROXY header, or tagged.
    private func handleSpecialEvent(_ c: UnsafeMutablePointer<Connection>, fd: Int32, events: UInt32) {
        if c.pointee.flags.contains(.awaitingHeader) {
            readHeader(c, fd: fd)
            return
        }
        let inBefore = c.pointee.bytesIn
        let outBefore = c.pointee.bytesOut
        var outcome = EchoMachine.Outcome.keep
        var io = self.io
        if events & EventBits.writable != 0 {
            outcome = machine.pointee.writable(&c.pointee, fd: fd, io: &io, tick: tick)
        }
        if outcome == .keep && events & EventBits.readable != 0 {
            outcome =
                c.pointee.flags.contains(.discarding)
                ? machine.pointee.readableDiscarding(&c.pointee, fd: fd, io: &io, tick: tick)
                : machine.pointee.readablePrefixed(&c.pointee, fd: fd, io: &io, tick: tick)
        } else if outcome == .keep && events & (EventBits.error | EventBits.hangup) != 0 {
            outcome = .close(.reset)
        }
        if outcome == .keep { outcome = shutWriteWhenSent(c, fd: fd) }
        finishEvent(c, fd: fd, inBefore: inBefore, outBefore: outBefore, outcome: outcome)
    }

    /// The counting, logging and closing every event ends with.
    @inline(__always)
    private func finishEvent(
        _ c: UnsafeMutablePointer<Connection>, fd: Int32, inBefore: UInt64, outBefore: UInt64, outcome: EchoMachine.Outcome
    ) {
        let received = c.pointee.bytesIn &- inBefore
        if received > 0 {
            stats.reads.add(1)
            stats.bytesIn.add(received)
            if !c.pointee.flags.contains(.announced) { announce(c) }
            if settings.logReads { logRead(c, count: received) }
        }
        stats.bytesOut.add(c.pointee.bytesOut &- outBefore)
        if case .close(let reason) = outcome { close(fd: fd, reason: reason) }
    }

    /// `hostname-only`: once the tag line is sent, our side is closed (FIN); the peer's close then ends the connection.
    private func shutWriteWhenSent(_ c: UnsafeMutablePointer<Connection>, fd: Int32) -> EchoMachine.Outcome {
        guard c.pointee.flags.contains(.discarding), !c.pointee.flags.contains(.writeShut), c.pointee.pending.isEmpty else {
            return .keep
        }
        var io = self.io
        io.shutdownWrite(fd)
        c.pointee.flags.insert(.writeShut)
        return c.pointee.flags.contains(.readClosed) ? .close(.peerClosed) : .keep
    }

    /// A readable event while the PROXY header is incomplete.
    private func readHeader(_ c: UnsafeMutablePointer<Connection>, fd: Int32) {
        let policy = policies[Int(c.pointee.policy)]
        var io = self.io
        let step = machine.pointee.readHeader(
            &c.pointee, fd: fd, io: &io, mode: policy.proxy ?? .any, exact: policy.tag != .off)
        switch step {
        case .waiting:
            return
        case .failed:
            close(fd: fd, reason: .reset)
        case .refused(let error):
            warnHeader(
                error == nil ? "connection closed before its PROXY protocol header was complete" : "PROXY protocol header refused",
                peer: c.pointee.peer, policy: policy, error: error)
            close(fd: fd, reason: .proxyHeaderInvalid)
        case .complete(let header, let leftover):
            c.pointee.flags.remove(.awaitingHeader)
            awaitingHeaders -= 1
            if case .inet(let source, _) = header.addresses, header.command == .proxy {
                c.pointee.proxy = c.pointee.peer
                c.pointee.peer = SocketAddress(
                    family: SocketAddress.Family(rawValue: source.family.rawValue) ?? .ipv4, port: source.port, high: source.high,
                    low: source.low)
                c.pointee.flags.insert(.proxied)
            }
            // Now the client is known: the per-IP limit counts it (the total already does).
            guard limiter.admitPerIP(c.pointee.peer.hostKey) else {
                stats.rejectedPerIP.add(1)
                warnLimit("connection refused: limits.max_connections_per_ip reached", peer: c.pointee.peer)
                close(fd: fd, reason: .perIPLimit)
                return
            }
            c.pointee.flags.insert(.countedPerIP)
            if policy.tag != .off {
                if case .close(let reason) = startTagging(c, fd: fd, policy: policy) { close(fd: fd, reason: reason) }
                return
            }
            guard leftover > 0 else { return }
            // The client's first bytes came with the header: echo them now, as a read would have.
            let inBefore = c.pointee.bytesIn
            let outBefore = c.pointee.bytesOut
            c.pointee.bytesIn &+= UInt64(leftover)
            c.pointee.lastActiveTick = tick
            let outcome = machine.pointee.echoReadBuffer(&c.pointee, fd: fd, io: &io, count: leftover)
            finishEvent(c, fd: fd, inBefore: inBefore, outBefore: outBefore, outcome: outcome)
        }
    }

    /// Starts a tagging mode on a connection whose client is known (at accept, or after its PROXY header): sends the
    /// banner or host-name line, or prepares the line prefix. Nothing is pending yet, and a tag is at most
    /// ``ListenerPolicy/maximumTagBytes``: it fits in the pending buffer whatever the socket takes.
    func startTagging(_ c: UnsafeMutablePointer<Connection>, fd: Int32, policy: ListenerPolicy) -> EchoMachine.Outcome {
        let tag = policy.renderTag(client: c.pointee.peer)
        var io = self.io
        switch policy.tag {
        case .off:
            return .keep
        case .prefix:
            machine.pointee.beginPrefixing(&c.pointee, prefix: tag)
            return .keep
        case .banner, .hostnameOnly:
            if policy.tag == .hostnameOnly { c.pointee.flags.insert(.discarding) }
            let outBefore = c.pointee.bytesOut
            var outcome = tag.withUnsafeBytes { machine.pointee.send(&c.pointee, fd: fd, io: &io, $0.baseAddress!, count: tag.count) }
            stats.bytesOut.add(c.pointee.bytesOut &- outBefore)
            if outcome == .keep { outcome = shutWriteWhenSent(c, fd: fd) }
            return outcome
        }
    }

    /// The `connection opened` line, logged at the first byte rather than at accept: health probes that connect
    /// and close without sending anything (load balancers, Kubernetes tcpSocket) are counted but do not flood
    /// the log.
    func announce(_ c: UnsafeMutablePointer<Connection>) {
        c.pointee.flags.insert(.announced)
        if c.pointee.flags.contains(.proxied) {
            logger.info(
                "connection opened", metadata: ["peer": .stringConvertible(c.pointee.peer), "proxy": .stringConvertible(c.pointee.proxy)])
        } else {
            logger.info("connection opened", metadata: ["peer": .stringConvertible(c.pointee.peer)])
        }
    }

    func logRead(_ c: UnsafeMutablePointer<Connection>, count: UInt64) {
        readLogSink(Int32(truncatingIfNeeded: loop.index), c.pointee.peer, machine.pointee.lastRead, Int(truncatingIfNeeded: count))
    }

    // MARK: Closing

    /// Closes one connection, discarding anything still pending.
    package func close(fd: Int32, reason: CloseReason) {
        loop.assertInLoop()
        let c = table[fd]
        guard c.pointee.isOpen else { return }
        machine.pointee.release(&c.pointee)
        // A ring-served connection's close(2) waits for its requests in flight (``closeServed``).
        let served = c.pointee.ring.flags.contains(.served)
        if !served { loop.deregister(fd: fd, willClose: !c.pointee.flags.contains(.shared)) }
        if c.pointee.flags.contains(.kept) { releaseKept(fd: fd) }
        if !served { Syscall.close(fd) }
        let record = c.pointee
        c.pointee.flags = []
        openCount -= 1
        if record.flags.contains(.awaitingHeader) { awaitingHeaders -= 1 }
        stats.closed[reason.rawValue].add(1)
        limiter.releaseTotal()
        if record.flags.contains(.countedPerIP) { limiter.releasePerIP(record.peer.hostKey) }
        logClose(record, reason: reason)
        if served { closeServed(c, fd: fd) }
        if openCount == 0, let done = onDrained {
            onDrained = nil
            done()
        }
    }

    private func logClose(_ c: Connection, reason: CloseReason) {
        let level: Logger.Level = c.bytesIn == 0 ? .debug : .info
        var metadata: Logger.Metadata = [
            "peer": .stringConvertible(c.peer),
            "bytes_in": .stringConvertible(c.bytesIn),
            "bytes_out": .stringConvertible(c.bytesOut),
            "duration_ms": .stringConvertible((Syscall.monotonicNanoseconds() - c.openedAt) / 1_000_000),
            "reason": .stringConvertible(reason),
        ]
        if c.flags.contains(.proxied) { metadata["proxy"] = .stringConvertible(c.proxy) }
        logger.log(level: level, c.bytesIn == 0 ? "probe connection closed" : "connection closed", metadata: metadata)
    }

    // MARK: Timers, reload, drain

    private func sweep() {
        tick &+= 1
        guard idleTicks > 0 || awaitingHeaders > 0, highestFD >= 0 else { return }
        for fd in 0...highestFD where table[fd].pointee.isOpen {
            let c = table[fd].pointee
            let waited = tick &- c.lastActiveTick
            if c.flags.contains(.awaitingHeader) {
                // `lastActiveTick` is the accept's: header bytes do not move it, so a header sent a byte at a time
                // times out too. One tick more than the timeout: never closed before it.
                let policy = policies[Int(c.policy)]
                if waited > Self.ticks(policy.headerTimeout) {
                    warnHeader("PROXY protocol header not complete in time: closing", peer: c.peer, policy: policy)
                    close(fd: fd, reason: .proxyHeaderTimeout)
                }
            } else if idleTicks > 0 && waited >= idleTicks {
                close(fd: fd, reason: .idleTimeout)
            }
        }
    }

    /// Applies new run-time settings (reload). Open connections keep going under the new limits.
    package func apply(_ new: Settings) {
        loop.assertInLoop()
        settings = new
        machine.pointee.setMaxPending(new.maxPendingBytes)
        updateMaxQueued()
        idleTicks = Self.ticks(new.idleTimeout)
    }

    /// Calls `done` (on this loop) once no connection is left open; at once when there are none.
    package func whenDrained(_ done: @escaping () -> Void) {
        loop.assertInLoop()
        if openCount == 0 { done() } else { onDrained = done }
    }

    /// Closes every open connection (the drain timeout ran out, or shutdown).
    package func closeAll(reason: CloseReason) {
        guard highestFD >= 0 else { return }
        for fd in 0...highestFD where table[fd].pointee.isOpen {
            close(fd: fd, reason: reason)
        }
    }

    /// Releases the loop-level resources. Call last, on the loop thread, after `closeAll`.
    package func shutdown() {
        loop.assertInLoop()
        closeAll(reason: .drainTimeout)
        closeWaitingDescriptors()
        destroyCompletions()
        sweepTimer?.close()
        sweepTimer = nil
        machine.pointee.destroy()
        table.deallocate()
    }

    deinit {
        machine.deinitialize(count: 1)
        machine.deallocate()
    }

    private static func ticks(_ d: Duration) -> UInt32 {
        guard d > .zero else { return 0 }
        let seconds = d.components.seconds + (d.components.attoseconds > 0 ? 1 : 0)
        return UInt32(clamping: max(seconds, 1))
    }
}
