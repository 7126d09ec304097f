import EchodSystem
import Testing

@Suite("Duration in nanoseconds")
struct DurationTests {
    @Test("whole nanoseconds, truncated toward zero")
    func exact() {
        #expect(Duration.seconds(3).nanoseconds == 3_000_000_000)
        #expect(Duration.milliseconds(250).nanoseconds == 250_000_000)
        #expect(Duration(secondsComponent: 0, attosecondsComponent: 7_999_999_999).nanoseconds == 7)
        #expect(Duration.milliseconds(-1500).nanoseconds == -1_500_000_000)
        #expect(Duration.zero.nanoseconds == 0)
    }

    @Test("saturates instead of trapping past about 292 years")
    func saturates() {
        #expect(Duration.seconds(Int64.max / 1_000_000_000).nanoseconds > 9_223_372_035_000_000_000)
        #expect(Duration.seconds(Int64.max).nanoseconds == .max)
        #expect(Duration.seconds(Int64.min).nanoseconds == .min)
        #expect((Duration.seconds(9_223_372_036) + .milliseconds(900)).nanoseconds == .max)
    }
}
