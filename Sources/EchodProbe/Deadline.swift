import EchodSystem
import EchodText

/// The one deadline of a probe: resolving, connecting and every round trip together end by it.
struct Deadline {
    /// The `--timeout` it was made from, for messages.
    let timeout: Duration
    /// On the clock of ``Syscall/monotonicNow()``.
    let end: Duration

    init(timeout: Duration) {
        self.timeout = timeout
        self.end = Syscall.monotonicNow() + timeout
    }

    /// What is left, in whole milliseconds rounded up (a poll timeout); nil once the deadline has passed.
    var remainingMilliseconds: Int32? {
        let remaining = end - Syscall.monotonicNow()
        guard remaining > .zero else { return nil }
        let (seconds, attoseconds) = remaining.components
        let attosecondsPerMillisecond: Int64 = 1_000_000_000_000_000
        return Int32(clamping: seconds * 1000 + (attoseconds + attosecondsPerMillisecond - 1) / attosecondsPerMillisecond)
    }

    /// `300 ms`, `2 s`: the timeout as the failure messages say it.
    var timeoutText: String {
        let (seconds, attoseconds) = timeout.components
        if attoseconds == 0 { return "\(seconds) s" }
        return "\(NumberText.fixed(timeout / .milliseconds(1), decimals: 0)) ms"
    }
}
