import EchodEventLoop
import EchodSystem
import EchodText

/// The STATUS= line `systemctl status` shows: `serving 2 listeners, 124 connections, 1.2k msg/s`, followed by
/// `; last reload failed: REASON` while the last reload was rejected. On the io_uring backend the line says so
/// (`serving 2 listeners on io_uring, …`); epoll, the default, is not named, so that the line reads as it always did.
///
/// The rate is the reads of every loop since the previous line, per second of monotonic time: each line starts a new
/// sampling window. The first line (the one sent with READY=1) has no window and says 0.
struct StatusReport {
    /// What the line is made of, read by the caller at the time of the line.
    struct Sample {
        /// Echo listeners being served (the admin socket is not one).
        var listeners: Int
        var connections: Int
        /// Reads of every loop since start (`EchoStats.reads`); only its growth counts.
        var reads: UInt64
        /// Why the last reload was rejected; nil once a reload succeeded (or none failed).
        var reloadFailure: String?
        /// What the worker loops wait on (`io.backend`).
        var backend: IOBackend = .epoll
    }

    /// How often the line is refreshed (and sent if it changed).
    static let interval: Duration = .seconds(5)

    /// The reads total and monotonic time (nanoseconds) of the previous line.
    private var previous: (reads: UInt64, at: Int64)?

    /// The line for `sample` at `now` (`Syscall.monotonicNanoseconds()`); starts the next rate window.
    mutating func line(_ sample: Sample, now: Int64) -> String {
        var rate = 0.0
        if let previous, now > previous.at {
            rate = Double(sample.reads &- previous.reads) / (Double(now - previous.at) / 1e9)
        }
        previous = (sample.reads, now)
        let n = sample.listeners
        let on = sample.backend == .epoll ? "" : " on \(sample.backend)"
        var text = "serving \(n) listener\(n == 1 ? "" : "s")\(on), \(sample.connections) connections, \(Self.humanRate(rate)) msg/s"
        if let failure = sample.reloadFailure { text += "; last reload failed: \(failure)" }
        return text
    }

    /// `950`, `1.2k`, `3.4M`: one decimal past a thousand, whole numbers below.
    static func humanRate(_ r: Double) -> String {
        if r >= 1_000_000 { return NumberText.fixed(r / 1_000_000, decimals: 1) + "M" }
        if r >= 1_000 { return NumberText.fixed(r / 1_000, decimals: 1) + "k" }
        return String(Int(r))
    }
}
