import EchodBench
import EchodSystem
import EchodTestSupport
import Testing

/// Options for a short `--udp` run against `server`: no warm-up, short drain and loss timeout, bounded in time.
func quickUDPOptions(
    _ server: TestDatagramEchoServer, sockets: Int = 4, size: Int = 64, threads: Int = 1, milliseconds: Int = 300
) -> BenchOptions {
    var o = BenchOptions(target: SocketAddress(host: "127.0.0.1", port: server.port)!)
    o.udp = true
    o.connections = sockets
    o.size = size
    o.threads = threads
    o.duration = .milliseconds(milliseconds)
    o.warmup = .zero
    o.drainTimeout = .milliseconds(500)
    o.connectTimeout = .seconds(2)
    o.lossTimeout = .milliseconds(50)
    o.maxOps = 2_000_000
    return o
}

func benchUDP(_ behavior: TestDatagramEchoServer.Behavior, _ configure: (TestDatagramEchoServer) -> BenchOptions) -> BenchReport {
    let server = TestDatagramEchoServer(behavior)
    defer { server.stop() }
    return BenchRunner.run(configure(server))
}

@Suite("bench --udp against an in-test UDP echo server", .serialized)
struct BenchDatagramTests {
    @Test("UDP pingpong counts round trips and latency with zero errors", arguments: [1, 2])
    func pingpong(threads: Int) throws {
        let r = benchUDP(.echo) { quickUDPOptions($0, sockets: 4, threads: threads) }
        #expect(r.setupFailure == nil)
        #expect(r.errors.total == 0, "\(r.errorDetails)")
        #expect(r.exitCode == 0)
        #expect(r.ops > 10)
        #expect(r.late == 0)
        #expect(r.bytesReceived >= r.ops * 64)
        #expect(r.latency.count == r.ops)
        #expect(r.target.hasPrefix("udp://127.0.0.1:"))
        let json = try jsonObject(r.json())
        #expect(json["transport"]?.string == "udp")
        #expect(json["late"]?.int == 0)
        #expect(r.table().contains("4 sockets × 64 B"), "\(r.table())")
    }

    @Test("datagrams from 1 byte (a one-byte sequence number) to the largest IPv4 datagram", arguments: [1, 7, 8, 65507])
    func sizes(size: Int) throws {
        let r = benchUDP(.echo) { quickUDPOptions($0, sockets: 2, size: size, milliseconds: 200) }
        #expect(r.errors.total == 0, "\(r.errorDetails)")
        #expect(r.ops > 0)
    }

    @Test("a changed byte is a mismatch, with the datagram and the offset")
    func corrupt() throws {
        let r = benchUDP(.flipByte(at: 20)) { quickUDPOptions($0, sockets: 2, milliseconds: 100) }
        #expect(r.setupFailure == nil)
        #expect(r.errors.mismatch > 0)
        #expect(r.ops == 0)
        #expect(r.errorDetails.first?.contains("echoed with byte 20") == true, "\(r.errorDetails)")
        #expect(r.exitCode == 1)
    }

    @Test("no answer during the set-up: exit 2, and it says so")
    func silent() throws {
        let r = benchUDP(.swallow) { server in
            var o = quickUDPOptions(server, sockets: 1, milliseconds: 100)
            o.connectTimeout = .milliseconds(300)
            return o
        }
        #expect(r.exitCode == 2)
        #expect(r.setupFailure?.contains("no echo from udp://127.0.0.1:") == true, "\(String(describing: r.setupFailure))")
    }

    @Test("a second echo of a datagram is an error (the server sent more than it received)")
    func twice() throws {
        let r = benchUDP(.twice) { quickUDPOptions($0, sockets: 2, milliseconds: 200) }
        #expect(r.errors.mismatch > 0, "\(r.errorDetails)")
        #expect(r.errorDetails.contains { $0.contains("echoed twice") }, "\(r.errorDetails)")
        #expect(r.exitCode == 1)
    }

    @Test("dropped datagrams are counted lost after the loss timeout, and the sockets go on")
    func lossy() throws {
        let r = benchUDP(.dropEvery(10)) { quickUDPOptions($0, sockets: 2, milliseconds: 400) }
        #expect(r.setupFailure == nil)
        #expect(r.errors.lost > 0, "\(r.errorDetails)")
        #expect(r.errors.mismatch == 0, "\(r.errorDetails)")
        #expect(r.ops > r.errors.lost)
        #expect(r.exitCode == 1)
        #expect(r.table().contains(" lost, "))
    }

    @Test("a reply after its datagram was given up is late, not a mismatch")
    func late() throws {
        let r = benchUDP(.holdFirst) { quickUDPOptions($0, sockets: 1, milliseconds: 200) }
        #expect(r.setupFailure == nil)
        #expect(r.late == 1)
        #expect(r.errors.total == 0, "\(r.errorDetails)")
    }

    @Test("nothing listening: the set-up fails with ICMP port unreachable, exit 2")
    func refused() throws {
        let port = TestSocket.udp().port  // bound, then closed when released
        var o = BenchOptions(target: SocketAddress(host: "127.0.0.1", port: port)!)
        o.udp = true
        o.duration = .milliseconds(100)
        o.connectTimeout = .seconds(2)
        let r = BenchRunner.run(o)
        #expect(r.exitCode == 2)
        #expect(r.setupFailure?.contains("port unreachable (ICMP)") == true, "\(String(describing: r.setupFailure))")
    }

    @Test("--udp is pingpong only and one datagram at most")
    func problems() {
        var o = BenchOptions(target: .unspecified)
        o.udp = true
        #expect(o.problem == nil)
        o.mode = .stream
        #expect(o.problem == "--udp runs --mode pingpong only")
        o.mode = .pingpong
        o.size = 65508
        #expect(o.problem?.contains("at most 65507 bytes") == true)
    }
}
