import EchodEventLoop
import EchodSystem
import EchodTestSupport
import Glibc
import Testing

/// Runs `loop` on its own thread for the duration of `body`.
func withRunningLoop(_ body: (EventLoop) throws -> Void) throws {
    let loop = try EventLoop(index: 0)
    let thread = try LoopThread(loop: loop, name: "test-loop") { _ in }
    defer {
        loop.stop()
        thread.join()
    }
    try body(loop)
}

@Suite("Event loop")
struct EventLoopTests {
    @Test("tasks from other threads run on the loop thread, in order")
    func executeOrder() throws {
        try withRunningLoop { loop in
            let seen = Locked<[Int]>([])
            let onLoop = Locked(true)
            for i in 0..<1000 {
                loop.execute {
                    if !loop.inLoopThread { onLoop.value = false }
                    seen.update { $0.append(i) }
                }
            }
            #expect(waitUntil { seen.value.count == 1000 })
            #expect(seen.value == Array(0..<1000))
            #expect(onLoop.value)
        }
    }

    @Test("a periodic timer fires repeatedly and stops when cancelled")
    func timers() throws {
        try withRunningLoop { loop in
            let fired = Locked(0)
            let keep = Locked<LoopTimer?>(nil)
            loop.execute {
                let timer = try! LoopTimer(loop: loop) { fired.update { $0 += 1 } }
                timer.schedule(after: .milliseconds(5), every: .milliseconds(5))
                keep.value = timer
            }
            #expect(waitUntil { fired.value >= 5 })
            loop.execute { keep.value?.cancel() }
            usleep(50_000)
            let after = fired.value
            usleep(50_000)
            #expect(fired.value == after)
        }
    }

    @Test("the heartbeat advances while the loop is idle")
    func heartbeat() throws {
        try withRunningLoop { loop in
            #expect(waitUntil { loop.stats.heartbeat.load(ordering: .relaxed) > 0 })
            let first = loop.stats.heartbeat.load(ordering: .relaxed)
            #expect(waitUntil(2) { loop.stats.heartbeat.load(ordering: .relaxed) > first })
        }
    }

    @Test("an event for a closed and reused descriptor is not delivered to the new owner")
    func staleEvents() throws {
        // Two eventfds made readable in one batch; the first handler closes the second and opens a new descriptor,
        // which the kernel gives the same number. The stale event from the same batch must not reach the new
        // registration (nor the old handler): removing the generation check in `EventLoop.dispatch` fails this.
        try withRunningLoop { loop in
            let delivered = Locked<[String]>([])
            final class Recorder: EventHandler {
                let name: String
                let log: Locked<[String]>
                var onEvent: ((Int32) -> Void)?
                init(_ name: String, _ log: Locked<[String]>) {
                    self.name = name
                    self.log = log
                }
                override func handleEvent(fd: Int32, events: UInt32) {
                    log.update { $0.append(name) }
                    onEvent?(fd)
                }
            }
            let done = Locked(false)
            let handlers = Locked<[EventHandler]>([])
            loop.execute {
                let a = try! Syscall.eventFD()
                let b = try! Syscall.eventFD()
                let first = Recorder("first", delivered)
                let second = Recorder("second", delivered)
                let reused = Recorder("reused", delivered)
                first.onEvent = { fd in
                    Syscall.drainCounter(fd)
                    loop.deregister(fd: b, willClose: true)
                    Syscall.close(b)
                    let c = try! Syscall.eventFD()  // lowest free number: b's
                    precondition(c == b)
                    try! loop.register(fd: c, interest: .read, handler: reused)
                    loop.deregister(fd: fd, willClose: true)
                    Syscall.close(fd)
                    loop.execute {
                        loop.deregister(fd: c, willClose: true)
                        Syscall.close(c)
                        done.value = true
                    }
                }
                try! loop.register(fd: a, interest: .read, handler: first)
                try! loop.register(fd: b, interest: .read, handler: second)
                // epoll's ready list is in the order the descriptors became ready: `a` first, so that its handler
                // runs (closing `b` and reusing its number) while `b`'s event is still waiting later in the batch.
                Syscall.signalEventFD(a)
                Syscall.signalEventFD(b)
                handlers.value = [first, second, reused]
            }
            #expect(waitUntil { done.value })
            let log = delivered.value
            #expect(!log.contains("reused"), "stale event delivered to a reused fd: \(log)")
            #expect(!log.contains("second"), "event delivered to a closed fd's handler: \(log)")
            #expect(log.first == "first", "the batch did not start with the first descriptor: \(log)")
        }
    }
}

@Suite("Socket addresses")
struct SocketAddressTests {
    @Test("parse and print IPv4 and IPv6")
    func roundTrip() {
        #expect(SocketAddress(host: "127.0.0.1", port: 8888)?.description == "127.0.0.1:8888")
        #expect(SocketAddress(host: "::1", port: 7)?.description == "[::1]:7")
        #expect(SocketAddress(host: "localhost", port: 1) == nil)
        #expect(SocketAddress(host: "10.0.0.1", port: 1)?.hostKey != SocketAddress(host: "10.0.0.2", port: 1)?.hostKey)
    }

    @Test("IOError says which call failed and why")
    func ioErrorText() {
        #expect(IOError("accept4", errno: EMFILE).description == "accept4: Too many open files (errno 24)")
    }
}
