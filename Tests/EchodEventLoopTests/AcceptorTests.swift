import EchodEventLoop
import EchodSystem
import EchodTestSupport
import Glibc
import Testing

@Suite("Acceptor")
struct AcceptorTests {
    @Test("a re-arm that fails after a pause is reported and retried with back-off, and accepting resumes once it can")
    func rearmFailureIsRetried() throws {
        try withRunningLoop { loop in
            let listener = try Socket.listen(on: SocketAddress(host: "127.0.0.1", port: 0)!)
            defer { Syscall.close(listener) }
            let port = try #require(Socket.localAddress(listener)).port
            // The acceptor's descriptor number first names /dev/null: accept(2) fails with ENOTSOCK (a listener
            // broken under the loop, which pauses accepting) and every re-arm fails, since epoll_ctl refuses a
            // descriptor that cannot be polled (EPERM).
            let slot = try Syscall.open("/dev/null", O_RDONLY)
            defer { Syscall.close(slot) }
            let events = Locked<[String]>([])
            let accepted = Locked<[Int32]>([])
            let startError = Locked<IOError?>(nil)
            let box = Locked<Acceptor?>(nil)
            loop.execute {
                let acceptor = Acceptor(
                    loop: loop, listenerFD: slot,
                    onAccept: { fd, _ in accepted.update { $0.append(fd) } },
                    onEvent: { event in
                        let name: String
                        switch event {
                        case .paused: name = "paused"
                        case .resumed: name = "resumed"
                        case .retrying: name = "retrying"
                        case .transientFailure: name = "transient"
                        }
                        events.update { $0.append(name) }
                    })
                box.value = acceptor
                do throws(IOError) { try acceptor.start() } catch { startError.value = error }
                // What the loop would do if the descriptor had been readable.
                acceptor.handleEvent(fd: slot, events: Interest.read.rawValue)
            }
            // One pause from the failed accept, then one per failed re-arm (10, 20, 40 ms...): the loop keeps trying.
            #expect(waitUntil { events.value.filter { $0 == "paused" }.count >= 3 }, "re-arm failures not retried: \(events.value)")
            #expect(startError.value?.errno == EPERM)
            #expect(!events.value.contains("retrying"))
            // Descriptors are back: the same number now names the listening socket, and the next retry arms it.
            #expect(dup2(listener, slot) == slot)
            #expect(waitUntil { events.value.contains("retrying") }, "never re-armed: \(events.value)")
            let client = try Socket.connect(to: SocketAddress(host: "127.0.0.1", port: port)!).fd
            defer { Syscall.close(client) }
            #expect(waitUntil { accepted.value.count == 1 }, "no connection accepted after the re-arm: \(events.value)")
            #expect(events.value.last == "resumed")
            let stopped = Locked(false)
            loop.execute {
                box.value?.stop()
                box.value = nil
                stopped.value = true
            }
            #expect(waitUntil { stopped.value })
            for fd in accepted.value { Syscall.close(fd) }
        }
    }
}
