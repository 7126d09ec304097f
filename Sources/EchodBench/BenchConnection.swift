import EchodEventLoop
import EchodProxyProtocol
import EchodSystem
import EchodText
import Glibc

/// One client connection (in `connect` mode: one connector, which opens a new connection per operation).
///
/// The hot path does no allocation: bytes are written straight from the shared pattern table, read into the
/// worker's one read buffer and checked there with `memcmp` against the pattern at the stream offset. Interest
/// changes go to epoll only when the interest actually changes (a ping-pong connection stays on EPOLLIN unless a
/// write is partial). Everything runs on the worker's loop thread.
final class BenchConnection: EventHandler {
    enum State: UInt8 {
        /// No socket (connect mode between operations, or before start).
        case idle
        /// A non-blocking connect is under way.
        case connecting
        /// Exchanging data.
        case active
        /// Drain: everything came back, we shut down our side and wait for the server's EOF.
        case halfClosed
        /// Connect mode: waiting for the worker's retry tick after a failure.
        case retryWait
        /// Finished for good.
        case done
    }

    unowned(unsafe) let worker: BenchWorker
    unowned(unsafe) let pattern: BenchPattern
    let id: Int
    let mode: BenchMode
    let size: UInt64
    let maxChunk: UInt64
    private(set) var fd: Int32 = -1
    private(set) var state: State = .idle
    private var interest = Interest()

    private var patternStart: UInt64
    /// Bytes written to / read back from the current socket (stream offsets).
    private var sent: UInt64 = 0
    private var received: UInt64 = 0
    /// Ping-pong and connect: the stream offset at which the current operation's echo is complete.
    private var opEnd: UInt64 = 0
    /// When the current operation started (``Syscall/monotonicNanoseconds()``).
    private var opStart: Int64 = 0
    /// Connect mode: operations started by this connector (varies the pattern per connection).
    private var round: UInt64 = 0
    private var inConnectOp = false

    /// Stream mode: when each message in flight was completely written, a ring indexed by message number.
    private var stamps: UnsafeMutablePointer<Int64>?
    private var stampCapacity: UInt64 = 0

    /// `--proxy-protocol`: the header this socket sends before any payload (written again for each socket, since
    /// it carries the socket's own port), its length, and how much of it has gone out. Not payload: the server
    /// does not echo it, and `sent`/`received` do not count it.
    private let header: UnsafeMutableRawBufferPointer?
    private var headerLength = 0
    private var headerSent = 0

    init(worker: BenchWorker, id: Int) {
        self.worker = worker
        self.pattern = worker.pattern
        self.id = id
        self.mode = worker.mode
        self.size = worker.size
        self.maxChunk = UInt64(worker.pattern.maxChunk)
        self.patternStart = BenchPattern.start(id: id)
        self.header = worker.proxyProtocol == nil ? nil : .allocate(byteCount: BenchProxyHeader.capacity, alignment: 8)
        super.init()
        if mode == .stream {
            stampCapacity = worker.window / size + 2
            stamps = .allocate(capacity: Int(stampCapacity))
            stamps!.initialize(repeating: 0, count: Int(stampCapacity))
        }
    }

    deinit {
        stamps?.deallocate()
        header?.deallocate()
    }

    var isWaitingForRetry: Bool { state == .retryWait }

    // MARK: Events

    override func handleEvent(fd: Int32, events: UInt32) {
        switch state {
        case .active:
            switch mode {
            case .pingpong: pingpongEvent(events)
            case .stream: streamEvent(events)
            case .connect: connectModeEvent(events)
            }
        case .connecting:
            connectCompleted()
        case .halfClosed:
            awaitEOF()
        case .idle, .retryWait, .done:
            break
        }
    }

    // MARK: Set-up

    /// Starts the set-up connect (the long-lived connection, or connect mode's probe).
    func setupConnect() {
        let result: (fd: Int32, connected: Bool)
        do throws(IOError) {
            result = try Socket.connect(to: worker.target)
        } catch {
            worker.setupFailed("cannot connect to \(worker.target): \(error)")
            return
        }
        guard adopt(result.fd, interest: .write) else {
            worker.setupFailed("cannot register a socket with epoll")
            return
        }
        guard prepareHeader() else { return }
        state = .connecting
        if result.connected { connectCompleted() }
    }

    /// Connect mode: closes the set-up probe.
    func closeProbe() {
        closeSocket()
        state = .idle
    }

    private func adopt(_ newFD: Int32, interest newInterest: Interest) -> Bool {
        Socket.setNoDelay(newFD)
        do throws(IOError) {
            try worker.loop.register(fd: newFD, interest: newInterest, handler: self)
        } catch {
            Syscall.close(newFD)
            return false
        }
        fd = newFD
        interest = newInterest
        return true
    }

    private func connectCompleted() {
        if let error = Socket.pendingError(fd) {
            if worker.phase == .setup {
                worker.setupFailed("cannot connect to \(worker.target): \(error)")
            } else {
                closeSocket()
                worker.record(.connectFailed, "connection \(id): \(error)")
                enterRetryWait()
            }
            return
        }
        if worker.phase == .setup {
            // The header goes out during set-up, so that the load starts on connections past the server's header phase.
            guard sendHeader() else { return }
            if headerSent < headerLength {
                setInterest(.write)  // still connecting, as far as the load is concerned: the rest when writable
                return
            }
            state = .active
            setInterest(.read)
            worker.setupConnected()
        } else {
            state = .active
            _ = send(upTo: opEnd)
        }
    }

    /// `--proxy-protocol`: writes this socket's header into `header` (connect mode: inside the measured operation,
    /// since a proxy pays it per connection too). False when it cannot be written (already counted, socket closed).
    private func prepareHeader() -> Bool {
        headerSent = 0
        headerLength = 0
        guard let header, let version = worker.proxyProtocol else { return true }
        do throws(ProxyHeaderWriter.Failure) {
            headerLength = try BenchProxyHeader.write(version, id: id, fd: fd, target: worker.target, into: header)
            return true
        } catch {
            fail(.other, "connection \(id): cannot write the PROXY protocol header: \(error)")
            return false
        }
    }

    /// Writes what is left of the PROXY protocol header; false when the connection failed (already handled).
    private func sendHeader() -> Bool {
        guard let header else { return true }
        while headerSent < headerLength {
            let result: IOResult
            do throws(IOError) {
                result = try Syscall.write(fd, header.baseAddress! + headerSent, headerLength - headerSent)
            } catch {
                failed(error, during: "write of the PROXY protocol header")
                return false
            }
            guard case .processed(let n) = result else { return true }
            headerSent += n
        }
        return true
    }

    // MARK: Load

    /// Starts this connection's load.
    func begin() {
        switch mode {
        case .pingpong: startOp(at: Syscall.monotonicNanoseconds())
        case .stream: streamFill()
        case .connect: nextConnect()
        }
    }

    // MARK: Ping-pong

    @inline(__always)
    private func startOp(at now: Int64) {
        opStart = now
        opEnd = sent &+ size
        _ = send(upTo: opEnd)
    }

    private func pingpongEvent(_ events: UInt32) {
        guard let now = advanceOp(events) else { return }
        worker.opCompleted(latency: UInt64(bitPattern: now &- opStart))
        if worker.sending { startOp(at: now) } else { halfClose() }
    }

    /// Sends what the current operation still owes, then reads and verifies its echo; returns the time at which
    /// the whole echo was in (nil while it is not, or when the connection failed). Shared by pingpong and connect.
    private func advanceOp(_ events: UInt32) -> Int64? {
        if events & EventBits.writable != 0 && sent < opEnd {
            guard send(upTo: opEnd) else { return nil }
        }
        guard events & (EventBits.readable | EventBits.error | EventBits.hangup) != 0 else { return nil }
        let want = sent &- received
        if want == 0 {
            unexpectedInput()
            return nil
        }
        guard readVerify(max: want) > 0, received == opEnd else { return nil }
        return Syscall.monotonicNanoseconds()
    }

    // MARK: Stream

    private func streamFill() {
        let window = worker.window
        while true {
            let inFlight = sent &- received
            if inFlight >= window {
                setInterest(.read)
                return
            }
            let messageLeft = size &- sent % size
            let length = Int(min(window &- inFlight, messageLeft, maxChunk))
            let result: IOResult
            do throws(IOError) {
                result = try Syscall.write(fd, pattern.pointer(start: patternStart, offset: sent), length)
            } catch {
                failed(error, during: "write")
                return
            }
            guard case .processed(let n) = result else {
                setInterest([.read, .write])
                return
            }
            sent &+= UInt64(n)
            worker.sentAll.add(UInt64(n))
            if sent % size == 0, let stamps {
                stamps[Int((sent / size &- 1) % stampCapacity)] = Syscall.monotonicNanoseconds()
            }
            if n < length {  // the socket buffer is full: the next write would only say EAGAIN
                setInterest([.read, .write])
                return
            }
        }
    }

    private func streamEvent(_ events: UInt32) {
        if events & (EventBits.readable | EventBits.error | EventBits.hangup) != 0 {
            var reads = 0
            while reads < 4 {  // bounded, so that one fast connection cannot starve the others
                reads += 1
                let want = sent &- received
                if want == 0 {
                    if reads == 1 {
                        unexpectedInput()
                        if state != .active { return }
                    }
                    break
                }
                let before = received
                let length = min(want, maxChunk)
                let n = readVerify(max: length)
                if n < 0 { return }
                if n == 0 { break }
                let first = before / size
                let last = received / size
                if last > first, let stamps {
                    let now = Syscall.monotonicNanoseconds()
                    var m = first
                    while m < last {
                        worker.opCompleted(latency: UInt64(bitPattern: now &- stamps[Int(m % stampCapacity)]))
                        m &+= 1
                    }
                }
                if UInt64(n) < length { break }  // drained the socket
            }
        }
        guard state == .active else { return }
        if worker.sending {
            streamFill()
        } else if sent == received {
            halfClose()
        } else {
            setInterest(.read)
        }
    }

    // MARK: Connect

    private func nextConnect() {
        guard worker.sending else {
            state = .done
            worker.connectionFinished()
            return
        }
        if inConnectOp {  // a failure inside connectOp itself: wait for the tick instead of recursing
            enterRetryWait()
            return
        }
        inConnectOp = true
        defer { inConnectOp = false }
        connectOp()
    }

    private func connectOp() {
        round &+= 1
        patternStart = BenchPattern.start(id: id, round: round)
        sent = 0
        received = 0
        opEnd = size
        opStart = Syscall.monotonicNanoseconds()
        let result: (fd: Int32, connected: Bool)
        do throws(IOError) {
            result = try Socket.connect(to: worker.target)
        } catch {
            worker.record(.connectFailed, "connection \(id): \(error)")
            enterRetryWait()
            return
        }
        guard adopt(result.fd, interest: .write) else {
            worker.record(.other, "connection \(id): cannot register a socket with epoll")
            enterRetryWait()
            return
        }
        guard prepareHeader() else { return }
        if result.connected {
            state = .active
            _ = send(upTo: opEnd)
        } else {
            state = .connecting
        }
    }

    private func enterRetryWait() {
        state = .retryWait
        worker.scheduleRetry()
    }

    /// The retry tick: try again (or, once the load has stopped, finish).
    func retry() {
        guard state == .retryWait else { return }
        state = .idle
        nextConnect()
    }

    private func connectModeEvent(_ events: UInt32) {
        guard let now = advanceOp(events) else { return }
        closeSocket()
        state = .idle
        worker.opCompleted(latency: UInt64(bitPattern: now &- opStart))
        nextConnect()
    }

    // MARK: Shared I/O

    /// Writes the pattern up to stream offset `end`; returns false when the connection failed.
    @inline(__always)
    private func send(upTo end: UInt64) -> Bool {
        if headerSent < headerLength {  // connect mode: a socket's header goes first
            guard sendHeader() else { return false }
            if headerSent < headerLength {
                setInterest([.read, .write])
                return true
            }
        }
        while sent < end {
            let length = Int(min(end &- sent, maxChunk))
            let result: IOResult
            do throws(IOError) {
                result = try Syscall.write(fd, pattern.pointer(start: patternStart, offset: sent), length)
            } catch {
                failed(error, during: "write")
                return false
            }
            guard case .processed(let n) = result else {
                setInterest([.read, .write])
                return true
            }
            sent &+= UInt64(n)
            worker.sentAll.add(UInt64(n))
        }
        setInterest(.read)
        return true
    }

    /// Reads at most `limit` bytes and checks them against the pattern. Returns the byte count, 0 when nothing
    /// was there, -1 when the connection failed (already counted and handled).
    @inline(__always)
    private func readVerify(max limit: UInt64) -> Int {
        let length = Int(min(limit, UInt64(worker.readCapacity)))
        let result: IOResult
        do throws(IOError) {
            result = try Syscall.read(fd, worker.readBuffer, length)
        } catch {
            failed(error, during: "read")
            return -1
        }
        guard case .processed(let n) = result else { return 0 }
        if n == 0 {
            fail(.earlyClose, "connection \(id)\(roundLabel): the server closed the connection with \(sent &- received) of \(sent) bytes sent not echoed")
            return -1
        }
        let expected = pattern.pointer(start: patternStart, offset: received)
        if memcmp(worker.readBuffer, expected, n) != 0 {
            fail(.mismatch, mismatchDetail(n))
            return -1
        }
        received &+= UInt64(n)
        worker.receivedAll.add(UInt64(n))
        return n
    }

    /// Readable while nothing is expected: extra bytes, EOF, or a reset.
    private func unexpectedInput() {
        let result: IOResult
        do throws(IOError) {
            result = try Syscall.read(fd, worker.readBuffer, worker.readCapacity)
        } catch {
            failed(error, during: "read")
            return
        }
        switch result {
        case .wouldBlock: return
        case .processed(0):
            fail(.earlyClose, "connection \(id)\(roundLabel): the server closed the connection")
        case .processed(let n):
            fail(.mismatch, "connection \(id)\(roundLabel): \(n) unexpected bytes beyond the \(sent) sent" + headerEchoHint(n, through: received))
        }
    }

    private func mismatchDetail(_ n: Int) -> String {
        let buffer = worker.readBuffer.assumingMemoryBound(to: UInt8.self)
        var i = 0
        while i < n && buffer[i] == pattern.byte(start: patternStart, offset: received &+ UInt64(i)) { i += 1 }
        let offset = received &+ UInt64(i)
        let got = buffer[min(i, n - 1)]
        let want = pattern.byte(start: patternStart, offset: offset)
        return "connection \(id)\(roundLabel): echoed byte at stream offset \(offset) is 0x\(NumberText.hex(got)), sent 0x\(NumberText.hex(want))"
            + headerEchoHint(n, through: offset)
    }

    /// A server that echoes the PROXY header back is one that does not expect it: when the stream up to and including
    /// `offset` (the first wrong byte) reads as the start of the header, say so rather than only "mismatch". The bytes
    /// before `received` matched the pattern, so they are compared as the pattern; the rest are the `n` just read.
    /// Checking the whole prefix, not only the first byte, keeps the hint when the pattern happens to start like the
    /// header (then the first wrong byte is not at offset 0).
    private func headerEchoHint(_ n: Int, through offset: UInt64) -> String {
        guard let header, offset < UInt64(headerLength), offset < received &+ UInt64(n) else { return "" }
        let buffer = worker.readBuffer.assumingMemoryBound(to: UInt8.self)
        for k in 0...offset {
            let byte = k < received ? pattern.byte(start: patternStart, offset: k) : buffer[Int(k &- received)]
            if byte != header[Int(k)] { return "" }
        }
        return " (the PROXY protocol header came back: is the listener set to proxy_protocol?)"
    }

    private var roundLabel: String { mode == .connect ? " (connection #\(round) of this connector)" : "" }

    // MARK: Drain and failure

    private func halfClose() {
        Syscall.shutdown(fd, Int32(SHUT_WR))
        state = .halfClosed
        setInterest(.read)
    }

    private func awaitEOF() {
        let result: IOResult
        do throws(IOError) {
            result = try Syscall.read(fd, worker.readBuffer, worker.readCapacity)
        } catch {
            failed(error, during: "read after half-close")
            return
        }
        switch result {
        case .wouldBlock: return
        case .processed(0):
            closeSocket()
            state = .done
            worker.connectionFinished()
        case .processed(let n):
            fail(.mismatch, "connection \(id): \(n) unexpected bytes after the echo was complete")
        }
    }

    /// The load stopped.
    func drainStarted() {
        switch mode {
        case .pingpong:
            break  // the operation in flight finishes, then the connection half-closes
        case .stream:
            guard state == .active else { return }
            if sent == received { halfClose() } else { setInterest(.read) }
        case .connect:
            if state == .idle || state == .retryWait {
                state = .done
                worker.connectionFinished()
            }
        }
    }

    /// The drain timeout expired with this connection unfinished.
    func drainExpired() {
        switch state {
        case .connecting:
            worker.record(.connectFailed, "connection \(id): connect did not complete within the drain timeout")
        case .active:
            worker.record(.lost, "connection \(id)\(roundLabel): \(sent &- received) of \(sent) bytes sent never came back (drain timeout)")
        case .halfClosed:
            worker.record(.noEOF, "connection \(id): the server did not close after our half-close (drain timeout)")
        case .idle, .retryWait, .done:
            return
        }
        closeSocket()
        state = .done
    }

    private func failed(_ error: IOError, during operation: String) {
        switch error.errno {
        case ECONNRESET, EPIPE:
            fail(.earlyClose, "connection \(id)\(roundLabel): \(operation): connection reset by the server with \(sent &- received) bytes outstanding")
        default:
            fail(.other, "connection \(id)\(roundLabel): \(operation): \(error)")
        }
    }

    private func fail(_ kind: BenchErrorKind, _ detail: @autoclosure () -> String) {
        if worker.phase == .setup {
            worker.setupFailed(detail())
            state = .done  // its socket is closed: a caller up the stack must not touch it (stream mode would half-close it)
            return
        }
        worker.record(kind, detail())
        closeSocket()
        if mode == .connect {
            state = .idle
            nextConnect()
        } else {
            state = .done
            worker.connectionFinished()
        }
    }

    @inline(__always)
    private func setInterest(_ wanted: Interest) {
        guard wanted.rawValue != interest.rawValue else { return }
        do throws(IOError) {
            try worker.loop.modify(fd: fd, interest: wanted)
            interest = wanted
        } catch {
            failed(error, during: "epoll_ctl")
        }
    }

    func closeSocket() {
        guard fd >= 0 else { return }
        worker.loop.deregister(fd: fd, willClose: true)
        Syscall.close(fd)
        fd = -1
        interest = Interest()
    }

    /// After the loop thread is gone: close without touching the loop.
    func teardown() {
        if fd >= 0 { Syscall.close(fd) }
        fd = -1
        state = .done
    }
}
