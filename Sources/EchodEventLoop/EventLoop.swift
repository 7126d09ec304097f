import CEchodLinux
import CEchodUring
import EchodSystem
import Glibc
import Synchronization

/// An epoll reactor for one thread, in the spirit of Redis's `ae`: a flat table of registrations indexed by fd,
/// one `epoll_wait` per turn into an events array reused forever, and everything else — timers, signals,
/// cross-thread wakeups — as descriptors on the same epoll.
///
/// With the io_uring backend (``IOBackend``) the loop waits in `io_uring_enter` instead: the epoll set is still
/// there for every readiness handler, watched by a multishot poll on the ring, and handlers that `attach` a
/// descriptor instead of registering it get completions (``CompletionHandler``) for the requests they
/// submit through the loop (receives into the loop's provided buffers, sends, cancels). One submit-and-wait per
/// turn hands the kernel every request the last turn prepared.
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
    /// What the loop waits on.
    package let backend: IOBackend
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

    /// The io_uring backend's ring (nil with epoll), its completions array, and its provided buffers.
    private let ring: OpaquePointer?
    private let completions: UnsafeMutablePointer<echod_cqe>?
    private let completionCapacity: UInt32 = 1024
    package private(set) var buffers: ProvidedBuffers?
    /// Sends prepared this turn: the next wait is for their completions and one more (see `runRing`).
    private var sendsPrepared: UInt32 = 0
    /// Whether the epoll set may hold events not yet taken: after a turn that took some, until a look finds none.
    /// The ring's poll on the epoll descriptor reports new readiness only, not a level-triggered descriptor still
    /// ready (a listener with connections left after a batch), so the loop looks again before it sleeps.
    private var epollMayHaveMore = true
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

    /// The ring's sizes with the io_uring backend: submission slots (a full queue is submitted early, never lost) and
    /// completion slots (room for a turn of many connections' receives and sends).
    static let ringEntries: UInt32 = 4096
    static let ringCompletions: UInt32 = 16384

    package init(index: Int = 0, backend: IOBackend = .epoll) throws(IOError) {
        self.index = index
        self.backend = backend
        if backend == .ioUring {
            var made: OpaquePointer? = nil
            let result = echod_uring_create(Self.ringEntries, Self.ringCompletions, &made)
            guard result == 0, let made else { throw IOError("io_uring_setup", errno: -result) }
            ring = made
            completions = .allocate(capacity: Int(completionCapacity))
        } else {
            ring = nil
            completions = nil
        }
        do {
            epollFD = try Syscall.epollCreate()
        } catch {
            if let ring { echod_uring_destroy(ring) }
            completions?.deallocate()
            throw error
        }
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
        if let ring { echod_uring_poll_multishot(ring, epollFD, UInt32(EPOLLIN.rawValue), Self.epollPollData) }
        wakeHandler.loop = self
        try register(fd: wakeFD, interest: .read, handler: wakeHandler)
        let tick = Duration.milliseconds(Self.maximumSleepMilliseconds)
        try Syscall.timerSet(tickFD, after: tick, every: tick)
        try register(fd: tickFD, interest: .read, handler: tickHandler)
    }

    deinit {
        // The ring first: tearing it down ends every request still in flight on the descriptors below.
        if let ring { echod_uring_destroy(ring) }
        buffers?.deallocate()
        completions?.deallocate()
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
        nextGeneration = nextGeneration == Self.generationMask ? 1 : nextGeneration + 1
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

    // MARK: Completions (io_uring backend, loop thread only)

    /// Makes `handler` the receiver of completions for requests on `fd`, without watching it for readiness. The
    /// descriptor is then `detach`ed, after its last request completed.
    @inline(__always)
    package func attach(fd: Int32, handler: CompletionHandler) throws(IOError) {
        assertInLoop()
        guard ring != nil else { preconditionFailure("attach needs the io_uring backend") }
        guard slots.holds(fd) else { throw IOError("io_uring", errno: EMFILE) }
        let generation = nextGeneration
        nextGeneration = nextGeneration == Self.generationMask ? 1 : nextGeneration + 1
        slots[fd].pointee = Slot(handler: Unmanaged.passUnretained(handler), generation: generation)
    }

    /// Ends an `attach`. Completions that still come for `fd` are discarded.
    @inline(__always)
    package func detach(fd: Int32) {
        assertInLoop()
        slots[fd].pointee = Slot(handler: nil, generation: 0)
    }

    /// Registers room for `count` buffers of `size` bytes with the ring, for receives on this loop (one group per
    /// loop, made by its first user), and gives the kernel the first `initial` of them (``provideMoreBuffers``).
    package func provideBuffers(count: Int, size: Int, initial: Int) throws(IOError) -> ProvidedBuffers {
        assertInLoop()
        if let buffers { return buffers }
        guard let ring else { preconditionFailure("provided buffers need the io_uring backend") }
        let made = try ProvidedBuffers(count: count, size: size, given: min(initial, count))
        let result = echod_uring_register_buffers(
            ring, UInt32(count), UInt32(size), made.base, ProvidedBuffers.group, UInt32(made.given))
        guard result == 0 else {
            made.deallocate()
            throw IOError("io_uring_register", errno: -result)
        }
        buffers = made
        return made
    }

    /// Gives buffer `id` back to the kernel (from the next turn on).
    @inline(__always)
    package func recycleBuffer(_ id: UInt16) {
        echod_uring_recycle_buffer(ring, id)
    }

    /// Gives the kernel up to `count` buffers it never had, once per turn (the receives that ran out in this turn
    /// share them); false when every buffer is given already, or when the kernel backs no more (tried once a turn).
    ///
    /// Buffers are given as the load asks for them, not all at once: the kernel takes them in ring order, so every
    /// buffer it has ever been given gets written in turn, and given ones all end up costing memory. Growing only
    /// when receives run out keeps the memory at what the load needs at once.
    package func provideMoreBuffers(_ count: Int) -> Bool {
        guard let buffers, buffers.given < buffers.count, !buffers.refusedThisTurn else { return false }
        if buffers.grewThisTurn { return true }
        let first = buffers.given
        // Where the kernel will not back more (the commit limit under strict overcommit), none are given: as when
        // every buffer is given, receives wait for one to come back.
        guard buffers.give(upTo: min(buffers.count, first + count)) else {
            buffers.refusedThisTurn = true
            return false
        }
        buffers.grewThisTurn = true
        for id in first..<buffers.given { echod_uring_recycle_buffer(ring, UInt16(id)) }
        return true
    }

    /// Receives into one provided buffer on an attached `fd`; the completion carries `operation` and says which
    /// buffer (``Completion/buffer(_:)``).
    @inline(__always)
    package func receive(fd: Int32, operation: UInt8) {
        echod_uring_recv(ring, fd, ProvidedBuffers.group, completionData(fd, operation))
    }

    /// Sends `count` bytes at `bytes` on an attached `fd` (which must stay valid until the completion).
    @inline(__always)
    package func send(fd: Int32, bytes: UnsafeRawPointer, count: Int, operation: UInt8) {
        echod_uring_send(ring, fd, bytes, count, completionData(fd, operation))
        sendsPrepared &+= 1
    }

    /// Cancels the request on `fd` whose completions carry `target`; the cancel's own completion carries
    /// `operation`.
    @inline(__always)
    package func cancel(fd: Int32, target: UInt8, operation: UInt8) {
        echod_uring_cancel(ring, completionData(fd, target), completionData(fd, operation))
    }

    /// Runs completions only (no epoll events, no other turn work) until `done` says so or `timeout` passes: for
    /// a handler that must see its requests end before it goes on (a handover). Handlers get their completions as
    /// in a turn.
    package func runCompletions(timeout: Duration, until done: () -> Bool) {
        assertInLoop()
        guard let ring else { return }
        let deadline = Syscall.monotonicNanoseconds() + timeout.nanoseconds
        while !done() {
            let left = deadline - Syscall.monotonicNanoseconds()
            guard left > 0 else { return }
            echod_uring_publish_buffers(ring)
            _ = echod_uring_submit_and_wait(ring, 1, min(left, 10_000_000))
            while true {
                let count = echod_uring_take(ring, completions, completionCapacity)
                dispatchCompletions(ring, Int(count))
                if count < completionCapacity { break }
            }
        }
    }

    /// User data of a completion for `fd`: the handler's operation code, the registration's generation (24 bits)
    /// and the descriptor. 0 is the loop's own poll of the epoll set.
    @inline(__always)
    private func completionData(_ fd: Int32, _ operation: UInt8) -> UInt64 {
        UInt64(operation) << 56 | UInt64(slots[fd].pointee.generation & Self.generationMask) << 32
            | UInt64(UInt32(bitPattern: fd))
    }

    /// Generations fit in 24 bits so that a completion's user data also holds an operation code.
    private static let generationMask: UInt32 = (1 << 24) - 1
    private static let epollPollData: UInt64 = 0

    // MARK: Running

    /// Runs the loop on the calling thread until `stop()` is called. With io_uring, the first thread to run the loop
    /// is the only one that may ever run it (the ring is single-issuer where the kernel allows).
    package func run() throws(IOError) {
        ownerThread.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .relaxed)
        // Whoever runs the loop next, or tears it down after `run` returns, owns it then.
        defer { ownerThread.store(0, ordering: .relaxed) }
        running = true
        if let ring {
            try runRing(ring)
        } else {
            var turnStart = Syscall.monotonicNanoseconds()
            while running {
                stats.heartbeat.store(turnStart, ordering: .relaxed)
                let count = try Syscall.epollWait(epollFD, events, eventCapacity, -1)
                let woke = Syscall.monotonicNanoseconds()
                dispatch(count)
                turnStart = Syscall.monotonicNanoseconds()
                stats.recordTurn(busy: turnStart - woke)
            }
        }
        runPendingTasks()
    }

    /// The io_uring turn: take the epoll set's events if its poll fired (or the last look found some), publish the
    /// buffers handed back, submit what the last turn prepared and wait, then dispatch the readiness events and the
    /// completions.
    ///
    /// The wait is for the completions of the sends just submitted and one more: a send to a socket with room
    /// completes during the submission, so waiting for one completion would return at once with it and cost a
    /// second `io_uring_enter` per round trip. A send that does not complete at once (its peer does not read)
    /// bounds the wait with a 1 ms timeout. The idle tick on the epoll set bounds every sleep, as with epoll. With
    /// readiness events in hand the turn does not wait at all.
    private func runRing(_ ring: OpaquePointer) throws(IOError) {
        let enabled = echod_uring_enable(ring)
        guard enabled == 0 else { throw IOError("io_uring_register", errno: -enabled) }
        var turnStart = Syscall.monotonicNanoseconds()
        while running {
            stats.heartbeat.store(turnStart, ordering: .relaxed)
            var epollCount = 0
            if epollMayHaveMore {
                epollCount = try Syscall.epollWait(epollFD, events, eventCapacity, 0)
                epollMayHaveMore = epollCount > 0
            }
            echod_uring_publish_buffers(ring)
            buffers?.grewThisTurn = false
            buffers?.refusedThisTurn = false
            let wanted = 1 &+ sendsPrepared
            sendsPrepared = 0
            let timeout: Int64 = epollCount > 0 ? 0 : (wanted > 1 ? 1_000_000 : -1)
            let result = echod_uring_submit_and_wait(ring, wanted, timeout)
            if result < 0 { throw IOError("io_uring_enter", errno: -result) }
            let woke = Syscall.monotonicNanoseconds()
            if epollCount > 0 { dispatch(epollCount) }
            while true {
                let count = echod_uring_take(ring, completions, completionCapacity)
                dispatchCompletions(ring, Int(count))
                if count < completionCapacity { break }
            }
            turnStart = Syscall.monotonicNanoseconds()
            stats.recordTurn(busy: turnStart - woke)
        }
    }

    @inline(__always)
    private func dispatchCompletions(_ ring: OpaquePointer, _ count: Int) {
        guard let completions else { return }
        var i = 0
        while i < count {
            let completion = completions[i]
            i += 1
            let data = completion.user_data
            if data == Self.epollPollData {
                if completion.flags & ECHOD_CQE_F_MORE == 0 {
                    echod_uring_poll_multishot(ring, epollFD, UInt32(EPOLLIN.rawValue), Self.epollPollData)
                }
                epollMayHaveMore = true
                continue
            }
            let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
            let generation = UInt32(truncatingIfNeeded: data >> 32) & Self.generationMask
            let slot = slots[fd].pointee
            // A completion for a descriptor detached since (or whose number is reused): not this handler's.
            guard slot.generation == generation, let handler = slot.handler else {
                // A buffer it carries goes back all the same.
                if completion.flags & ECHOD_CQE_F_BUFFER != 0 {
                    recycleBuffer(UInt16(truncatingIfNeeded: completion.flags >> ECHOD_CQE_BUFFER_SHIFT))
                }
                continue
            }
            // Only `attach` (which takes a CompletionHandler) gives a descriptor requests with completions.
            handler._withUnsafeGuaranteedRef {
                unsafeDowncast($0, to: CompletionHandler.self).handleCompletion(
                    fd: fd, operation: UInt8(truncatingIfNeeded: data >> 56), result: completion.res, flags: completion.flags)
            }
        }
        stats.events.add(UInt64(count))
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
