import EchodEcho
import EchodEventLoop
import EchodLog
import EchodSystem
import EchodTestSupport
import Glibc
import Testing

@testable import EchodDaemon

/// The drain on real loops serving echo on a real listener, with real clients.
@Suite struct DrainTests {
    /// A control loop and two worker loops serving echo on one loopback listener, as the daemon sets them up.
    final class Echo: @unchecked Sendable {
        let running: RunningLoops
        let control: EventLoop
        let workers: [Worker]
        let limiter = ConnectionLimiter(maxConnections: 100, maxPerIP: 0)
        let listener: Int32
        let port: UInt16
        private let backend: AsyncLogBackend
        private let devNull: Int32
        /// Kept until the loops stop: a drain's timer stays registered on the control loop.
        private let drains = Locked<[Drain]>([])

        init() throws {
            running = try RunningLoops(count: 3, firstIndex: -1)
            control = running.loops[0]
            workers = running.loops.dropFirst().map { Worker(loop: $0) }
            listener = try Socket.listen(on: SocketAddress(host: "127.0.0.1", port: 0)!)
            port = Socket.localAddress(listener)!.port
            devNull = try Syscall.open("/dev/null", O_WRONLY)
            backend = try AsyncLogBackend(options: LogOptions(level: .critical, stderrFD: devNull))
            let settings = EchoService.Settings(maxPendingBytes: 65536, idleTimeout: .zero, logReads: false)
            for w in workers {
                let (limiter, listener, readLogger) = (self.limiter, self.listener, backend.makeReadLogger(label: "test"))
                let failure: String = running.sync(on: w.loop) {
                    do throws(IOError) {
                        try w.startService(limiter: limiter, settings: settings, logger: quietLogger, readLogger: readLogger)
                        try w.addAcceptor(listener, policy: .plain(label: "test"), index: 0)
                        return ""
                    } catch {
                        return "\(error)"
                    }
                }
                guard failure.isEmpty else { throw TestFailure(failure) }
            }
        }

        /// A drain of these loops, begun on the control loop; records when its callbacks ran.
        func startDrain(timeout: Duration) -> (drain: Drain, released: Locked<Bool>, drained: Locked<Int64?>) {
            let released = Locked(false)
            let drained = Locked<Int64?>(nil)
            let (workers, control, limiter, listener) = (self.workers, self.control, self.limiter, self.listener)
            let drain: Drain = running.sync(on: control) {
                // Made on the control loop, which owns its timer (as the daemon makes it at start-up).
                let drain = try! Drain(workers: workers, control: control, limiter: limiter, logger: quietLogger)
                drain.start(
                    timeout: timeout,
                    listenersReleased: {
                        Syscall.close(listener)
                        released.value = true
                    },
                    drained: {
                        drained.update { $0 = $0 == nil ? Syscall.monotonicNanoseconds() : -1 }  // -1: called twice
                    })
                return drain
            }
            drains.update { $0.append(drain) }
            return (drain, released, drained)
        }

        func stop() {
            for w in workers {
                running.sync(on: w.loop) {
                    w.removeAllAcceptors()
                    w.service?.shutdown()
                }
            }
            running.stop()
            backend.shutdown(timeout: .seconds(2))
            Syscall.close(devNull)
        }
    }

    @Test func openConnectionsFinishWhileNewOnesAreRefused() throws {
        let echo = try Echo()
        defer { echo.stop() }
        let client = try #require(Client.connect(port: echo.port))
        defer { client.close() }
        #expect(client.echo("before") == "before")

        let (_, released, drained) = echo.startDrain(timeout: .seconds(30))
        #expect(waitUntil { released.value })
        #expect(Client.connect(port: echo.port) == nil, "a new client was accepted during the drain")
        #expect(client.echo("during the drain") == "during the drain")
        usleep(100_000)
        #expect(drained.value == nil, "drained with a connection still open")

        client.close()
        #expect(waitUntil { drained.value != nil })
        #expect(drained.value != -1)
        #expect(echo.limiter.openConnections == 0)
    }

    @Test func theTimeoutClosesWhatIsLeft() throws {
        let echo = try Echo()
        defer { echo.stop() }
        let clients = try (0..<4).map { _ in try #require(Client.connect(port: echo.port)) }
        defer { for c in clients { c.close() } }
        for c in clients { #expect(c.echo("x") == "x") }

        let began = Syscall.monotonicNanoseconds()
        let (_, _, drained) = echo.startDrain(timeout: .milliseconds(300))
        for c in clients { #expect(c.closedByServer()) }
        #expect(waitUntil { drained.value != nil })
        let waited = (drained.value ?? 0) - began
        #expect(waited >= 300_000_000, "closed after \(waited / 1_000_000) ms, before the drain timeout")
        #expect(drained.value != -1)
        #expect(echo.limiter.openConnections == 0)
    }

    @Test func withNoConnectionsTheDrainEndsAtOnce() throws {
        let echo = try Echo()
        defer { echo.stop() }
        let (_, released, drained) = echo.startDrain(timeout: .seconds(30))
        #expect(waitUntil(2) { released.value && drained.value != nil })
    }

    @Test func closeAllNowEndsTheDrainBeforeItsTimeout() throws {
        let echo = try Echo()
        defer { echo.stop() }
        let client = try #require(Client.connect(port: echo.port))
        defer { client.close() }
        #expect(client.echo("x") == "x")
        let (drain, _, drained) = echo.startDrain(timeout: .seconds(30))
        let box = UncheckedBox(drain)
        echo.running.sync(on: echo.control) { box.value.closeAllNow() }
        #expect(client.closedByServer())
        #expect(waitUntil { drained.value != nil })
    }
}
