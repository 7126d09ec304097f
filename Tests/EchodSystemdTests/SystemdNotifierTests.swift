import EchodSystemd
import EchodTestSupport
import Glibc
import Testing

/// The notifier against a real AF_UNIX datagram receiver, as systemd's NOTIFY_SOCKET. The environment is passed
/// explicitly (the notifier never reads the process environment), so these tests run in parallel.
@Suite struct SystemdNotifierTests {
    @Test func disabledWithoutNotifySocket() {
        let notifier = SystemdNotifier(environment: ["PATH": "/usr/bin"])
        #expect(!notifier.isEnabled)
        #expect(!notifier.send("READY=1"))
        #expect(!notifier.ready(status: "serving"))
    }

    @Test(arguments: ["", "relative/path", "vsock:2:1234", "@", "/" + String(repeating: "x", count: 200)])
    func disabledForUnusableAddresses(value: String) {
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": value]).isEnabled)
    }

    @Test(arguments: [false, true])
    func readyCarriesStatusAndMainPID(abstract: Bool) throws {
        let receiver = TestSocket.notifyReceiver(abstract: abstract)
        defer { receiver.cleanup() }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])
        #expect(notifier.isEnabled)

        #expect(notifier.ready(status: "serving 2 listeners, 0 connections"))

        let message = try #require(receiver.socket.receive())
        #expect(message.text == "READY=1\nSTATUS=serving 2 listeners, 0 connections\nMAINPID=\(getpid())")
        // What NotifyAccess=main checks: the kernel-attached sender pid is this process.
        #expect(message.senderPID == getpid())
    }

    @Test func reloadingCarriesMonotonicTimestamp() throws {
        let receiver = TestSocket.notifyReceiver(abstract: true)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])
        let before = monotonicMicroseconds()

        #expect(notifier.reloading())

        let after = monotonicMicroseconds()
        let lines = try #require(receiver.socket.receive()).text.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first == "RELOADING=1")
        let stamp = try #require(lines.last.flatMap { $0.split(separator: "=").last }.flatMap { Int($0) })
        #expect(lines.last?.hasPrefix("MONOTONIC_USEC=") == true)
        #expect(before...after ~= stamp)
    }

    @Test func eachMessageAsSystemdExpectsIt() throws {
        let receiver = TestSocket.notifyReceiver(abstract: false)
        defer { receiver.cleanup() }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])

        #expect(notifier.stopping(status: "draining 3 connections"))
        #expect(notifier.status("serving 1 listeners, 7 connections"))
        #expect(notifier.watchdogPing())
        #expect(notifier.extendTimeout(by: .seconds(5)))
        #expect(notifier.extendTimeout(by: .milliseconds(1500)))
        #expect(notifier.send("FDSTORE=0"))

        let received = (0..<6).compactMap { _ in receiver.socket.receive()?.text }
        #expect(
            received == [
                "STOPPING=1\nSTATUS=draining 3 connections",
                "STATUS=serving 1 listeners, 7 connections",
                "WATCHDOG=1",
                "EXTEND_TIMEOUT_USEC=5000000",
                "EXTEND_TIMEOUT_USEC=1500000",
                "FDSTORE=0",
            ])
    }

    @Test func statusCannotInjectAssignments() throws {
        let receiver = TestSocket.notifyReceiver(abstract: true)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])

        #expect(notifier.status("bad\nREADY=1\r\nMAINPID=1"))

        #expect(try #require(receiver.socket.receive()).text == "STATUS=bad READY=1 MAINPID=1")
    }

    @Test func sendFailsWithoutReceiver() {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "@\(uniqueName("nobody"))"])
        #expect(notifier.isEnabled)
        #expect(!notifier.watchdogPing())
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify"]).send("READY=1"))
    }

    @Test func emptyMessageIsNotSent() {
        let receiver = TestSocket.notifyReceiver(abstract: true)
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket]).send(""))
    }

    /// A receiver that never reads fills up; a send must then fail within its bound, not hang the caller.
    @Test func sendToStuckReceiverGivesUpQuickly() {
        let receiver = TestSocket.notifyReceiver(abstract: true)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])
        let clock = ContinuousClock()
        var slowest = Duration.zero
        var failed = false
        for _ in 0..<5000 where !failed {
            let start = clock.now
            failed = !notifier.watchdogPing()
            slowest = max(slowest, clock.now - start)
        }
        #expect(failed, "the receive queue never filled up")
        #expect(slowest < .seconds(1))
        withExtendedLifetime(receiver) {}
    }
}

/// CLOCK_MONOTONIC in microseconds, the unit of MONOTONIC_USEC.
private func monotonicMicroseconds() -> Int {
    let now = monotonicNow().components
    return Int(now.seconds) * 1_000_000 + Int(now.attoseconds / 1_000_000_000_000)
}
