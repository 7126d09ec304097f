import EchodEcho
import EchodEventLoop
import EchodSystem
import Glibc
import Testing

/// The UDP echo handler on a real event loop and real loopback sockets.
@Suite("UDP echo handler, on loopback")
struct DatagramEchoTests {
    final class Served {
        let loop: EventLoop
        let thread: LoopThread
        let echo: DatagramEcho
        let fd: Int32
        let port: UInt16
        let stats = DatagramStats()

        init(slotSize: Int) throws {
            loop = try EventLoop(index: 0)
            fd = try Socket.datagram(on: SocketAddress(host: "127.0.0.1", port: 0)!)
            port = Socket.localAddress(fd)!.port
            let settings = DatagramGuard.Settings(
                minSourcePort: 1024, sourceRate: 1000, sourceBurst: 2000, globalRate: 100_000, globalBandwidth: 1 << 27, sourceTableSize: 64)
            echo = try DatagramEcho(loop: loop, fd: fd, settings: settings, stats: stats, slotSize: slotSize)
            try echo.start()
            thread = try LoopThread(loop: loop, name: "udp-test") { _ in }
        }

        func stop() {
            let (loop, echo) = (self.loop, self.echo)
            nonisolated(unsafe) let unsafeEcho = echo
            loop.execute {
                unsafeEcho.stop()
                loop.stop()
            }
            thread.join()
            Syscall.close(fd)
        }
    }

    /// A client socket with a receive timeout of `milliseconds`.
    static func client(timeoutMilliseconds: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var timeout = timeval(tv_sec: 0, tv_usec: timeoutMilliseconds * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func roundTrip(_ client: Int32, _ payload: [UInt8], to port: UInt16) -> [UInt8]? {
        let server = SocketAddress(host: "127.0.0.1", port: port)!
        _ = payload.withUnsafeBytes { bytes in server.withSockAddr { sendto(client, bytes.baseAddress, bytes.count, 0, $0, $1) } }
        var buffer = [UInt8](repeating: 0, count: 1000)
        let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
        return n < 0 ? nil : Array(buffer[..<n])
    }

    @Test("a datagram longer than the buffer is dropped and counted, never answered in part; one that fits is echoed")
    func truncatedIsDropped() throws {
        let served = try Served(slotSize: 100)
        let client = Self.client(timeoutMilliseconds: 300)
        let fits = (0..<100).map { UInt8($0) }
        #expect(Self.roundTrip(client, fits, to: served.port) == fits)
        #expect(Self.roundTrip(client, [UInt8](repeating: 7, count: 101), to: served.port) == nil)
        #expect(Self.roundTrip(client, [], to: served.port) == [])
        close(client)
        served.stop()  // the loop has stopped: its counters are final
        #expect(served.stats.dropped(.truncated) == 1)
        #expect(served.stats.received.load == 3 && served.stats.sent.load == 2)
        #expect(served.stats.bytesSent.load == 100)
    }
}
