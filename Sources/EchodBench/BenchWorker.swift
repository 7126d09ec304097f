import EchodEventLoop
import EchodProxyProtocol
import EchodSystem
import EchodText
import Synchronization

/// What went wrong, by kind.
enum BenchErrorKind {
    case mismatch, earlyClose, connectFailed, lost, noEOF, other
}

/// One event loop's share of a bench run: its connections, its histogram, its counters. Everything here is
/// touched only on that loop's thread, except the atomics (read by the runner for progress and hand-over) and,
/// after the thread has been joined, everything (the runner reads the results).
final class BenchWorker: @unchecked Sendable {
    enum Phase: UInt8 { case setup, warmup, measuring, draining, finished }

    /// `status` values.
    static let settingUp: UInt8 = 0, ready: UInt8 = 1, setupFailed: UInt8 = 2, done: UInt8 = 3

    let index: Int
    let loop: EventLoop
    let mode: BenchMode
    let target: SocketAddress
    let size: UInt64
    let window: UInt64
    let pattern: BenchPattern
    let readBuffer: UnsafeMutableRawPointer
    /// `--udp`: each datagram is built here before it is sent (one datagram at a time on this thread).
    let sendBuffer: UnsafeMutableRawPointer
    let udp: Bool
    /// `--udp`: how long a datagram may wait for its echo before it counts as lost.
    let lossTimeoutNanoseconds: Int64
    /// The target as the messages name it: `127.0.0.1:7` or `udp://127.0.0.1:7`.
    let targetLabel: String
    let readCapacity: Int
    let firstID: Int
    let count: Int
    /// This worker's share of `--max-ops`.
    let maxOps: UInt64
    let drainTimeout: Duration
    let connectTimeout: Duration
    /// `--proxy-protocol`: every connection sends this header version first (``BenchProxyHeader``).
    let proxyProtocol: ProxyVersion?

    private(set) var connections: [any BenchFlow] = []
    private(set) var phase: Phase = .setup
    /// Warm-up or measuring: connections start new operations.
    private(set) var sending = false
    private(set) var measuring = false

    var latency = LatencyRecorder()
    /// Totals since load started (warm-up and drain included), single writer, readable by the runner.
    let opsAll = SingleWriterCounter()
    let sentAll = SingleWriterCounter()
    let receivedAll = SingleWriterCounter()
    let errorCount = SingleWriterCounter()
    /// The totals when measuring started and stopped.
    private(set) var atStart = (ops: UInt64(0), sent: UInt64(0), received: UInt64(0))
    private(set) var atEnd = (ops: UInt64(0), sent: UInt64(0), received: UInt64(0))
    /// When measuring started and stopped (``Syscall/monotonicNanoseconds()``).
    private(set) var tStart: Int64 = 0
    private(set) var tEnd: Int64 = 0
    private var opsLimit = UInt64.max

    var errors = BenchErrors()
    /// `--udp`: replies that came after their datagram had been counted lost.
    var late: UInt64 = 0
    var details: [String] = []
    static let maxDetails = 5

    private var open = 0
    private var pendingSetup = 0
    private var stopAt: Int64 = 0
    private var stopRequested = false
    private var phaseTimer: LoopTimer?
    private var retryTimer: LoopTimer?
    private var lossTimer: LoopTimer?
    private var retryArmed = false

    let status = Atomic<UInt8>(BenchWorker.settingUp)
    let failure = Mutex<String?>(nil)

    init(index: Int, loop: EventLoop, options: BenchOptions, pattern: BenchPattern, firstID: Int, count: Int, maxOps: UInt64) {
        self.index = index
        self.loop = loop
        self.mode = options.mode
        self.target = options.target
        self.size = UInt64(options.size)
        self.window = UInt64(options.effectiveWindow)
        self.pattern = pattern
        self.readCapacity = pattern.maxChunk
        self.readBuffer = .allocate(byteCount: pattern.maxChunk, alignment: 64)
        self.udp = options.udp
        self.sendBuffer = .allocate(byteCount: options.udp ? options.size : 0, alignment: 64)
        self.lossTimeoutNanoseconds = options.lossTimeout.nanoseconds
        self.targetLabel = options.targetLabel
        self.firstID = firstID
        self.count = count
        self.maxOps = maxOps
        self.drainTimeout = options.drainTimeout
        self.connectTimeout = options.connectTimeout
        self.proxyProtocol = options.proxyProtocol
    }

    deinit {
        readBuffer.deallocate()
        sendBuffer.deallocate()
    }

    // MARK: Set-up (loop thread)

    /// Opens every connection (in `connect` mode: one probe connection per connector, closed again), then
    /// sets `status` to ready or failed.
    func setup() {
        do throws(IOError) {
            phaseTimer = try LoopTimer(loop: loop) { [unowned self] in self.phaseTimerFired() }
            if mode == .connect {
                retryTimer = try LoopTimer(loop: loop) { [unowned self] in self.retryTick() }
            }
            if udp {
                lossTimer = try LoopTimer(loop: loop) { [unowned self] in self.lossTick() }
            }
        } catch {
            setupFailed("cannot create a timer: \(error)")
            return
        }
        connections.reserveCapacity(count)
        for i in 0..<count {
            connections.append(udp ? BenchDatagram(worker: self, id: firstID + i) : BenchConnection(worker: self, id: firstID + i))
        }
        pendingSetup = count
        phaseTimer?.schedule(after: connectTimeout)
        if let lossTimer {
            let tick = Self.lossTickInterval(lossTimeoutNanoseconds)
            lossTimer.schedule(after: tick, every: tick)
        }
        for c in connections {
            guard phase == .setup else { return }
            c.setupConnect()
        }
    }

    func setupConnected() {
        guard phase == .setup else { return }
        pendingSetup -= 1
        guard pendingSetup == 0 else { return }
        phaseTimer?.cancel()
        if mode == .connect {
            for c in connections { c.closeProbe() }
        }
        status.store(Self.ready, ordering: .releasing)
    }

    func setupFailed(_ message: String) {
        guard phase == .setup else { return }
        failure.withLock { $0 = message }
        for c in connections { c.closeSocket() }
        phaseTimer?.cancel()
        phase = .finished
        status.store(Self.setupFailed, ordering: .releasing)
    }

    // MARK: Load (loop thread)

    /// Starts load: warm-up until `measureAt`, measuring until `stopAt` (monotonic nanoseconds), then drain.
    func start(measureAt: Int64, stopAt: Int64) {
        guard phase == .setup, status.load(ordering: .acquiring) == Self.ready else { return }
        self.stopAt = stopAt
        open = connections.count
        sending = true
        let now = Syscall.monotonicNanoseconds()
        if now >= measureAt {
            beginMeasuring(now)
            phaseTimer?.schedule(after: .nanoseconds(stopAt - now))
        } else {
            phase = .warmup
            phaseTimer?.schedule(after: .nanoseconds(measureAt - now))
        }
        for c in connections {
            guard sending else { break }
            c.begin()
        }
    }

    /// Ends the measurement now (max-ops reached, every connection failed, or the user interrupted); safe to
    /// call from inside a connection's handler: the switch happens on the next loop turn.
    func requestStop() {
        guard sending, !stopRequested else { return }
        stopRequested = true
        phaseTimer?.schedule(after: .zero)
    }

    private func beginMeasuring(_ now: Int64) {
        phase = .measuring
        measuring = true
        tStart = now
        atStart = (opsAll.load, sentAll.load, receivedAll.load)
        opsLimit = maxOps == .max ? .max : atStart.ops &+ maxOps
    }

    private func beginDrain(_ now: Int64) {
        if phase == .warmup {
            tStart = now
            atStart = (opsAll.load, sentAll.load, receivedAll.load)
        }
        tEnd = now
        atEnd = (opsAll.load, sentAll.load, receivedAll.load)
        phase = .draining
        sending = false
        measuring = false
        phaseTimer?.schedule(after: drainTimeout)
        for c in connections where phase == .draining { c.drainStarted() }
        if open == 0 { finish() }
    }

    private func phaseTimerFired() {
        let now = Syscall.monotonicNanoseconds()
        switch phase {
        case .setup:
            setupFailed(
                udp
                    ? "no echo from \(targetLabel) within \(seconds(connectTimeout)) s"
                    : "cannot connect to \(target): timed out after \(seconds(connectTimeout)) s")
        case .warmup:
            if stopRequested || now >= stopAt {
                beginDrain(now)
            } else {
                beginMeasuring(now)
                phaseTimer?.schedule(after: .nanoseconds(stopAt - now))
            }
        case .measuring:
            beginDrain(now)
        case .draining:
            for c in connections { c.drainExpired() }
            finish()
        case .finished:
            break
        }
    }

    private func finish() {
        guard phase != .finished else { return }
        phase = .finished
        sending = false
        phaseTimer?.cancel()
        retryTimer?.cancel()
        lossTimer?.cancel()
        for c in connections { c.closeSocket() }
        status.store(Self.done, ordering: .releasing)
    }

    // MARK: Called by connections (loop thread)

    @inline(__always)
    func opCompleted(latency nanoseconds: UInt64) {
        opsAll.add(1)
        if measuring {
            latency.record(nanoseconds: nanoseconds)
            if opsAll.load >= opsLimit { requestStop() }
        }
    }

    /// A connection (or, in `connect` mode, a connector) is finished for good.
    func connectionFinished() {
        open -= 1
        guard open == 0 else { return }
        if phase == .draining {
            finish()
        } else if sending {
            requestStop()  // nothing left to measure
        }
    }

    func record(_ kind: BenchErrorKind, _ detail: @autoclosure () -> String) {
        switch kind {
        case .mismatch: errors.mismatch += 1
        case .earlyClose: errors.earlyClose += 1
        case .connectFailed: errors.connectFailed += 1
        case .lost: errors.lost += 1
        case .noEOF: errors.noEOF += 1
        case .other: errors.other += 1
        }
        errorCount.add(1)
        if details.count < Self.maxDetails { details.append(detail()) }
    }

    /// A connector waits for the retry tick (a failed connect is not retried at once, so that a refusing server
    /// is not hammered in a tight loop and a synchronous failure cannot recurse).
    func scheduleRetry() {
        guard !retryArmed, let retryTimer else { return }
        retryArmed = true
        retryTimer.schedule(after: .milliseconds(2))
    }

    private func retryTick() {
        retryArmed = false
        for c in connections where c.isWaitingForRetry { c.retry() }
    }

    /// How often the loss timer looks for datagrams past the loss timeout: a tenth of it (so that a loss is seen
    /// within 10 % of its timeout), from 1 ms to 50 ms.
    static func lossTickInterval(_ timeout: Int64) -> Duration {
        .nanoseconds(min(max(timeout / 10, 1_000_000), 50_000_000))
    }

    private func lossTick() {
        let now = Syscall.monotonicNanoseconds()
        for c in connections { c.checkLoss(now: now) }
    }

    // MARK: After the thread has been joined

    /// Closes whatever is still open and releases the connections (on the runner's thread, after `join`).
    func teardown() {
        for c in connections { c.teardown() }
        connections.removeAll()
        phaseTimer?.close()
        phaseTimer = nil
        retryTimer?.close()
        retryTimer = nil
        lossTimer?.close()
        lossTimer = nil
    }

    /// Whether measuring ever started (the interval `tStart...tEnd` means something).
    var measured: Bool { tStart != 0 }
}

func seconds(_ d: Duration) -> String {
    NumberText.fixed(Double(d.nanoseconds) / 1e9, decimals: 3, trimZeros: true)
}
