import EchodEventLoop
import EchodTestSupport
import Glibc
import Testing

@testable import EchodDaemon

/// What systemd is told at each phase change, seen on a real notification socket.
@Suite struct LifecycleTests {
    @Test func theWholeLifeOfAServingDaemon() {
        let receiver = NotifyReceiver()
        let lifecycle = Lifecycle(notifier: receiver.notifier)
        let pid = getpid()

        // Nothing to reload, and no status, before READY=1.
        #expect(!lifecycle.reloading())
        lifecycle.updateStatus("serving 1 listener, 0 connections, 0 msg/s")
        #expect(receiver.pending() == [])

        #expect(lifecycle.serving(status: "serving 1 listener, 0 connections, 0 msg/s"))
        #expect(lifecycle.phase == .serving)
        #expect(receiver.next() == "READY=1\nSTATUS=serving 1 listener, 0 connections, 0 msg/s\nMAINPID=\(pid)")
        #expect(!lifecycle.serving(status: "again"), "READY=1 is sent once per start")

        // STATUS= only when the text changed.
        lifecycle.updateStatus("serving 1 listener, 0 connections, 0 msg/s")
        lifecycle.updateStatus("serving 1 listener, 4 connections, 20 msg/s")
        #expect(receiver.pending() == ["STATUS=serving 1 listener, 4 connections, 20 msg/s"])

        #expect(lifecycle.reloading())
        #expect(lifecycle.phase == .reloading)
        #expect(receiver.next()?.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") == true)
        #expect(!lifecycle.reloading(), "one reload at a time")
        lifecycle.updateStatus("serving 1 listener, 5 connections, 20 msg/s")
        #expect(receiver.pending() == [], "no STATUS= while reloading: READY=1 ends the reload")
        #expect(lifecycle.reloaded(status: "serving 1 listener, 5 connections, 0 msg/s; last reload failed: bad"))
        #expect(receiver.next() == "READY=1\nSTATUS=serving 1 listener, 5 connections, 0 msg/s; last reload failed: bad\nMAINPID=\(pid)")
        lifecycle.updateStatus("serving 1 listener, 5 connections, 0 msg/s; last reload failed: bad")
        #expect(receiver.pending() == [], "the status READY=1 carried is not sent again")

        #expect(lifecycle.draining(connections: 5, timeout: .seconds(10)))
        #expect(lifecycle.phase == .draining)
        #expect(receiver.next() == "STOPPING=1\nSTATUS=draining 5 connections")
        #expect(receiver.next() == "EXTEND_TIMEOUT_USEC=15000000")
        #expect(!lifecycle.draining(connections: 5, timeout: .seconds(10)), "a second signal does not start another drain")
        #expect(!lifecycle.reloading())
        lifecycle.updateStatus("serving 1 listener, 0 connections, 0 msg/s")
        lifecycle.stopping()
        #expect(lifecycle.phase == .stopping)
        #expect(receiver.pending() == [])
    }

    @Test func aStartThatIsInterruptedSaysNothing() {
        let receiver = NotifyReceiver()
        let lifecycle = Lifecycle(notifier: receiver.notifier)
        #expect(!lifecycle.draining(connections: 0, timeout: .seconds(1)))
        lifecycle.stopping()
        #expect(!lifecycle.serving(status: "late"), "loops that come up after the stop began must not report READY")
        #expect(receiver.pending() == [])
    }

    @Test func aDrainOvertakesAReload() {
        let receiver = NotifyReceiver()
        let lifecycle = Lifecycle(notifier: receiver.notifier)
        lifecycle.serving(status: "s")
        #expect(lifecycle.reloading())
        #expect(lifecycle.draining(connections: 0, timeout: .seconds(2)))
        #expect(!lifecycle.reloaded(status: "s"), "the reload that finishes during the drain must not say READY=1")
        #expect(lifecycle.phase == .draining)
        let sent = receiver.pending()
        #expect(sent.count == 4 && sent[2] == "STOPPING=1\nSTATUS=draining 0 connections", "\(sent)")
    }

    @Test func periodicStatusOnTheControlLoopWhileServing() throws {
        let receiver = NotifyReceiver()
        let running = try RunningLoops(count: 1, firstIndex: -1)
        defer { running.stop() }
        let control = running.loops[0]
        let lifecycle = UncheckedBox(Lifecycle(notifier: receiver.notifier))
        let text = Locked("serving 1 listener, 0 connections, 0 msg/s")
        running.sync(on: control) {
            lifecycle.value.serving(status: text.value)
            try! lifecycle.value.startStatusUpdates(on: control, every: .milliseconds(20)) { text.value }
        }
        #expect(receiver.next()?.hasPrefix("READY=1") == true)
        text.value = "serving 1 listener, 1 connections, 50 msg/s"
        #expect(receiver.next() == "STATUS=serving 1 listener, 1 connections, 50 msg/s")
        usleep(100_000)
        #expect(receiver.pending() == [], "an unchanged text is not sent again")
        running.sync(on: control) { lifecycle.value.stopping() }
        text.value = "serving 1 listener, 2 connections, 50 msg/s"
        usleep(100_000)
        #expect(receiver.pending() == [], "no STATUS= once stopping")
    }
}
