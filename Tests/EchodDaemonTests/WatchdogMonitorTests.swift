import EchodEventLoop
import EchodSystem
import EchodSystemd
import EchodTestSupport
import Glibc
import Logging
import Testing

@testable import EchodDaemon

/// The stall check with heartbeats and time set by the test, then the pings against a real notification socket and
/// real loops.
@Suite struct WatchdogMonitorTests {
    private let ms: Int64 = 1_000_000

    @Test(
        arguments: [
            (nil, Duration.seconds(2)), (.milliseconds(600), .milliseconds(500)), (.seconds(3), .seconds(1)),
            (.seconds(30), .seconds(2)),
        ] as [(Duration?, Duration)])
    func stallThresholdFollowsTheWatchdogInterval(interval: Duration?, threshold: Duration) {
        #expect(WatchdogMonitor.stallThreshold(watchdog: interval) == threshold)
    }

    private func monitor(_ loops: [EventLoop], interval: Duration? = nil, notifier: SystemdNotifier = SystemdNotifier(environment: [:])) -> WatchdogMonitor {
        WatchdogMonitor(interval: interval, loops: loops, notifier: notifier, logger: quietLogger)
    }

    @Test func aLoopIsStalledWhenItsHeartbeatIsOlderThanTheThreshold() throws {
        let loops = try (0..<3).map { i throws(IOError) in try EventLoop(index: i) }
        let watchdog = monitor(loops)  // threshold 2 s
        let now = 100_000 * ms
        loops[0].stats.heartbeat.store(now - 10 * ms, ordering: .relaxed)
        loops[1].stats.heartbeat.store(now - 2_001 * ms, ordering: .relaxed)
        // loops[2] has never turned (heartbeat 0).
        #expect(watchdog.stalledLoops(now: now) == [1, 2])
        loops[1].stats.heartbeat.store(now - 2_000 * ms, ordering: .relaxed)
        loops[2].stats.heartbeat.store(now, ordering: .relaxed)
        #expect(watchdog.stalledLoops(now: now) == [])
    }

    @Test func livenessAndPingsAgreeOnEveryHeartbeatAge() throws {
        let loop = try EventLoop(index: 4)
        let watchdog = monitor([loop], interval: .seconds(3))  // threshold 1 s
        let now = 50_000 * ms
        for age in [0, 999 * ms, 1_000 * ms, 1_000 * ms + 1, 1_500 * ms, 60_000 * ms] {
            loop.stats.heartbeat.store(now - age, ordering: .relaxed)
            let stalled = !watchdog.stalledLoops(now: now).isEmpty
            #expect(stalled == (age > 1_000 * ms))
            #expect(watchdog.liveChecks(now: now).map(\.ok) == [!stalled], "age \(age / ms) ms")
        }
    }

    @Test func pingsOnlyWhileNoLoopIsStalled() throws {
        let receiver = NotifyReceiver()
        let loop = try EventLoop(index: 0)
        let watchdog = monitor([loop], interval: .seconds(3), notifier: receiver.notifier)
        let now = 9_000 * ms
        loop.stats.heartbeat.store(now - 100 * ms, ordering: .relaxed)
        #expect(watchdog.check(now: now))
        #expect(receiver.next() == "WATCHDOG=1")
        #expect(!watchdog.check(now: now + 1_000 * ms))
        #expect(receiver.pending() == [])
    }

    @Test func aWedgedLoopStopsThePingsAndTheyResumeWhenItTurnsAgain() throws {
        let receiver = NotifyReceiver()
        let running = try RunningLoops(count: 2, firstIndex: -1)
        defer { running.stop() }
        let (control, worker) = (running.loops[0], running.loops[1])
        // 600 ms: a ping every 300 ms, a loop is stalled after 500 ms without a turn.
        let watchdog = monitor([worker], interval: .milliseconds(600), notifier: receiver.notifier)
        let box = UncheckedBox(watchdog)
        running.sync(on: control) { try! box.value.start(on: control) }
        #expect(receiver.next() == "WATCHDOG=1")
        #expect(receiver.next() == "WATCHDOG=1")

        let release = Locked(false)
        worker.execute { while !release.value { usleep(1000) } }
        usleep(900_000)  // past the threshold, plus a ping period
        _ = receiver.pending()
        usleep(700_000)
        #expect(receiver.pending() == [], "pings went on while the loop was wedged")

        release.value = true
        #expect(receiver.next(within: 2) == "WATCHDOG=1")
        running.sync(on: control) { box.value.stop() }
    }
}
