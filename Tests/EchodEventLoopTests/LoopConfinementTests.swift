import EchodEventLoop
import Glibc
import Synchronization
import Testing

/// `EventLoop.assertInLoop()`: in a debug build, touching loop-owned state from another thread while the loop runs
/// stops the process. Each case runs in a child process (an exit test), since the failing one must crash.
@Suite("Loop confinement", .enabled(if: _isDebugAssertConfiguration(), "assert is compiled out of release builds"))
struct LoopConfinementTests {
    @Test("registering a descriptor from another thread while the loop runs stops the process")
    func registerFromAnotherThread() async {
        await #expect(processExitsWith: .failure) {
            let (loop, pipeFD) = startedLoop()
            try? loop.register(fd: pipeFD, interest: .read, handler: EventHandler())
        }
    }

    @Test("arming a timer from another thread while the loop runs stops the process")
    func timerFromAnotherThread() async {
        await #expect(processExitsWith: .failure) {
            let loop = try! EventLoop()
            let timer = try! LoopTimer(loop: loop) {}  // made before the loop runs: allowed
            _ = startedLoop(loop)
            timer.schedule(after: .seconds(1))
        }
    }

    @Test("the same calls on the loop thread, or before the loop runs, are fine")
    func sameCallsOnTheLoop() async {
        await #expect(processExitsWith: .success) {
            let loop = try! EventLoop()
            let early = try! LoopTimer(loop: loop) {}
            early.schedule(after: .seconds(1))
            let (_, pipeFD) = startedLoop(loop)
            let done = Done()
            loop.execute {
                let handler = EventHandler()
                try! loop.register(fd: pipeFD, interest: .read, handler: handler)
                loop.deregister(fd: pipeFD, willClose: false)
                let timer = try! LoopTimer(loop: loop) {}
                timer.schedule(after: .seconds(1))
                timer.cancel()
                timer.close()
                done.flag.store(true, ordering: .releasing)
            }
            while !done.flag.load(ordering: .acquiring) { usleep(1000) }
            exit(0)
        }
    }
}

private final class Done: Sendable {
    let flag = Atomic<Bool>(false)
}

/// Starts `loop` (a new one by default) on its own thread and returns once it runs, with the read end of a pipe
/// to register. The process ends with the test, so nothing is torn down.
private func startedLoop(_ given: EventLoop? = nil) -> (EventLoop, Int32) {
    let loop = given ?? (try! EventLoop())
    let running = Done()
    _ = try! LoopThread(loop: loop, name: "confined") { _ in }
    loop.execute { running.flag.store(true, ordering: .releasing) }
    while !running.flag.load(ordering: .acquiring) { usleep(1000) }
    var fds: [Int32] = [0, 0]
    precondition(pipe(&fds) == 0)
    return (loop, fds[0])
}
