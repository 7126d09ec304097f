import EchodEventLoop
import EchodSystem
import EchodTestSupport
import Glibc
import Testing

/// The backends this machine can run: io_uring where the kernel and process allow it (`make test` says so when not).
let backends: [IOBackend] = IOBackend.ioUringUnavailableReason() == nil ? [.epoll, .ioUring] : [.epoll]

/// Runs `loop` on its own thread for the duration of `body`.
func withRunningLoop(backend: IOBackend = .epoll, _ body: (EventLoop) throws -> Void) throws {
    let loop = try EventLoop(index: 0, backend: backend)
    let thread = try LoopThread(loop: loop, name: "test-loop") { _ in }
    defer {
        loop.stop()
        thread.join()
    }
    try body(loop)
}

@Suite("Event loop")
struct EventLoopTests {
    @Test("tasks from other threads run on the loop thread, in order", arguments: backends)
    func executeOrder(backend: IOBackend) throws {
        try withRunningLoop(backend: backend) { loop in
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

    @Test("a periodic timer fires repeatedly and stops when cancelled", arguments: backends)
    func timers(backend: IOBackend) throws {
        try withRunningLoop(backend: backend) { loop in
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

    @Test("the heartbeat advances while the loop is idle", arguments: backends)
    func heartbeat(backend: IOBackend) throws {
        try withRunningLoop(backend: backend) { loop in
            #expect(waitUntil { loop.stats.heartbeat.load(ordering: .relaxed) > 0 })
            let first = loop.stats.heartbeat.load(ordering: .relaxed)
            #expect(waitUntil(2) { loop.stats.heartbeat.load(ordering: .relaxed) > first })
        }
    }

    @Test("an event for a closed and reused descriptor is not delivered to the new owner", arguments: backends)
    func staleEvents(backend: IOBackend) throws {
        // Two eventfds made readable in one batch; the first handler closes the second and puts a new descriptor
        // at the same number. The stale event from the same batch must not reach the new registration (nor the old
        // handler): removing the generation check in `EventLoop.dispatch` fails this.
        try withRunningLoop(backend: backend) { loop in
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
            let failure = Locked<String?>(nil)
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
                    // dup2 closes b and gives its number to a new eventfd in one step. Closing b and counting on
                    // the kernel to hand out the lowest free number again raced the other tests' threads (tests run
                    // in parallel, this one on both backends at once): one of them could take the number first.
                    let fresh = try! Syscall.eventFD()
                    let c = dup2(fresh, b)
                    let error = errno
                    Syscall.close(fresh)
                    _ = fcntl(b, F_SETFD, FD_CLOEXEC)
                    guard c == b else {
                        failure.value = "dup2 onto \(b): errno \(error)"
                        done.value = true
                        return
                    }
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
            #expect(failure.value == nil)
            let log = delivered.value
            #expect(!log.contains("reused"), "stale event delivered to a reused fd: \(log)")
            #expect(!log.contains("second"), "event delivered to a closed fd's handler: \(log)")
            #expect(log.first == "first", "the batch did not start with the first descriptor: \(log)")
        }
    }
}

@Suite("Event loop on io_uring: completions", .enabled(if: backends.contains(.ioUring)))
struct CompletionTests {
    /// Records the completions it gets; with `rearm`, starts the next receive after each one that brought data.
    final class Recorder: CompletionHandler, @unchecked Sendable {
        var rearm = false
        let log: Locked<[(operation: UInt8, result: Int32, bytes: [UInt8])]>
        unowned(unsafe) let loop: EventLoop
        init(_ log: Locked<[(operation: UInt8, result: Int32, bytes: [UInt8])]>, loop: EventLoop) {
            self.log = log
            self.loop = loop
        }
        override func handleCompletion(fd: Int32, operation: UInt8, result: Int32, flags: UInt32) {
            var bytes: [UInt8] = []
            if let id = Completion.buffer(flags) {
                if result > 0 { bytes = Array(UnsafeRawBufferPointer(start: loop.buffers![id], count: Int(result))) }
                loop.recycleBuffer(id)
            }
            log.update { $0.append((operation, result, bytes)) }
            guard rearm else { return }
            if result == -ENOBUFS {
                #expect(loop.provideMoreBuffers(1))
                loop.receive(fd: fd, operation: operation)
            } else if result > 0 && Completion.buffer(flags) != nil {
                loop.receive(fd: fd, operation: operation)
            }
        }
    }

    @Test("receives fill provided buffers, given as they run out, and a send goes out, each completion to its handler")
    func receiveAndSend() throws {
        try withRunningLoop(backend: .ioUring) { loop in
            let pair = try #require(socketPair())
            defer { close(pair[1]) }
            let log = Locked<[(operation: UInt8, result: Int32, bytes: [UInt8])]>([])
            let recorder = Recorder(log, loop: loop)
            recorder.rearm = true
            let message: [UInt8] = Array("ring".utf8)
            loop.execute {
                _ = try! loop.provideBuffers(count: 4, size: 64, initial: 0)
                try! loop.attach(fd: pair[0], handler: recorder)
                loop.receive(fd: pair[0], operation: 7)
                message.withUnsafeBytes { loop.send(fd: pair[0], bytes: $0.baseAddress!, count: $0.count, operation: 9) }
            }
            var got = [UInt8](repeating: 0, count: 16)
            setReceiveTimeout(pair[1], seconds: 5)
            #expect(read(pair[1], &got, 16) == 4)
            #expect(Array(got[..<4]) == message)
            // More chunks than buffers: each one goes back, and a receive that finds none (ENOBUFS) gets more given.
            for chunk in ["one", "two", "three", "four", "five", "six"] {
                #expect(write(pair[1], chunk, chunk.utf8.count) == chunk.utf8.count)
                #expect(waitUntil { log.value.contains { $0.operation == 7 && String(decoding: $0.bytes, as: UTF8.self) == chunk } })
            }
            #expect(log.value.contains { $0.operation == 9 && $0.result == 4 })
            #expect(log.value.first { $0.operation == 7 }?.result == -ENOBUFS, "the first receive found no buffer given")
            loop.execute {
                loop.detach(fd: pair[0])
                close(pair[0])  // its last receive is still in flight: its completion is discarded (detached)
            }
            #expect(waitUntil { loop.stats.turns.load > 0 })
        }
    }

    @Test("a completion for a detached descriptor does not reach the handler attached to its number next")
    func staleCompletions() throws {
        // The first handler's receive stays in flight after it is detached; the descriptor number is attached again
        // to a second handler. Data then completes the old receive: the loop must drop that completion (and give its
        // buffer back), not hand it to the second handler. Removing the generation check in
        // `EventLoop.dispatchCompletions` fails this.
        try withRunningLoop(backend: .ioUring) { loop in
            let pair = try #require(socketPair())
            defer {
                close(pair[0])
                close(pair[1])
            }
            let first = Locked<[(operation: UInt8, result: Int32, bytes: [UInt8])]>([])
            let second = Locked<[(operation: UInt8, result: Int32, bytes: [UInt8])]>([])
            let a = Recorder(first, loop: loop)
            let b = Recorder(second, loop: loop)
            let attached = Locked(false)
            loop.execute {
                _ = try! loop.provideBuffers(count: 4, size: 64, initial: 4)
                try! loop.attach(fd: pair[0], handler: a)
                loop.receive(fd: pair[0], operation: 1)
                loop.detach(fd: pair[0])
                try! loop.attach(fd: pair[0], handler: b)
                attached.value = true
            }
            #expect(waitUntil { attached.value })
            #expect(write(pair[1], "late", 4) == 4)
            // The old receive took the bytes (nothing is left to read here), and nobody got them.
            var left = [UInt8](repeating: 0, count: 8)
            #expect(waitUntil { recv(pair[0], &left, 8, Int32(MSG_DONTWAIT | MSG_PEEK)) < 0 && errno == EAGAIN })
            usleep(100_000)
            #expect(first.value.isEmpty && second.value.isEmpty, "stale completion delivered: \(first.value) \(second.value)")
            loop.execute { loop.detach(fd: pair[0]) }
        }
    }

    @Test("buffers are address space only until given: the rest of their mapping stays PROT_NONE")
    func buffersBecomeWritableAsGiven() throws {
        // Under strict overcommit a writable private mapping is charged in full (2 GiB for 32,768 buffers of
        // 64 KiB): the buffers must become writable as they are given, not all at start. Mapping them all
        // writable (ProvidedBuffers' init) fails this. 6,000 bytes: buffers that do not start on a page boundary.
        try withRunningLoop(backend: .ioUring) { loop in
            let seen = Locked<[String]>([])
            loop.execute {
                let buffers = try! loop.provideBuffers(count: 64, size: 6000, initial: 16)
                func at(_ id: Int, _ offset: Int) -> String { protection(of: buffers[UInt16(id)] + offset) }
                var found = [at(0, 0), at(15, 5999), at(17, 0), at(63, 5999)]
                _ = loop.provideMoreBuffers(16)
                found += [at(31, 5999), at(33, 0), "\(buffers.given)"]
                seen.value = found
            }
            #expect(waitUntil { !seen.value.isEmpty })
            #expect(seen.value == ["rw", "rw", "--", "--", "rw", "--", "32"])
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

/// The protection ("rw", "r-", "--", ...) of the mapping holding `address`, from /proc/self/maps.
func protection(of address: UnsafeRawPointer) -> String {
    let target = UInt(bitPattern: address)
    guard let maps = try? readFile("/proc/self/maps") else { return "no /proc/self/maps" }
    for line in maps.split(separator: "\n") {
        let fields = line.split(separator: " ")
        let range = fields[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
        if range.count == 2 && range[0] <= target && target < range[1] { return String(fields[1].prefix(2)) }
    }
    return "unmapped"
}
