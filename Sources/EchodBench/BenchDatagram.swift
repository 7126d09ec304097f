import EchodEventLoop
import EchodSystem
import EchodText
import Glibc

/// What a worker drives, one per connection: a TCP connection (``BenchConnection``) or, with `--udp`, a connected
/// UDP socket (``BenchDatagram``). Only the worker's cold paths (set-up, start, drain, teardown, timer ticks) call
/// through it; events reach each one directly as an ``EventHandler``.
protocol BenchFlow: AnyObject {
    func setupConnect()
    func begin()
    func drainStarted()
    func drainExpired()
    func closeSocket()
    func teardown()
    /// Connect mode: close the set-up probe; whether this connector waits for the retry tick; that tick.
    func closeProbe()
    var isWaitingForRetry: Bool { get }
    func retry()
    /// UDP: the worker's loss tick (`now` in monotonic nanoseconds).
    func checkLoss(now: Int64)
}

extension BenchFlow {
    func closeProbe() {}
    var isWaitingForRetry: Bool { false }
    func retry() {}
    func checkLoss(now: Int64) {}
}

extension BenchConnection: BenchFlow {}

/// One connected UDP socket of `echod bench --udp`, ping-pong: one datagram in flight, the next sent when its echo
/// is in and verified.
///
/// Each datagram carries its sequence number in its first bytes (little-endian, as many of its 8 bytes as the
/// datagram holds) followed by the pattern at stream offset `sequence × size`, so a reply is checked with one
/// `memcmp` and a late or repeated reply is told from a corrupt one. A datagram not answered within the loss
/// timeout is counted lost (an error) and the next one goes out with a new sequence number: a reply to it that comes
/// later is counted as late, not as the answer to its successor; a second reply to one datagram is a mismatch (the
/// server sent more than it received). No allocation per datagram: it is built in the worker's send buffer.
final class BenchDatagram: EventHandler, BenchFlow {
    enum State: UInt8 {
        /// No socket yet.
        case idle
        /// Waiting for the echo of a set-up datagram (reachability; not measured).
        case setup
        /// Set up; exchanging datagrams once the load begins.
        case active
        /// Finished for good.
        case done
    }

    unowned(unsafe) let worker: BenchWorker
    unowned(unsafe) let pattern: BenchPattern
    let id: Int
    let size: Int
    private(set) var fd: Int32 = -1
    private(set) var state: State = .idle
    private let patternStart: UInt64
    /// Bytes of the sequence number carried in each datagram, and the mask of the values they can hold.
    private let sequenceBytes: Int
    private let sequenceMask: UInt64

    /// The sequence number of the newest datagram sent.
    private var sequence: UInt64 = 0
    private var inFlight = false
    /// When the datagram in flight was sent (``Syscall/monotonicNanoseconds()``).
    private var sentAt: Int64 = 0
    /// Bit i: whether datagram `sequence - 1 - i` has been answered (1) or is still unanswered, i.e. lost (0).
    private var answeredBefore: UInt64 = 0

    init(worker: BenchWorker, id: Int) {
        self.worker = worker
        self.pattern = worker.pattern
        self.id = id
        self.size = Int(worker.size)
        self.patternStart = BenchPattern.start(id: id)
        self.sequenceBytes = min(8, size)
        self.sequenceMask = sequenceBytes == 8 ? .max : (1 << (8 * UInt64(sequenceBytes))) - 1
        super.init()
    }

    // MARK: Set-up and load

    /// Opens the socket and sends a first datagram: the set-up is done when an answer to one comes back, right or wrong
    /// (so that a server that is not there fails the run, exit 2, instead of showing as 100 % loss; a wrong answer is
    /// counted as a mismatch).
    func setupConnect() {
        let newFD: Int32
        do throws(IOError) {
            newFD = try Socket.connectDatagram(to: worker.target)
            try worker.loop.register(fd: newFD, interest: .read, handler: self)
        } catch {
            worker.setupFailed("cannot open a UDP socket to \(worker.targetLabel): \(error)")
            return
        }
        fd = newFD
        state = .setup
        send()
    }

    func begin() {
        guard state == .active else { return }
        send()
    }

    /// The load stopped: the datagram in flight is answered or counted lost, then this socket is finished.
    func drainStarted() {
        if state == .active && !inFlight { finish() }
    }

    func drainExpired() {
        guard state == .active else { return }
        if inFlight { lost() }
        closeSocket()
        state = .done
    }

    /// The loss tick: the datagram in flight is lost once the loss timeout has passed since it was sent.
    func checkLoss(now: Int64) {
        guard inFlight, now &- sentAt >= worker.lossTimeoutNanoseconds else { return }
        switch state {
        case .setup:
            inFlight = false
            answeredBefore <<= 1
            send()  // try again until the worker's connect timeout
        case .active:
            lost()
            next()
        case .idle, .done:
            break
        }
    }

    private func lost() {
        inFlight = false
        answeredBefore <<= 1
        worker.record(.lost, "socket \(id): datagram #\(sequence) not answered within the loss timeout")
    }

    private func next() {
        if worker.sending { send() } else { finish() }
    }

    private func finish() {
        state = .done
        worker.connectionFinished()
    }

    // MARK: Datagrams

    @inline(__always)
    private func send() {
        sequence &+= 1
        let buffer = worker.sendBuffer
        var value = sequence.littleEndian
        withUnsafeBytes(of: &value) { buffer.copyMemory(from: $0.baseAddress!, byteCount: sequenceBytes) }
        let body = pattern.pointer(start: patternStart, offset: sequence &* UInt64(size) &+ UInt64(sequenceBytes))
        (buffer + sequenceBytes).copyMemory(from: body, byteCount: size - sequenceBytes)
        sentAt = Syscall.monotonicNanoseconds()
        inFlight = true
        do throws(IOError) {
            // .wouldBlock (the socket buffer is full) drops the datagram: the loss tick counts it.
            if case .processed = try Syscall.write(fd, buffer, size) { worker.sentAll.add(UInt64(size)) }
        } catch {
            failed(error)
        }
    }

    override func handleEvent(fd: Int32, events: UInt32) {
        var reads = 0
        while reads < 8 && self.fd >= 0 {  // bounded, so that one socket cannot starve the others
            reads += 1
            let result: IOResult
            do throws(IOError) {
                result = try Syscall.read(fd, worker.readBuffer, worker.readCapacity)
            } catch {
                failed(error)
                return
            }
            guard case .processed(let n) = result else { return }
            received(n)
        }
    }

    @inline(__always)
    private func received(_ n: Int) {
        let bytes = worker.readBuffer.assumingMemoryBound(to: UInt8.self)
        var value: UInt64 = 0
        for i in 0..<sequenceBytes { value |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        let age = (sequence &- value) & sequenceMask  // 0: the newest datagram; k: the one sent k before it
        if age == 0 && inFlight {
            inFlight = false
            answeredBefore = answeredBefore << 1 | 1
            let matches = n == size && bodyMatches(sequence)
            if !matches { worker.record(.mismatch, mismatchDetail(n, sequence)) }
            if state == .setup {  // an answer, right or wrong: the server is there, and the load shows the rest
                state = .active
                worker.setupConnected()
                return
            }
            if matches {
                worker.receivedAll.add(UInt64(n))
                worker.opCompleted(latency: UInt64(bitPattern: Syscall.monotonicNanoseconds() &- sentAt))
            }
            next()
            return
        }
        // An older datagram (or the newest one again).
        let back = inFlight ? age : age &+ 1  // 1: the previous one, in answeredBefore's bit 0
        let older = sequence &- age
        guard n == size, age < sequence, back >= 1, back <= 64, bodyMatches(older) else {
            worker.record(.mismatch, mismatchDetail(n, inFlight ? sequence : older))
            return
        }
        let bit: UInt64 = 1 << (back - 1)
        if answeredBefore & bit != 0 {
            worker.record(.mismatch, "socket \(id): datagram #\(older) echoed twice")
        } else {
            answeredBefore |= bit
            worker.late &+= 1
        }
    }

    @inline(__always)
    private func bodyMatches(_ sequence: UInt64) -> Bool {
        let expected = pattern.pointer(start: patternStart, offset: sequence &* UInt64(size) &+ UInt64(sequenceBytes))
        return memcmp(worker.readBuffer + sequenceBytes, expected, size - sequenceBytes) == 0
    }

    private func mismatchDetail(_ n: Int, _ sequence: UInt64) -> String {
        if n != size { return "socket \(id): a reply of \(n) bytes to datagrams of \(size) bytes" }
        let bytes = worker.readBuffer.assumingMemoryBound(to: UInt8.self)
        let base = sequence &* UInt64(size)
        var i = sequenceBytes
        while i < n && bytes[i] == pattern.byte(start: patternStart, offset: base &+ UInt64(i)) { i += 1 }
        if i == n { return "socket \(id): a reply with a sequence number never sent" }
        let want = pattern.byte(start: patternStart, offset: base &+ UInt64(i))
        return "socket \(id): datagram #\(sequence) echoed with byte \(i) 0x\(NumberText.hex(bytes[i])), sent 0x\(NumberText.hex(want))"
    }

    private func failed(_ error: IOError) {
        let detail =
            error.errno == ECONNREFUSED
            ? "\(worker.targetLabel): port unreachable (ICMP): nothing listens on that UDP port"
            : "socket \(id): \(error)"
        if state == .setup {
            worker.setupFailed(detail)
            return
        }
        worker.record(error.errno == ECONNREFUSED ? .connectFailed : .other, detail)
        closeSocket()
        if state == .active {
            inFlight = false
            finish()
        }
    }

    func closeSocket() {
        guard fd >= 0 else { return }
        worker.loop.deregister(fd: fd, willClose: true)
        Syscall.close(fd)
        fd = -1
    }

    /// After the loop thread is gone: close without touching the loop.
    func teardown() {
        if fd >= 0 { Syscall.close(fd) }
        fd = -1
        state = .done
    }
}
