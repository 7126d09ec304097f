import Synchronization

/// Per-loop counters, written only by the loop's own thread and read by anyone (metrics, health checks).
///
/// Each field has a single writer, so an update is a relaxed load and store — a plain `mov` on x86, no locked
/// read-modify-write, no contention — and a reader from another thread sees a recent, untorn value.
package final class LoopStats: Sendable {
    /// Upper bounds, in nanoseconds, of the loop-turn duration histogram buckets (the last bucket is +Inf).
    package static let turnBucketBounds: [Int64] = [10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000]

    /// Completed loop turns (one `epoll_wait` and the handling of what it returned).
    package let turns = SingleWriterCounter()
    /// Readiness events dispatched to handlers.
    package let events = SingleWriterCounter()
    /// Nanoseconds spent handling events (time between `epoll_wait` returning and being called again).
    package let busyNanoseconds = SingleWriterCounter()
    /// Turn-duration histogram: counts per bucket of `turnBucketBounds`, plus one for +Inf.
    package let turnBuckets: [SingleWriterCounter] = (0...turnBucketBounds.count).map { _ in SingleWriterCounter() }
    /// Monotonic time, in nanoseconds, at which the loop last started a turn; how health checks see a stalled loop.
    package let heartbeat = Atomic<Int64>(0)

    package init() {}

    @inline(__always)
    func recordTurn(busy: Int64) {
        turns.add(1)
        busyNanoseconds.add(UInt64(max(busy, 0)))
        var i = 0
        let bounds = LoopStats.turnBucketBounds
        while i < bounds.count && busy > bounds[i] { i += 1 }
        turnBuckets[i].add(1)
    }
}

/// A counter with exactly one writing thread. See `LoopStats`.
package final class SingleWriterCounter: Sendable {
    @usableFromInline let value = Atomic<UInt64>(0)
    package init() {}

    /// Adds `n`. Must only be called from the owning thread.
    ///
    /// `@inlinable`: the echo path calls this from another module three times per read; as a call it also
    /// retained and released the counter each time (two atomic instructions), seen in `perf` on pp1k-c50.
    @inlinable @inline(__always)
    package func add(_ n: UInt64) {
        value.store(value.load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }

    /// The current value, from any thread.
    @inlinable @inline(__always)
    package var load: UInt64 { value.load(ordering: .relaxed) }
}
