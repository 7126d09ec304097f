import EchodSystem

/// A timer on an event loop, backed by its own timerfd: expiry is an ordinary readiness event, so timers need no
/// side channel and no per-turn bookkeeping in the loop.
package final class LoopTimer: EventHandler {
    private let fd: Int32
    private unowned let loop: EventLoop
    private let action: () -> Void

    /// Creates a disarmed timer on `loop` that calls `action` on the loop thread at each expiry.
    package init(loop: EventLoop, action: @escaping () -> Void) throws(IOError) {
        self.fd = try Syscall.timerFD()
        self.loop = loop
        self.action = action
        super.init()
        do {
            try loop.register(fd: fd, interest: .read, handler: self)
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    /// Arms the timer: first expiry after `after`, then every `period` (nil: once).
    ///
    /// `timerfd_settime` on our own open timerfd fails only for a bad descriptor or an out-of-range time, both bugs
    /// here; swallowing one would leave a timer that never fires (an acceptor that never re-arms, a drain without
    /// its timeout), so it stops the process instead.
    package func schedule(after: Duration, every period: Duration? = nil) {
        loop.assertInLoop()
        do throws(IOError) {
            try Syscall.timerSet(fd, after: after, every: period)
        } catch {
            preconditionFailure("timer \(fd): \(error)")
        }
    }

    /// Disarms the timer (a failure is a bug, as for ``schedule(after:every:)``).
    package func cancel() {
        loop.assertInLoop()
        do throws(IOError) {
            try Syscall.timerDisarm(fd)
        } catch {
            preconditionFailure("timer \(fd): \(error)")
        }
    }

    /// Removes the timer from its loop and closes its descriptor.
    package func close() {
        loop.deregister(fd: fd, willClose: true)
        Syscall.close(fd)
    }

    override package func handleEvent(fd: Int32, events: UInt32) {
        if Syscall.drainCounter(fd) > 0 { action() }
    }
}
