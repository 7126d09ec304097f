import EchodTestSupport
import Testing

@testable import EchodDaemon

/// The STATUS= line, with the clock and the counters given by the test.
@Suite struct StatusReportTests {
    private let second: Int64 = 1_000_000_000

    private func sample(_ listeners: Int = 2, connections: Int = 0, reads: UInt64, failure: String? = nil) -> StatusReport.Sample {
        StatusReport.Sample(listeners: listeners, connections: connections, reads: reads, reloadFailure: failure)
    }

    @Test func firstLineHasNoRateAndSaysWhatIsServed() {
        var report = StatusReport()
        #expect(report.line(sample(1, connections: 3, reads: 12345), now: 7 * second) == "serving 1 listener, 3 connections, 0 msg/s")
        var other = StatusReport()
        #expect(other.line(sample(2, reads: 0), now: second) == "serving 2 listeners, 0 connections, 0 msg/s")
    }

    /// epoll, the default, is not named (the line reads as it always did); io_uring is.
    @Test func theIOUringBackendIsNamed() {
        var report = StatusReport()
        var onRing = sample(2, connections: 3, reads: 0)
        onRing.backend = .ioUring
        #expect(report.line(onRing, now: second) == "serving 2 listeners on io_uring, 3 connections, 0 msg/s")
    }

    @Test func rateIsReadsSinceThePreviousLinePerSecond() {
        var report = StatusReport()
        _ = report.line(sample(reads: 1000), now: 10 * second)
        #expect(report.line(sample(reads: 7000), now: 15 * second) == "serving 2 listeners, 0 connections, 1.2k msg/s")
        // Each line starts the next window: nothing read since, nothing reported.
        #expect(report.line(sample(reads: 7000), now: 20 * second) == "serving 2 listeners, 0 connections, 0 msg/s")
        #expect(report.line(sample(reads: 7000 + 2_500_000), now: 21 * second) == "serving 2 listeners, 0 connections, 2.5M msg/s")
    }

    @Test func theWindowAfterReadyCountsEvenWhenNothingWasReadBefore() {
        // READY=1 goes out before any client came: the first refresh must show the reads since then, not 0.
        var report = StatusReport()
        _ = report.line(sample(reads: 0), now: 0)
        #expect(report.line(sample(reads: 500), now: 5 * second) == "serving 2 listeners, 0 connections, 100 msg/s")
    }

    @Test func noTimeElapsedMeansNoRate() {
        var report = StatusReport()
        _ = report.line(sample(reads: 0), now: 5 * second)
        #expect(report.line(sample(reads: 900), now: 5 * second) == "serving 2 listeners, 0 connections, 0 msg/s")
    }

    @Test func aRejectedReloadIsShownUntilOneSucceeds() {
        var report = StatusReport()
        #expect(
            report.line(sample(reads: 0, failure: "limits.max_conections: unknown key"), now: 0)
                == "serving 2 listeners, 0 connections, 0 msg/s; last reload failed: limits.max_conections: unknown key")
        #expect(!report.line(sample(reads: 0), now: second).contains("reload"))
    }

    @Test(arguments: [
        (0.0, "0"), (999.9, "999"), (1000, "1.0k"), (1249, "1.2k"), (999_949, "999.9k"), (1_250_000, "1.3M"),
    ])
    func humanRate(rate: Double, text: String) {
        #expect(StatusReport.humanRate(rate) == text)
    }
}
