/// Rate limiting for a repeated warning (accept errors, a peer resetting in a loop...), kept by each caller.
///
/// Not thread-safe on purpose: each event loop keeps its own, so admitting costs a comparison and no lock, and it
/// stores no reference, so it never allocates.
///
/// ```swift
/// let admission = acceptErrorLimiter.admit(now: .now)
/// if admission.shouldLog {
///     logger.warning("accept failed", metadata: ["errno": "\(e)", "suppressed": "\(admission.suppressed)"])
/// }
/// ```
public struct LogRateLimiter: Sendable {
    /// The verdict for one event.
    public struct Admission: Sendable, Equatable {
        /// Log this event now.
        public var shouldLog: Bool
        /// When `shouldLog`: events suppressed since the previously admitted one (add as `suppressed=N`); otherwise 0.
        public var suppressed: Int

        /// Creates a verdict.
        public init(shouldLog: Bool, suppressed: Int) {
            self.shouldLog = shouldLog
            self.suppressed = suppressed
        }
    }

    /// Minimum time between two admitted events.
    public let interval: Duration
    private var lastAdmitted: ContinuousClock.Instant?
    private var suppressedSinceLast = 0

    /// Admits at most one event per `interval`; the first event is always admitted.
    public init(interval: Duration) {
        self.interval = interval
    }

    /// Decides for an event happening at `now` (pass the time the caller already has, e.g. the loop's tick).
    public mutating func admit(now: ContinuousClock.Instant) -> Admission {
        if let last = lastAdmitted, now < last.advanced(by: interval) {
            suppressedSinceLast &+= 1
            return Admission(shouldLog: false, suppressed: 0)
        }
        let suppressed = suppressedSinceLast
        lastAdmitted = now
        suppressedSinceLast = 0
        return Admission(shouldLog: true, suppressed: suppressed)
    }
}
