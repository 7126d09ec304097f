import Logging
import Synchronization

/// The state shared by the backend, its handlers and the writer thread: the queue and the atomics.
/// Handlers hold this (not the backend), so a `Logger` stays valid whatever happens to the backend object.
final class LogCore: Sendable {
    let queue: LogQueue
    /// The minimum level as ``Logging/Logger/Level/code``. Every handler without a local override reads it on every
    /// `Logger` call (a relaxed load is enough: a level change needs to be seen soon, not ordered with anything).
    let level: Atomic<UInt8>
    /// Records written to the sink (or accepted by journald).
    let written = Atomic<UInt64>(0)
    /// Records dropped because the queue was full (or the backend shut down).
    let dropped = Atomic<UInt64>(0)
    /// Records the sink refused (write error, journald error) or that were discarded when a shutdown gave up.
    let failed = Atomic<UInt64>(0)
    /// Set when `shutdown` timed out: the writer thread discards what is left instead of waiting on the sink.
    let abandon = Atomic<Bool>(false)
    /// Set by the writer thread just before it ends.
    let finished = Atomic<Bool>(false)
    /// Every ``ReadLabel`` made for this core, kept alive here so that read records can point at theirs without
    /// reference counting. Only grows, by distinct labels (``AsyncLogBackend/makeReadLogger(label:file:function:line:)``
    /// reuses an equal one).
    let readLabels = Mutex<[ReadLabel]>([])

    init(capacity: Int, level: Logger.Level) {
        queue = LogQueue(capacity: capacity)
        self.level = Atomic(level.code)
    }

    var currentLevel: Logger.Level {
        Logger.Level(code: level.load(ordering: .relaxed))
    }

    /// The caller's side of a log call: enqueue or count the drop. Never blocks beyond the queue's short lock.
    func submit(_ record: LogRecord) {
        if !queue.enqueue(record) {
            dropped.add(1, ordering: .relaxed)
        }
    }
}
