import Logging
import Synchronization

/// What travels from callers to the writer thread, in order.
enum QueueItem: Sendable {
    /// A log record; counts against the capacity.
    case record(LogRecord)
    /// A per-read record from a ``ReadLogger``: a POD, formatted by its own fast formatter. Counts like a record.
    case read(ReadRecord)
    /// A request from the backend's API. Never dropped and not counted against the capacity, so that `reopen()`,
    /// `apply(_:)` and `flush` keep their place in the order of records (a reopen happens exactly between the
    /// records logged before it and those logged after it).
    case control(WriterControl)
}

/// Requests the backend's API sends to the writer thread.
enum WriterControl: Sendable {
    /// Close and reopen the log file (logrotate, SIGUSR1).
    case reopen
    /// Switch format / sink; a newly opened file descriptor is handed over with it.
    case apply(WriterSettings)
    /// Write out everything before this point, then post the semaphore.
    case flush(WakeSemaphore)
    /// Like flush, then report drops, close the sink and end the thread.
    case stop(WakeSemaphore)
}

/// The bounded multi-producer, single-consumer queue between log calls and the writer thread.
///
/// Design: a `Mutex` around a pair of arrays used as a double buffer. Producers append to `pending`; the writer swaps
/// `pending` with its own emptied array in O(1), so the lock is held for one append or one swap, never for formatting
/// or I/O. A lock per log call is cheap next to the rest of a log call (the record already copies the message and
/// metadata), uncontended most of the time (one writer, which holds the lock only to swap), and much simpler to get
/// right than a lock-free ring for multi-producer records that contain references. Both arrays keep their capacity
/// across swaps and are reserved up front, so an append does not allocate.
///
/// Waking: the writer marks itself `writerSleeping` (under the lock) when it found nothing to do; only the producer
/// that sees that flag posts the semaphore and clears it. So a busy writer costs producers nothing, and an idle one
/// costs one `sem_post` for the first record of a burst. The woken writer then lingers briefly (see
/// `LogWriter.linger()`) so that the rest of the burst is written with it; the producer that fills the queue to half
/// its capacity posts again to cut that short.
final class LogQueue: Sendable {
    private struct State {
        var pending: [QueueItem] = []
        var recordCount = 0
        var capacity: Int
        var writerSleeping = false
        /// A control request is pending: the writer must not linger.
        var controlPending = false
        var closed = false
    }

    private let state: Mutex<State>
    /// Posted by producers to wake the idle writer.
    let wakeup = WakeSemaphore()

    init(capacity: Int) {
        var initial = State(capacity: capacity)
        initial.pending.reserveCapacity(Self.reservation(for: capacity))
        state = Mutex(initial)
    }

    /// How many items to reserve up front in each of the two buffers: the whole capacity (so that an append under
    /// the lock never reallocates and copies), up to a cap. An item is 128 bytes, so the default 16384 reserves 2 MiB
    /// per buffer; large allocations are mmap'd by malloc, so untouched pages cost address space, not memory.
    static func reservation(for capacity: Int) -> Int {
        min(max(capacity, 1), 65536)
    }

    /// Enqueues a record; false (nothing enqueued) when the queue is full or closed.
    func enqueue(_ record: LogRecord) -> Bool {
        enqueueCounted(.record(record))
    }

    /// Enqueues a read record; false (nothing enqueued) when the queue is full or closed. Does not allocate (the
    /// buffers are reserved up to the capacity, see ``reservation(for:)``).
    func enqueue(read record: ReadRecord) -> Bool {
        enqueueCounted(.read(record))
    }

    @inline(__always)
    private func enqueueCounted(_ item: QueueItem) -> Bool {
        let (accepted, wake) = state.withLock { state -> (Bool, Bool) in
            guard !state.closed, state.recordCount < state.capacity else { return (false, false) }
            state.pending.append(item)
            state.recordCount += 1
            // Half full: also wake a writer that is lingering (gathering a batch), so that a small capacity fills
            // up to a write rather than to drops. When the writer is busy instead, this one extra post only makes
            // its next idle wait return once for nothing.
            let wake = state.writerSleeping || state.recordCount == state.capacity / 2
            state.writerSleeping = false
            return (true, wake)
        }
        if wake { wakeup.post() }
        return accepted
    }

    /// Enqueues a control request regardless of capacity. With `close`, no further item is accepted.
    /// False when the queue was already closed.
    func enqueue(_ control: WriterControl, close: Bool = false) -> Bool {
        let (accepted, wake) = state.withLock { state -> (Bool, Bool) in
            guard !state.closed else { return (false, false) }
            state.pending.append(.control(control))
            if close { state.closed = true }
            state.controlPending = true
            state.writerSleeping = false
            return (true, true)
        }
        // Always posted (control requests are rare): this also ends a writer's lingering (and `controlPending`
        // keeps one from starting), so that `flush`, `reopen`, `apply` and `shutdown` are not delayed by it.
        if wake { wakeup.post() }
        return accepted
    }

    /// Writer side: swaps everything pending into `batch` (which must be empty). When there is nothing, marks the
    /// writer as sleeping so that the next enqueue posts the semaphore, and returns false.
    func takeAll(into batch: inout [QueueItem]) -> Bool {
        state.withLock { state in
            if state.pending.isEmpty {
                state.writerSleeping = true
                return false
            }
            swap(&state.pending, &batch)
            state.recordCount = 0
            state.controlPending = false
            state.writerSleeping = false
            return true
        }
    }

    /// Whether a control request waits in the queue (the writer then takes it at once instead of lingering).
    var isControlPending: Bool {
        state.withLock { $0.controlPending }
    }

    /// Changes the capacity; records already queued stay.
    func setCapacity(_ capacity: Int) {
        state.withLock { $0.capacity = capacity }
    }
}
