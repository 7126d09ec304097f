import EchodSystem
import Testing

/// The one rate limit of echod's repeated warnings (accept failures and refused connections on a loop, admin
/// connection floods, log sink errors, log queue drop reports).
@Suite("Rate limiter")
struct RateLimiterTests {
    static let second: Int64 = 1_000_000_000

    @Test("admits one event per interval and counts the suppressed ones")
    func admitsOnePerInterval() {
        var limiter = RateLimiter(interval: .seconds(10))
        let t0: Int64 = 5 * Self.second
        #expect(limiter.admit(now: t0) == 0, "the first event is always admitted")
        #expect(limiter.admit(now: t0 + 1 * Self.second) == nil)
        #expect(limiter.admit(now: t0 + 9 * Self.second) == nil)
        #expect(limiter.admit(now: t0 + 10 * Self.second) == 2, "an interval later, with the two held back")
        #expect(limiter.admit(now: t0 + 15 * Self.second) == nil)
        #expect(limiter.admit(now: t0 + 100 * Self.second) == 1)
        #expect(limiter.admit(now: t0 + 200 * Self.second) == 0)
    }

    @Test("works at nanosecond resolution")
    func nanoseconds() {
        var limiter = RateLimiter(interval: .nanoseconds(1000))
        #expect(limiter.admit(now: 0) == 0, "time 0 is a time like any other")
        #expect(limiter.admit(now: 10) == nil)
        #expect(limiter.admit(now: 20) == nil)
        #expect(limiter.admit(now: 999) == nil)
        #expect(limiter.admit(now: 1001) == 3)
    }

    @Test("tells an owner that sleeps when the next event would be admitted")
    func nextAdmission() {
        var limiter = RateLimiter(interval: .milliseconds(5))
        #expect(limiter.nextAdmission == .min, "nothing admitted yet: at once")
        _ = limiter.admit(now: 1_000)
        #expect(limiter.nextAdmission == 5_001_000)
        _ = limiter.admit(now: 2_000)
        #expect(limiter.nextAdmission == 5_001_000, "a suppressed event does not move it")
    }
}
