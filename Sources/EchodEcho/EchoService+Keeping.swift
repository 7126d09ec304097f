import EchodEventLoop
import EchodSystem
import Glibc

/// Keeping connections across restarts (`restart.keep_connections`): the echo side of it. The service knows nothing of
/// where connections are kept (the daemon puts them in systemd's fd store); it only says which connections to keep,
/// which kept ones it closed, and hands its connections over, or takes them over, with their state.
///
/// - Keeping: with ``setKeepsConnections(_:)`` on, every accepted connection is queued; the daemon takes the queue
///   on a timer (``takeConnectionsToKeep(_:)``), off the per-read path, so a connection that closes before then
///   costs nothing more.
/// - Releasing: a kept connection's socket stays open while the keeper holds a copy, so that closing it here would
///   not end it for the peer: ``close(fd:reason:)`` shuts it down first (the peer sees FIN at once) and records its
///   identity for the daemon to take out of keeping (``takeReleasedKept()``).
/// - Handing over (an orderly restart): ``handOver()`` takes every connection off the loop without closing it and
///   returns its state. Taking over: ``takeOver(fd:peer:policy:snapshot:)``, with that state or, after a crash, with
///   what the socket itself says.
extension EchoService {
    /// Turns keeping on (every open connection is queued as well) or off (nothing is queued any more; the kept ones
    /// stay kept until they close, as the daemon takes them out of keeping itself).
    package func setKeepsConnections(_ on: Bool) {
        loop.assertInLoop()
        guard on != keepsConnections else { return }
        keepsConnections = on
        guard highestFD >= 0 else { return }
        for fd in 0...highestFD where table[fd].pointee.isOpen {
            let c = table[fd]
            if on {
                if !c.pointee.flags.contains(.kept) { queueForKeeping(c, fd: fd) }
            } else {
                c.pointee.flags.remove(.keepQueued)
            }
        }
        if !on { keepQueue.removeAll() }
    }

    func queueForKeeping(_ c: UnsafeMutablePointer<Connection>, fd: Int32) {
        guard !c.pointee.flags.contains(.keepQueued) else { return }
        c.pointee.flags.insert(.keepQueued)
        keepQueue.append(fd)
    }

    /// Offers each queued connection, still open, to `keep` (which puts it in keeping and says whether it could);
    /// stops at the first refusal, leaving it and the rest queued for the next call.
    package func takeConnectionsToKeep(_ keep: (Int32) -> Bool) {
        loop.assertInLoop()
        var taken = 0
        for fd in keepQueue {
            let c = table[fd]
            // A closed connection's flags are clear; a new one on the same fd is queued again, and the first of its
            // two entries keeps it.
            if c.pointee.isOpen && c.pointee.flags.contains(.keepQueued) {
                guard keep(fd) else { break }
                c.pointee.flags.remove(.keepQueued)
                c.pointee.flags.insert([.kept, .shared])
            }
            taken += 1
        }
        keepQueue.removeFirst(taken)
    }

    /// The identities (``identity(of:)``) of the kept connections closed since the last call.
    package func takeReleasedKept() -> [UInt64] {
        loop.assertInLoop()
        defer { releasedKept.removeAll(keepingCapacity: true) }
        return releasedKept
    }

    /// Takes every open connection out of keeping (keeping was switched off): returns their identities, for the
    /// daemon to take them out of the store; closing them later is a plain close again.
    package func releaseAllKept() -> [UInt64] {
        loop.assertInLoop()
        var identities = takeReleasedKept()
        guard highestFD >= 0 else { return identities }
        for fd in 0...highestFD where table[fd].pointee.isOpen && table[fd].pointee.flags.contains(.kept) {
            table[fd].pointee.flags.remove(.kept)
            if let identity = Self.identity(of: fd) { identities.append(identity) }
        }
        return identities
    }

    /// Connections queued but not yet kept.
    package var connectionsToKeep: Int { keepQueue.count }

    /// A kept connection is being closed: shut it down, since the keeper's copy keeps the socket itself open, and
    /// record it for the daemon to take out of keeping.
    func releaseKept(fd: Int32) {
        Syscall.shutdown(fd, Int32(SHUT_RDWR))
        if let identity = Self.identity(of: fd) { releasedKept.append(identity) }
    }

    /// A socket's identity across processes: its inode number, the same in every process holding the socket and
    /// unique while it lives.
    package static func identity(of fd: Int32) -> UInt64? {
        try? Syscall.inode(of: fd)
    }

    // MARK: Handover

    /// Takes every connection off this loop without closing it, for the next instance (an orderly restart): first
    /// writes what each can take of its pending bytes, then records its state (``ConnectionSnapshot``) and forgets it
    /// here (the limits' counts too). The fds stay open: the caller makes sure each is kept, then closes them.
    /// Connections whose identity cannot be read are closed instead (counted as reset).
    package func handOver() -> [(fd: Int32, snapshot: ConnectionSnapshot)] {
        loop.assertInLoop()
        var handed: [(fd: Int32, snapshot: ConnectionSnapshot)] = []
        guard highestFD >= 0 else { return handed }
        // Connections served by completions first end their requests, so that their queues are exact.
        quiesceCompletions(timeout: .seconds(1))
        var io = self.io
        for fd in 0...highestFD where table[fd].pointee.isOpen {
            let c = table[fd]
            if c.pointee.ring.flags.contains(.served) {
                guard let identity = Self.identity(of: fd) else {
                    c.pointee.ring.flags.remove(.handingOver)
                    close(fd: fd, reason: .reset)
                    continue
                }
                handed.append((fd, snapshot(c.pointee, identity: identity, pending: queuedBytes(c))))
                machine.pointee.release(&c.pointee)
                forgetServed(c, fd: fd)
                forget(c)
                continue
            }
            // While a PROXY header is incomplete, the pending bytes are its start: input, never sent.
            if !c.pointee.pending.isEmpty, !c.pointee.flags.contains(.awaitingHeader),
                case .bytes(let n) = io.write(fd, from: c.pointee.pending.readable, count: c.pointee.pending.count)
            {
                c.pointee.bytesOut &+= UInt64(n)
                stats.bytesOut.add(UInt64(n))
                c.pointee.pending.consumed(n)
            }
            guard let identity = Self.identity(of: fd) else {
                close(fd: fd, reason: .reset)
                continue
            }
            let pending = c.pointee.pending.isEmpty ? [] : Array(UnsafeRawBufferPointer(start: c.pointee.pending.readable, count: c.pointee.pending.count))
            handed.append((fd, snapshot(c.pointee, identity: identity, pending: pending)))
            machine.pointee.release(&c.pointee)
            loop.deregister(fd: fd, willClose: false)
            forget(c)
        }
        keepQueue.removeAll()
        if let done = onDrained {
            onDrained = nil
            done()
        }
        return handed
    }

    private func snapshot(_ c: Connection, identity: UInt64, pending: [UInt8]) -> ConnectionSnapshot {
        let prefix = c.prefixBytes.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(c.prefixCount))) } ?? []
        return ConnectionSnapshot(
            inode: identity, flags: c.flags.intersection(.handedOver).rawValue, bytesIn: c.bytesIn, bytesOut: c.bytesOut,
            openedAt: c.openedAt, peer: c.peer, proxy: c.proxy, prefix: prefix, pending: pending)
    }

    /// Clears a connection's slot and its counts, as a close does, without closing or logging it.
    private func forget(_ c: UnsafeMutablePointer<Connection>) {
        let record = c.pointee
        c.pointee.flags = []
        openCount -= 1
        if record.flags.contains(.awaitingHeader) { awaitingHeaders -= 1 }
        limiter.releaseTotal()
        if record.flags.contains(.countedPerIP) { limiter.releasePerIP(record.peer.hostKey) }
    }

    // MARK: Taking over

    /// Takes over a connection the previous instance of echod served (given by the keeper at start-up), served by the
    /// policy at index `policy`. It is kept already (unless `kept` is false: keeping is off now, and the daemon has
    /// taken it out of the store). With `snapshot` (an orderly restart), it goes on exactly where it
    /// was: counters, open time, the PROXY header phase, the tagging mode, the bytes not yet echoed. Without (after a
    /// crash), what the socket says is all there is: the client is the socket's peer, counters start at zero, a PROXY
    /// header is taken to be done (a crash during one is the only loss) and a tag to be sent; `prefix` mode starts a
    /// line. Either way nothing is sent to greet it and it is not logged as a new connection, and it counts against
    /// the limits whatever they now say (``ConnectionLimiter/adoptExisting(_:)``).
    /// Returns false (the fd closed) when the loop cannot watch it.
    @discardableResult
    package func takeOver(fd: Int32, peer: SocketAddress, policy index: UInt16, snapshot: ConnectionSnapshot?, kept: Bool = true) -> Bool {
        loop.assertInLoop()
        let policy = policies[Int(index)]
        var connection = Connection(peer: peer, openedAt: Syscall.monotonicNanoseconds(), tick: tick)
        connection.policy = index
        connection.flags = kept ? [.open, .announced, .kept, .shared] : [.open, .announced, .shared]
        if let snapshot {
            connection.flags.formUnion(Connection.Flags(rawValue: snapshot.flags).intersection(.handedOver))
            connection.bytesIn = snapshot.bytesIn
            connection.bytesOut = snapshot.bytesOut
            connection.openedAt = snapshot.openedAt
            connection.peer = snapshot.peer
            connection.proxy = snapshot.proxy
        } else if policy.tag == .hostnameOnly {
            connection.flags.formUnion([.discarding, .writeShut])
        }
        let awaitingHeader = connection.flags.contains(.awaitingHeader)
        if !awaitingHeader { connection.flags.insert(.countedPerIP) }
        connection.flags.remove([.watchingRead, .watchingWrite])
        let c = table[fd]
        c.pointee = connection
        if let snapshot {
            if !snapshot.prefix.isEmpty { machine.pointee.beginPrefixing(&c.pointee, prefix: snapshot.prefix) }
            // While the header is incomplete, the pending bytes are its start, not echo.
            if !snapshot.pending.isEmpty { machine.pointee.restorePending(&c.pointee, snapshot.pending, echo: !awaitingHeader) }
        } else if policy.tag == .prefix {
            machine.pointee.beginPrefixing(&c.pointee, prefix: policy.renderTag(client: c.pointee.peer))
        }
        // Served by completions when plain and with nothing left to echo (bytes still to echo go out the readiness
        // way, which holds them in a pending buffer).
        let completions =
            !awaitingHeader && servedByCompletions(policy) && c.pointee.pending.isEmpty && c.pointee.flags.isDisjoint(with: .special)
            && !c.pointee.flags.contains(.readClosed)
        var interest: Interest = []
        if !completions && !c.pointee.flags.contains(.readClosed) && !c.pointee.flags.contains(.readPaused) {
            interest.insert(.read)
            c.pointee.flags.insert(.watchingRead)
        }
        if !awaitingHeader && !c.pointee.pending.isEmpty {
            interest.insert(.write)
            c.pointee.flags.insert(.watchingWrite)
        }
        if c.pointee.peer.family != .unix { Socket.setNoDelay(fd) }
        do throws(IOError) {
            if completions {
                try loop.attach(fd: fd, handler: self)
            } else {
                try loop.register(fd: fd, interest: interest, handler: self)
            }
        } catch {
            machine.pointee.release(&c.pointee)
            c.pointee.flags = []
            if kept { releaseKept(fd: fd) }
            Syscall.close(fd)
            logger.error("cannot watch a connection taken over", metadata: ["peer": .stringConvertible(peer), "error": .stringConvertible(error)])
            return false
        }
        limiter.adoptExisting(awaitingHeader ? nil : c.pointee.peer.hostKey)
        if fd > highestFD { highestFD = fd }
        openCount += 1
        if awaitingHeader { awaitingHeaders += 1 }
        if completions {
            startServing(c, fd: fd)
            return true
        }
        // Half-closed and nothing left to echo: it was done, only its close was not.
        if interest.isEmpty { close(fd: fd, reason: .peerClosed) }
        return true
    }
}

extension EchoMachine {
    /// Gives a connection taken over the bytes it still had to echo (`echo`), or the start of its PROXY header: into a pending buffer of the pool's size, or of
    /// their own size when a reload lowered `max_pending_bytes` meanwhile (it is freed, not pooled, once drained).
    mutating func restorePending(_ c: inout Connection, _ bytes: [UInt8], echo: Bool) {
        if bytes.count <= pool.bufferSize {
            pool.attach(&c.pending)
        } else {
            c.pending.base = .allocate(byteCount: bytes.count, alignment: 16)
            c.pending.capacity = Int32(bytes.count)
            c.pending.head = 0
            c.pending.tail = 0
        }
        let (space, _) = c.pending.writableSpace()
        bytes.withUnsafeBytes { space.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        c.pending.appended(bytes.count)
        if echo && bytes.count > maxPending - (c.flags.contains(.prefixing) ? Int(c.prefixCount) + 1 : 1) { c.flags.insert(.readPaused) }
    }
}
