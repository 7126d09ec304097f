/// Lets a repeated warning through at most once per interval and counts what it held back, so a flood (a client
/// hammering a connection limit, descriptor exhaustion) costs one log line per interval with a suppressed count.
/// Owned by one loop thread; no lock, no allocation.
public struct RateLimitedWarning {
    private let interval: Int64
    private var lastEmitted: Int64 = .min
    private var suppressed: Int = 0

    public init(intervalNanoseconds: Int64 = 10_000_000_000) { interval = intervalNanoseconds }

    /// Returns the number suppressed since the last emitted line when this one should be logged, nil otherwise.
    public mutating func admit(now: Int64) -> Int? {
        if lastEmitted == .min || now - lastEmitted >= interval {
            lastEmitted = now
            defer { suppressed = 0 }
            return suppressed
        }
        suppressed += 1
        return nil
    }
}
