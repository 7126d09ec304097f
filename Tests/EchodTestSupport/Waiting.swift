import Glibc
import Synchronization

/// Why a test could not go on: a setup step failed, a peer misbehaved, a wait timed out.
package struct TestFailure: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// CLOCK_MONOTONIC, the clock echod's timers and systemd's MONOTONIC_USEC use; the tests' own stopwatch.
package func monotonicNow() -> Duration {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
}

/// Polls `condition` every 2 ms for up to `seconds`; true as soon as it holds. A last check after the deadline, so
/// that a condition that became true while the thread slept is not reported as a timeout.
package func waitUntil(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = monotonicNow() + .milliseconds(Int(seconds * 1000))
    while monotonicNow() < deadline {
        if condition() { return true }
        usleep(2000)
    }
    return condition()
}

/// A detached thread running `body` once. Detached, so that a test may give up on one that hangs (see
/// ``completes(within:_:)``) without leaking a joinable thread; ``isFinished`` says when `body` returned.
package final class TestThread: Sendable {
    private let finished = Atomic<Bool>(false)

    package init(_ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Job(body: body, thread: self)).toOpaque()
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attributes) }
        let result = pthread_create(
            &thread, &attributes,
            { raw in
                let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
                job.body()
                job.thread.finished.store(true, ordering: .releasing)
                return nil
            }, context)
        precondition(result == 0, "pthread_create: errno \(result)")
    }

    package var isFinished: Bool { finished.load(ordering: .acquiring) }

    /// Waits up to `timeout` for `body` to return.
    package func wait(timeout seconds: Double) -> Bool { waitUntil(seconds) { isFinished } }

    private final class Job {
        let body: @Sendable () -> Void
        let thread: TestThread
        init(body: @escaping @Sendable () -> Void, thread: TestThread) {
            self.body = body
            self.thread = thread
        }
    }
}

/// Runs `body` on a fresh thread; false if it did not return within `seconds` (the thread is then left behind).
/// Turns a regression that blocks a call into a failure rather than a hung test run.
package func completes(within seconds: Double, _ body: @escaping @Sendable () -> Void) -> Bool {
    TestThread(body).wait(timeout: seconds)
}
