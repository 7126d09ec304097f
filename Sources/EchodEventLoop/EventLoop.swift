import CEchodLinux
import EchodSystem
import Glibc
import Synchronization

/// An epoll reactor for one thread, in the spirit of Redis's `ae`: a flat table of registrations indexed by fd,
/// one `epoll_wait` per turn into an events array reused forever, and everything else — timers, signals,
/// cross-thread wakeups — as descriptors on the same epoll.
///
/// Thread confinement: `register`, `modify`, `deregister` and handler callbacks happen on the loop's own thread
/// (or before the loop runs, by the thread that sets it up). Other threads talk to the loop only through
/// `execute(_:)` (a queue plus an eventfd wakeup) and `stop()`. Debug builds check this: see `assertInLoop()`.
package final class EventLoop: @unchecked Sendable {
    /// One registration. `generation` tells a live registration from a stale event for a closed and reused fd.
    struct Slot {
        /// Unretained: the loop does not own handlers, and dispatching through `Unmanaged` costs no reference
        /// counting per event. All zeroes (nil, generation 0) is an empty slot, as `FDTable` requires.
        var handler: Unmanaged<EventHandler>?
        var generation: UInt32
    }

    /// This loop's number (0-based), for logs and metrics.
    package let index: Int
    /// Counters and the heartbeat, readable from any thread.
    package let stats = LoopStats()

    private let epollFD: Int32
    private let slots: FDTable<Slot>
    private var nextGeneration: UInt32 = 1
    private let events: UnsafeMutablePointer<epoll_event>
    private let eventCapacity: Int32 = 512

    private let wakeFD: Int32
    private let tickFD: Int32
    private let tickHandler = TickHandler()
    private let queue = Mutex<[@Sendable () -> Void]>([])
    private let wakeHandler = WakeHandler()
    private var running = false
    /// `pthread_self()` of the thread inside `run()`, 0 while none is: read from any thread by `inLoopThread`.
    private let ownerThread = Atomic<UInt>(0)

    /// The longest an idle loop sleeps: it turns at least this often, so its heartbeat stays fresh while idle.
    ///
    /// This is a periodic timerfd on the loop, not an `epoll_wait` timeout: a timeout arms and cancels a kernel
    /// hrtimer on every sleep, which in a single-connection ping-pong (one sleep per round trip) measured about
    /// 0.3 µs of system time per round trip on this VM (pp64-c1 against the C reference server, 16 interleaved
    /// 1 s runs, system time from /proc: 12.02 µs with the timeout, 11.72 with the timerfd, C 11.57). The
    /// timerfd is armed once and costs four events a second.
    package static let maximumSleepMilliseconds: Int32 = 250

    package init(index: Int = 0) throws(IOError) {
        self.index = index
        epollFD = try Syscall.epollCreate()
        do {
            wakeFD = try Syscall.eventFD()
        } catch {
            Syscall.close(epollFD)
            throw error
        }
        do {
            tickFD = try Syscall.timerFD()
        } catch {
            Syscall.close(wakeFD)
            Syscall.close(epollFD)
            throw error
        }
        do {
            slots = try FDTable<Slot>()
        } catch {
            Syscall.close(tickFD)
            Syscall.close(wakeFD)
            Syscall.close(epollFD)
            throw error
        }
        events = .allocate(capacity: Int(eventCapacity))
        wakeHandler.loop = self
        try register(fd: wakeFD, interest: .read, handler: wakeHandler)
        let tick = Duration.milliseconds(Self.maximumSleepMilliseconds)
        try Syscall.timerSet(tickFD, after: tick, every: tick)
        try register(fd: tickFD, interest: .read, handler: tickHandler)
    }

    deinit {
        Syscall.close(tickFD)
        Syscall.close(wakeFD)
        Syscall.close(epollFD)
        slots.deallocate()
        events.deallocate()
    }

    // MARK: Registrations (loop thread only)

    /// Starts watching `fd` for `interest`, dispatching to `handler`.
    package func register(fd: Int32, interest: Interest, handler: EventHandler) throws(IOError) {
        assertInLoop()
        guard slots.holds(fd) else { throw IOError("epoll_ctl", errno: EMFILE) }
        let generation = nextGeneration
        nextGeneration = nextGeneration == UInt32.max ? 1 : nextGeneration + 1
        try Syscall.epollControl(epollFD, EPOLL_CTL_ADD, fd, events: interest.rawValue, data: Self.userData(fd, generation))
        slots[fd].pointee = Slot(handler: Unmanaged.passUnretained(handler), generation: generation)
    }

    /// Changes what an already registered `fd` is watched for.
    @inline(__always)
    package func modify(fd: Int32, interest: Interest) throws(IOError) {
        assertInLoop()
        let slot = slots[fd].pointee
        precondition(slot.handler != nil, "modify of unregistered fd \(fd)")
        try Syscall.epollControl(epollFD, EPOLL_CTL_MOD, fd, events: interest.rawValue, data: Self.userData(fd, slot.generation))
    }

    /// Stops watching `fd`. Events for it still in this turn's batch are discarded.
    ///
    /// - Parameter willClose: the caller closes `fd` right after; `close(2)` removes it from the epoll set by
    ///   itself, which saves the `EPOLL_CTL_DEL` system call per connection. Pass false for descriptors that stay
    ///   open (a shared listener taken out of this loop only).
    @inline(__always)
    package func deregister(fd: Int32, willClose: Bool) {
        assertInLoop()
        if !willClose {
            _ = try? Syscall.epollControl(epollFD, EPOLL_CTL_DEL, fd, events: 0, data: 0)
        }
        slots[fd].pointee = Slot(handler: nil, generation: 0)
    }

    @inline(__always)
    private static func userData(_ fd: Int32, _ generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    // MARK: Running

    /// Runs the loop on the calling thread until `stop()` is called.
    package func run() throws(IOError) {
        ownerThread.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .relaxed)
        // Whoever runs the loop next, or tears it down after `run` returns, owns it then.
        defer { ownerThread.store(0, ordering: .relaxed) }
        running = true
        var turnStart = Syscall.monotonicNanoseconds()
        while running {
            stats.heartbeat.store(turnStart, ordering: .relaxed)
            let count = try Syscall.epollWait(epollFD, events, eventCapacity, -1)
            let woke = Syscall.monotonicNanoseconds()
            dispatch(count)
            turnStart = Syscall.monotonicNanoseconds()
            stats.recordTurn(busy: turnStart - woke)
        }
        runPendingTasks()
    }

    @inline(__always)
    private func dispatch(_ count: Int) {
        var i = 0
        while i < count {
            let event = events + i
            i += 1
            let data = echod_epoll_event_data(event)
            let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
            let generation = UInt32(truncatingIfNeeded: data >> 32)
            let slot = slots[fd].pointee
            // A handler earlier in this batch may have closed fd (and even reused its number): skip stale events.
            guard slot.generation == generation, let handler = slot.handler else { continue }
            let bits = echod_epoll_event_events(event)
            handler._withUnsafeGuaranteedRef { $0.handleEvent(fd: fd, events: bits) }
        }
        stats.events.add(UInt64(count))
    }

    /// Whether the caller runs on this loop's thread (false while the loop is not running).
    package var inLoopThread: Bool {
        let owner = ownerThread.load(ordering: .relaxed)
        return owner != 0 && pthread_equal(pthread_t(owner), pthread_self()) != 0
    }

    /// Debug builds stop the process when loop-owned state is touched from another thread while the loop runs: the
    /// check behind every registration change and the state the layers above keep per loop (connection tables,
    /// acceptors, timers), like SwiftNIO's `assertInEventLoop`. Before `run()` starts and after it returns, the
    /// thread setting the loop up or tearing it down may call in. In release builds this compiles to nothing: the
    /// thread comparison sits inside the `assert` autoclosure, which `-O` does not evaluate.
    @inline(__always)
    package func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(
            ownerThread.load(ordering: .relaxed) == 0 || inLoopThread,
            "loop-owned state of event loop \(index) touched from another thread", file: file, line: line)
    }

    // MARK: Cross-thread

    /// Runs `task` on the loop thread during its next turn. Safe from any thread; never blocks on the loop.
    package func execute(_ task: @escaping @Sendable () -> Void) {
        let wasEmpty = queue.withLock { tasks in
            tasks.append(task)
            return tasks.count == 1
        }
        // Only the first task of a batch needs to wake the loop; the rest ride along.
        if wasEmpty { Syscall.signalEventFD(wakeFD) }
    }

    /// Makes `run()` return after the current turn. Safe from any thread.
    package func stop() {
        execute { [unowned self] in self.running = false }
    }

    fileprivate func runPendingTasks() {
        Syscall.drainCounter(wakeFD)
        let tasks = queue.withLock { tasks in
            let taken = tasks
            tasks.removeAll(keepingCapacity: true)
            return taken
        }
        for task in tasks { task() }
    }
}

private final class WakeHandler: EventHandler {
    unowned(unsafe) var loop: EventLoop?
    override func handleEvent(fd: Int32, events: UInt32) {
        loop?.runPendingTasks()
    }
}

/// The idle tick: its only job is to make the loop turn (and so refresh its heartbeat).
private final class TickHandler: EventHandler {
    override func handleEvent(fd: Int32, events: UInt32) {
        Syscall.drainCounter(fd)
    }
}
