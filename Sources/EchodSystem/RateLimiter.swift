/// Lets a repeated event through at most once per interval and counts what it held back, so that a flood (a client
/// hammering a connection limit, descriptor exhaustion, a failing log sink) costs one log line per interval with a
/// suppressed count. The one rate limit for warnings in echod.
///
/// Not thread-safe on purpose: each owner (an event loop, the log writer) keeps its own, so admitting costs a
/// comparison and no lock, and it holds no reference, so it never allocates. Times are `Syscall.monotonicNanoseconds()`,
/// which the caller usually already has (the loop's tick).
///
/// ```swift
/// if let suppressed = acceptWarnings.admit(now: now) {
///     logger.warning("accept failed", metadata: ["errno": "\(e)", "suppressed": "\(suppressed)"])
/// }
/// ```
package struct RateLimiter: Sendable {
    /// Minimum time between two admitted events, in nanoseconds.
    package let intervalNanoseconds: Int64
    private var lastAdmitted: Int64 = .min
    private var suppressed = 0

    /// Admits at most one event per `interval`; the first event is always admitted.
    package init(interval: Duration) {
        intervalNanoseconds = interval.nanoseconds
    }

    /// For an event at `now`: the number of events suppressed since the last admitted one when this one should be
    /// logged, nil when it is suppressed.
    package mutating func admit(now: Int64) -> Int? {
        if lastAdmitted != .min && now - lastAdmitted < intervalNanoseconds {
            suppressed &+= 1
            return nil
        }
        lastAdmitted = now
        defer { suppressed = 0 }
        return suppressed
    }

    /// The earliest time (``Syscall/monotonicNanoseconds()``) at which ``admit(now:)`` lets an event through again; in
    /// the past when it would now. For an owner that sleeps and must wake in time to report what is pending.
    package var nextAdmission: Int64 {
        lastAdmitted == .min ? .min : lastAdmitted &+ intervalNanoseconds
    }
}
