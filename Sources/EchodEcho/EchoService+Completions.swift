import EchodEventLoop
import EchodSystem
import Glibc

/// The io_uring backend's echo path (``IOBackend/ioUring``): plain connections served by completions, in the design
/// of the race's C io_uring reference (bench/peers/c-uring/echo.c).
///
/// - One receive in flight per connection picks a buffer from the loop's provided buffer ring; a received buffer is
///   sent back as it is and given back to the ring only when its send has completed: no copy, and no system call of
///   its own (the loop submits every request of a turn in one `io_uring_enter`).
/// - Sends on one connection are serialized: one send in flight, the other received buffers wait in the connection's
///   queue (a FIFO threaded through the loop's `bufferNext` table), since two sends in flight could reorder bytes. A
///   short send goes on from where it stopped.
/// - Backpressure: a connection holds at most `max_pending_bytes` of buffers (``maxQueued``): at that many, no new
///   receive is started until a send gives one back, the kernel's receive window fills and TCP pushes back on the
///   sender, as with epoll. This is why each receive takes one buffer rather than being multishot: a multishot
///   receive goes on taking buffers for as long as data is waiting (up to the kernel's retry limit of 32 per wake-up)
///   before the loop can stop it, so a peer that does not read would hold several times the bound. A receive costs
///   a submission entry, not a system call.
/// - `ENOBUFS` (other connections hold every buffer given so far): the loop gives the kernel more of its buffers, up
///   to ``ringBufferLimit``; past that the connection waits until buffers come back.
/// - EOF (half-close): the queue is sent, then the connection closes, as RFC 862 and the epoll path do.
/// - A descriptor is closed only when no request on it is in flight: a reused descriptor number can never meet a
///   stale completion, and the peer sees the close at once (a request in flight holds the socket open). Closing
///   (limits, counters, the log line) happens at once; only the `close(2)` waits.
///
/// Connections off the plain path (PROXY protocol header, tagging) and connections taken over from a previous
/// instance with bytes still to echo use the readiness path (``EchoMachine``) on the same loop: their logic is
/// per-byte and rare, and the epoll set is there for them.
extension EchoService {
    /// Operation codes of this service's requests (in their completions' user data).
    enum RingOperation: UInt8 {
        case receive = 1
        case send = 2
        case cancel = 3
    }

    /// The most provided buffers a loop has (the kernel's limit for one buffer ring): its connections share them,
    /// each holding at most `max_pending_bytes` of them, so that memory is bounded as with epoll's pending buffers;
    /// when even these are all held, receives wait for buffers to come back instead of memory growing. They are
    /// given to the kernel 16 at a time as receives run out (``EventLoop/provideMoreBuffers``): the kernel writes
    /// every given buffer in turn, so each costs memory once given, and the free ones are at most one step's worth.
    package static let ringBufferLimit = 32768
    static let ringBufferStep = 16

    /// A buffer's size: a quarter of `max_pending_bytes` (so that a connection at its bound holds four buffers, and a
    /// slow reader's memory is its bound, not a buffer rounded up), a power of two between 4 KiB and 64 KiB (a
    /// large read: 64 KiB with the default 256 KiB bound). Fixed for the loop's life: a reload that changes the bound
    /// changes how many buffers a connection may hold (``maxQueued``).
    static func ringBufferSize(maxPending: Int) -> Int {
        var size = 4 * 1024
        while size < 64 * 1024 && size * 2 <= maxPending / 4 { size *= 2 }
        return size
    }

    /// Whether a connection of `policy` accepted now is served by completions.
    func servedByCompletions(_ policy: ListenerPolicy) -> Bool {
        ringBuffers != nil && policy.proxy == nil && policy.tag == .off
    }

    /// Sets up the loop's provided buffers (io_uring backend only). Called once, at start.
    func prepareCompletions() throws(IOError) {
        guard loop.backend == .ioUring else { return }
        let size = Self.ringBufferSize(maxPending: machine.pointee.maxPending)
        let buffers = try loop.provideBuffers(count: ringBufferCount, size: size, initial: min(Self.ringBufferStep, ringBufferCount))
        ringBuffers = buffers
        bufferNext = .allocate(capacity: buffers.count)
        bufferLength = .allocate(capacity: buffers.count)
        updateMaxQueued()
    }

    /// Starts serving an attached connection whose slot is filled (open, counted) by completions.
    func startServing(_ c: UnsafeMutablePointer<Connection>, fd: Int32) {
        c.pointee.ring = RingState(flags: .served)
        c.pointee.flags.remove([.watchingRead, .watchingWrite])
        startReceiving(c, fd: fd)
    }

    /// A completion of one of this service's requests (``EventHandler/handleCompletion(fd:operation:result:flags:)``).
    @inline(__always)
    func completed(fd: Int32, operation: UInt8, result: Int32, flags: UInt32) {
        let c = table[fd]
        switch RingOperation(rawValue: operation) {
        case .receive: received(c, fd: fd, result: result, flags: flags)
        case .send: sent(c, fd: fd, result: result)
        case .cancel, nil: return  // the cancelled request reports itself
        }
        settle(c, fd: fd)
    }

    /// Sets the most buffers one connection holds: `max_pending_bytes` of them, at least one (at start and reload).
    func updateMaxQueued() {
        guard let ringBuffers else { return }
        maxQueued = UInt16(clamping: max(1, machine.pointee.maxPending / ringBuffers.size))
    }

    private func received(_ c: UnsafeMutablePointer<Connection>, fd: Int32, result: Int32, flags: UInt32) {
        c.pointee.ring.flags.remove([.receiving, .cancelling])
        let buffer = Completion.buffer(flags)
        if result > 0, let id = buffer {
            guard c.pointee.isOpen else {
                recycle(id)
                return
            }
            enqueue(c, id, count: Int(result))
            c.pointee.bytesIn &+= UInt64(result)
            c.pointee.lastActiveTick = tick
            stats.reads.add(1)
            stats.bytesIn.add(UInt64(result))
            if !c.pointee.flags.contains(.announced) { announce(c) }
            if settings.logReads {
                machine.pointee.lastRead = UnsafeRawBufferPointer(start: ringBuffers![id], count: Int(result))
                logRead(c, count: UInt64(result))
            }
            if !c.pointee.ring.flags.contains(.sending) && !c.pointee.ring.flags.contains(.handingOver) { sendHead(c, fd: fd) }
            return
        }
        if let id = buffer { recycle(id) }
        switch -result {
        case 0: c.pointee.flags.insert(.readClosed)
        case ENOBUFS:
            if !loop.provideMoreBuffers(Self.ringBufferStep) { c.pointee.ring.flags.insert(.starved) }
        case ECANCELED: break
        default:
            if c.pointee.isOpen && !c.pointee.ring.flags.contains(.handingOver) { close(fd: fd, reason: .reset) }
        }
    }

    private func sent(_ c: UnsafeMutablePointer<Connection>, fd: Int32, result: Int32) {
        c.pointee.ring.flags.remove(.sending)
        guard result > 0 else {
            // Cancelled (a handover: nothing was sent) or failed (the peer reset).
            if result != -ECANCELED, c.pointee.isOpen, !c.pointee.ring.flags.contains(.handingOver) { close(fd: fd, reason: .reset) }
            return
        }
        let n = UInt32(result)
        if c.pointee.isOpen {
            c.pointee.bytesOut &+= UInt64(n)
            c.pointee.lastActiveTick = tick
            stats.bytesOut.add(UInt64(n))
        }
        c.pointee.ring.sent &+= n
        let head = c.pointee.ring.head
        if c.pointee.ring.sent == bufferLength![Int(head)] {
            c.pointee.ring.sent = 0
            c.pointee.ring.head = bufferNext![Int(head)]
            c.pointee.ring.queued &-= 1
            recycle(head)
        }
        if c.pointee.ring.queued > 0 && c.pointee.isOpen && !c.pointee.ring.flags.contains(.handingOver) { sendHead(c, fd: fd) }
    }

    /// What a connection needs after a completion: its `close(2)` once nothing is in flight, or a new receive.
    func settle(_ c: UnsafeMutablePointer<Connection>, fd: Int32) {
        var ring = c.pointee.ring
        guard ring.flags.contains(.served), !ring.flags.contains(.handingOver) else { return }
        if !c.pointee.isOpen {
            if ring.flags.contains(.sending) { return }
            dropQueue(c)
            if ring.flags.contains(.receiving) {
                cancelReceive(c, fd: fd)
                return
            }
            loop.detach(fd: fd)
            Syscall.close(fd)
            c.pointee.ring = RingState()
            return
        }
        if c.pointee.flags.contains(.readClosed) {
            // Half-closed: once everything is echoed, close (our FIN follows the data).
            if ring.queued == 0 && !ring.flags.contains(.sending) { close(fd: fd, reason: .peerClosed) }
            return
        }
        // One receive at a time, and none while the connection holds its share of buffers (a send gives one back).
        if ring.flags.contains(.receiving) || ring.queued >= maxQueued { return }
        if ring.flags.contains(.starved) {
            if !ring.flags.contains(.waitingForBuffers) {
                ring.flags.insert(.waitingForBuffers)
                c.pointee.ring = ring
                starved.append(fd)
            }
            return
        }
        startReceiving(c, fd: fd)
    }

    /// A ring-served connection is being closed (``close(fd:reason:)`` did the rest): its `close(2)` waits for its
    /// requests in flight.
    func closeServed(_ c: UnsafeMutablePointer<Connection>, fd: Int32) {
        settle(c, fd: fd)
    }

    private func startReceiving(_ c: UnsafeMutablePointer<Connection>, fd: Int32) {
        c.pointee.ring.flags.remove([.starved, .waitingForBuffers])
        c.pointee.ring.flags.insert(.receiving)
        loop.receive(fd: fd, operation: RingOperation.receive.rawValue)
    }

    private func cancelReceive(_ c: UnsafeMutablePointer<Connection>, fd: Int32) {
        guard c.pointee.ring.flags.contains(.receiving), !c.pointee.ring.flags.contains(.cancelling) else { return }
        c.pointee.ring.flags.insert(.cancelling)
        loop.cancel(fd: fd, target: RingOperation.receive.rawValue, operation: RingOperation.cancel.rawValue)
    }

    private func sendHead(_ c: UnsafeMutablePointer<Connection>, fd: Int32) {
        let head = c.pointee.ring.head
        let sent = Int(c.pointee.ring.sent)
        c.pointee.ring.flags.insert(.sending)
        loop.send(
            fd: fd, bytes: ringBuffers![head] + sent, count: Int(bufferLength![Int(head)]) - sent,
            operation: RingOperation.send.rawValue)
    }

    private func enqueue(_ c: UnsafeMutablePointer<Connection>, _ id: UInt16, count: Int) {
        bufferLength![Int(id)] = UInt32(count)
        bufferNext![Int(id)] = RingState.none
        if c.pointee.ring.queued == 0 {
            c.pointee.ring.head = id
        } else {
            bufferNext![Int(c.pointee.ring.tail)] = id
        }
        c.pointee.ring.tail = id
        c.pointee.ring.queued &+= 1
    }

    /// Gives back every buffer a closed connection still held.
    private func dropQueue(_ c: UnsafeMutablePointer<Connection>) {
        while c.pointee.ring.queued > 0 {
            let id = c.pointee.ring.head
            c.pointee.ring.head = bufferNext![Int(id)]
            c.pointee.ring.queued &-= 1
            recycle(id)
        }
        c.pointee.ring.sent = 0
    }

    /// Gives buffer `id` back to the kernel, and starts again the receives that ran out of buffers (the loop
    /// publishes the buffer before it submits them).
    private func recycle(_ id: UInt16) {
        loop.recycleBuffer(id)
        guard !starved.isEmpty else { return }
        let waiting = starved
        starved.removeAll(keepingCapacity: true)
        for fd in waiting {
            let c = table[fd]
            c.pointee.ring.flags.remove([.starved, .waitingForBuffers])
            settle(c, fd: fd)
        }
    }

    /// The bytes a ring-served connection has received and not yet sent back, in order (for a handover).
    func queuedBytes(_ c: UnsafeMutablePointer<Connection>) -> [UInt8] {
        var bytes: [UInt8] = []
        var id = c.pointee.ring.head
        var skip = Int(c.pointee.ring.sent)
        for _ in 0..<c.pointee.ring.queued {
            bytes += UnsafeRawBufferPointer(start: ringBuffers![id] + skip, count: Int(bufferLength![Int(id)]) - skip)
            skip = 0
            id = bufferNext![Int(id)]
        }
        return bytes
    }

    /// Before a handover: ends every ring-served connection's requests (receives and sends are cancelled; a send
    /// either completes or sends nothing) and waits, at most `timeout`, for their last completions, so that each
    /// queue holds exactly the bytes not yet echoed.
    func quiesceCompletions(timeout: Duration) {
        guard ringBuffers != nil, highestFD >= 0 else { return }
        var inFlight = false
        for fd in 0...highestFD where table[fd].pointee.ring.flags.contains(.served) && table[fd].pointee.isOpen {
            let c = table[fd]
            c.pointee.ring.flags.insert(.handingOver)
            cancelReceive(c, fd: fd)
            if c.pointee.ring.flags.contains(.sending) {
                loop.cancel(fd: fd, target: RingOperation.send.rawValue, operation: RingOperation.cancel.rawValue)
            }
            if !c.pointee.ring.flags.isDisjoint(with: [.receiving, .sending]) { inFlight = true }
        }
        guard inFlight else { return }
        let highest = highestFD
        loop.runCompletions(timeout: timeout) { [unowned self] in
            for fd in 0...highest where self.table[fd].pointee.ring.flags.contains(.handingOver) {
                if !self.table[fd].pointee.ring.flags.isDisjoint(with: [.receiving, .sending]) { return false }
            }
            return true
        }
    }

    /// A ring-served connection handed over: its buffers go back and the loop forgets it (the fd stays open).
    func forgetServed(_ c: UnsafeMutablePointer<Connection>, fd: Int32) {
        dropQueue(c)
        loop.detach(fd: fd)
        c.pointee.ring = RingState()
    }

    /// Ring-served connections whose `close(2)` still waited for a request in flight: closed now (shutdown; the ring's
    /// teardown ends the requests).
    func closeWaitingDescriptors() {
        guard ringBuffers != nil, highestFD >= 0 else { return }
        for fd in 0...highestFD where table[fd].pointee.ring.flags.contains(.served) {
            loop.detach(fd: fd)
            Syscall.close(fd)
            table[fd].pointee.ring = RingState()
        }
    }

    func destroyCompletions() {
        bufferNext?.deallocate()
        bufferLength?.deallocate()
        bufferNext = nil
        bufferLength = nil
    }
}

/// A ring-served connection's requests and queue (``EchoService+Completions.swift``); all zeroes on the epoll path.
package struct RingState {
    package struct Flags: OptionSet, Sendable {
        package let rawValue: UInt8
        package init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The connection is served by completions (attached to the loop, not in its epoll set).
        static let served = Flags(rawValue: 1 << 0)
        /// A receive is in flight.
        static let receiving = Flags(rawValue: 1 << 1)
        /// A send is in flight.
        static let sending = Flags(rawValue: 1 << 2)
        /// The receive's cancellation is in flight.
        static let cancelling = Flags(rawValue: 1 << 3)
        /// The receive ended on `ENOBUFS` with every buffer given: started again once buffers come back.
        static let starved = Flags(rawValue: 1 << 4)
        /// In the service's list of starved connections.
        static let waitingForBuffers = Flags(rawValue: 1 << 5)
        /// A handover is taking the connection off this loop: no new request is started.
        static let handingOver = Flags(rawValue: 1 << 6)
    }

    /// No buffer (the end of a queue).
    static let none: UInt16 = 0xFFFF

    var flags: Flags = []
    /// The queue: the buffer being sent (or next to be), the last one received, and how many.
    var head: UInt16 = 0
    var tail: UInt16 = 0
    var queued: UInt16 = 0
    /// Bytes of the head buffer already sent.
    var sent: UInt32 = 0

    init(flags: Flags = []) { self.flags = flags }
}
