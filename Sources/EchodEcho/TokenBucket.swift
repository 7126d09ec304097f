/// A token bucket: up to `burst` tokens, refilled at `rate` per second, one token (or one byte) spent per datagram
/// answered. The state is two words, so that the source table can hold one per source; the rate and burst live
/// with the owner (``Rate``), not in every bucket.
///
/// Tokens are a `Double`: a byte budget of 100 GiB/s spends fractions of a token per nanosecond, which integer
/// nanosecond arithmetic cannot express, and 53 bits of mantissa keep a 100 GiB burst exact to well below a byte.
package struct TokenBucket: Sendable, Equatable {
    /// A rate and the bucket size it fills to.
    package struct Rate: Sendable, Equatable {
        /// Tokens added per nanosecond.
        package let perNanosecond: Double
        /// The bucket size; a new bucket starts full.
        package let burst: Double

        /// `perSecond` tokens per second, at most `burst` saved up.
        package init(perSecond: Int, burst: Int) {
            precondition(perSecond > 0 && burst > 0)
            perNanosecond = Double(perSecond) / 1e9
            self.burst = Double(burst)
        }
    }

    package private(set) var tokens: Double
    /// Monotonic nanoseconds of the last refill.
    package private(set) var updated: Int64

    /// A full bucket at `now`.
    package init(full rate: Rate, now: Int64) {
        tokens = rate.burst
        updated = now
    }

    /// Refills for the time since the last call (a clock that went backwards adds nothing).
    @inline(__always)
    package mutating func refill(_ rate: Rate, now: Int64) {
        if now > updated {
            tokens = min(rate.burst, tokens + Double(now &- updated) * rate.perNanosecond)
            updated = now
        }
    }

    /// Whether `cost` tokens are there (after ``refill(_:now:)``).
    @inline(__always)
    package func has(_ cost: Double) -> Bool { tokens >= cost }

    /// Spends `cost` tokens; the caller checked ``has(_:)``.
    @inline(__always)
    package mutating func spend(_ cost: Double) { tokens -= cost }

    /// Refills, then spends `cost` if there is that much: whether it was spent.
    @inline(__always)
    package mutating func take(_ cost: Double, _ rate: Rate, now: Int64) -> Bool {
        refill(rate, now: now)
        guard tokens >= cost else { return false }
        tokens -= cost
        return true
    }
}
