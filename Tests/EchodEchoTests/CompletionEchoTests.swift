import EchodEcho
import EchodEventLoop
import EchodSystem
import EchodTestSupport
import Glibc
import Logging
import Testing

/// The io_uring backend's echo path (EchoService+Completions.swift) on real sockets, where a test needs what the
/// end-to-end suite cannot arrange: a loop with only a few buffers, all held.
@Suite("Echo on io_uring: completions", .enabled(if: IOBackend.ioUringUnavailableReason() == nil))
struct CompletionEchoTests {
    @Test("a connection that finds every buffer held waits, and is echoed once one comes back")
    func starvedConnectionResumes() throws {
        // Four buffers of 4 KiB (max_pending_bytes 16 KiB: a quarter each), all of which A's echo holds while its
        // client does not read (A's socket send buffer shrunk so that its sends wait). B's bytes then find no buffer
        // (ENOBUFS, none left to give): B waits. Once A's client reads, A's sends complete, their buffers come back,
        // and B is echoed. Removing the re-arm of starved connections in `recycle` (EchoService+Completions.swift)
        // leaves B without its echo: this test then fails.
        let loop = try EventLoop(index: 0, backend: .ioUring)
        let thread = try LoopThread(loop: loop, name: "test-loop") { _ in }
        defer {
            loop.stop()
            thread.join()
        }
        let a = try #require(socketPair())
        let b = try #require(socketPair())
        var small: Int32 = 4096
        setsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let service = Locked<EchoService?>(nil)
        loop.execute {
            let settings = EchoService.Settings(maxPendingBytes: 16 * 1024, idleTimeout: .zero, logReads: false)
            let made = try! EchoService(
                loop: loop, limiter: ConnectionLimiter(maxConnections: 10, maxPerIP: 0), settings: settings,
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), ringBufferCount: 4
            ) { _, _, _, _ in }
            made.adopt(fd: a[0], peer: .unixPeer(uid: 0, gid: 0, pid: 1))
            made.adopt(fd: b[0], peer: .unixPeer(uid: 0, gid: 0, pid: 2))
            service.value = made
        }
        #expect(waitUntil { service.value != nil })
        defer {
            // On the loop's thread, which owns the service's state: the test thread only learns that it is done.
            let closed = Locked(false)
            loop.execute {
                service.value?.shutdown()
                closed.value = true
            }
            #expect(waitUntil { closed.value })
            close(a[1])
            close(b[1])
        }
        // A's client sends without reading until its own send buffer is full.
        var random = SeededRandom(seed: 15)
        let sent = (0..<256 * 1024).map { _ in UInt8.random(in: 0...255, using: &random) }
        var offset = 0
        let flags = fcntl(a[1], F_GETFL)
        _ = fcntl(a[1], F_SETFL, flags | O_NONBLOCK)
        let deadline = Syscall.monotonicNanoseconds() + 5_000_000_000
        while offset < sent.count && Syscall.monotonicNanoseconds() < deadline {
            let n = sent[offset...].withUnsafeBytes { write(a[1], $0.baseAddress, $0.count) }
            if n > 0 { offset += n } else { usleep(20_000) }
            if n < 0 && offset > 64 * 1024 { break }  // A holds its buffers, its sender waits: the point of the setup
        }
        usleep(200_000)
        #expect(write(b[1], "hello", 5) == 5)
        var reply = [UInt8](repeating: 0, count: 16)
        setReceiveTimeout(b[1], seconds: 1)
        #expect(read(b[1], &reply, 16) < 0, "B was echoed while every buffer was held")
        // A's client reads everything it sent back: A's buffers come back, and B gets its echo.
        _ = fcntl(a[1], F_SETFL, flags)
        setReceiveTimeout(a[1], seconds: 5)
        shutdown(a[1], Int32(SHUT_WR))
        var echoed: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while echoed.count < offset {
            let n = read(a[1], &chunk, chunk.count)
            if n <= 0 { break }
            echoed += chunk[..<n]
        }
        #expect(echoed == Array(sent[..<offset]), "A's echo: \(echoed.count) of \(offset) bytes, or different")
        setReceiveTimeout(b[1], seconds: 5)
        #expect(read(b[1], &reply, 16) == 5)
        #expect(Array(reply[..<5]) == Array("hello".utf8))
    }
}
