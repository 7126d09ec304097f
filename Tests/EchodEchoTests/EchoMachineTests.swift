import EchodEcho
import EchodEventLoop
import EchodSystem
import Testing

@Suite("Echo state machine, without sockets")
struct EchoMachineTests {
    let peer = SocketAddress(host: "127.0.0.1", port: 4000)!

    /// Pseudo-random bytes from a fixed seed (xorshift64, seeded by `n`): every run gets the same bytes, so that a
    /// failure replays exactly.
    func randomBytes(_ n: Int) -> [UInt8] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(n)
        return (0..<n).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state >> 32)
        }
    }

    @Test("a connection table entry keeps its size with Unix peers in SocketAddress")
    func entrySize() {
        // 122 bytes before the io_uring backend's per-connection state (``RingState``: its queue and flags, 11 bytes
        // with padding 8 more per entry); idle memory per connection stays about 160 B (bench/README.md).
        #expect(MemoryLayout<Connection>.size == 130)
        #expect(Connection(peer: .unixPeer(uid: 1, gid: 2, pid: 3), openedAt: 0, tick: 0).peer.unixUID == 1)
    }

    @Test("a read is written straight back, with no buffer held")
    func fastPath() {
        var machine = EchoMachine(readBufferSize: 1024, maxPending: 4096)
        defer { machine.destroy() }
        var io = FakeIO(inbound: Array("hello\n\0binary\u{ff}".utf8))
        var c = Connection(peer: peer, openedAt: 0, tick: 0)
        let sent = io.inbound
        #expect(machine.readable(&c, fd: 5, io: &io, tick: 1) == .keep)
        #expect(io.echoed == sent)
        #expect(c.pending.isEmpty)
        #expect(c.bytesIn == UInt64(sent.count) && c.bytesOut == UInt64(sent.count))
        #expect(io.interestChanges == 0)
        #expect(c.lastActiveTick == 1)
    }

    @Test("a partial write keeps the rest, asks for EPOLLOUT, and flushes in order")
    func partialWrite() {
        var machine = EchoMachine(readBufferSize: 1024, maxPending: 4096)
        defer { machine.destroy() }
        let data = randomBytes(1000)
        var io = FakeIO(inbound: data, writeAllowance: 300)
        var c = Connection(peer: peer, openedAt: 0, tick: 0)
        #expect(machine.readable(&c, fd: 5, io: &io, tick: 0) == .keep)
        #expect(c.pending.count == 700)
        #expect(io.interest == [.read, .write])
        // More data arrives while pending: appended behind, never reordered.
        let more = randomBytes(200)
        io.inbound = more
        #expect(machine.readable(&c, fd: 5, io: &io, tick: 0) == .keep)
        #expect(c.pending.count == 900)
        io.writeAllowance = nil
        #expect(machine.writable(&c, fd: 5, io: &io, tick: 0) == .keep)
        #expect(io.echoed == data + more)
        #expect(c.pending.isEmpty)
        #expect(io.interest == .read)
    }

    @Test("a connection the loop can no longer watch for writing is closed, not left holding its bytes")
    func interestFailureCloses() {
        var machine = EchoMachine(readBufferSize: 1024, maxPending: 4096)
        defer { machine.destroy() }
        var io = FakeIO(inbound: randomBytes(1000), writeAllowance: 300)
        io.failInterest = true
        var c = Connection(peer: peer, openedAt: 0, tick: 0)
        #expect(machine.readable(&c, fd: 5, io: &io, tick: 0) == .close(.reset))
        machine.release(&c)
    }

    @Test("backpressure: reading stops at max_pending_bytes and resumes below half")
    func backpressure() {
        let max = 4096
        var machine = EchoMachine(readBufferSize: 1024, maxPending: max)
        defer { machine.destroy() }
        let data = randomBytes(20_000)
        var io = FakeIO(inbound: data, writeAllowance: 0)
        var c = Connection(peer: peer, openedAt: 0, tick: 0)
        for _ in 0..<50 { _ = machine.readable(&c, fd: 5, io: &io, tick: 0) }
        #expect(c.pending.count == max, "held exactly the bound, no more")
        #expect(c.flags.contains(.readPaused))
        #expect(io.interest == .write, "reading paused: the kernel's window pushes back on the peer")
        #expect(io.inbound.count == data.count - max)
        io.writeAllowance = 1000
        _ = machine.writable(&c, fd: 5, io: &io, tick: 0)
        #expect(c.flags.contains(.readPaused), "still above half: stays paused")
        io.writeAllowance = 2000
        _ = machine.writable(&c, fd: 5, io: &io, tick: 0)
        #expect(!c.flags.contains(.readPaused))
        #expect(io.interest == [.read, .write])
        // Drain everything: every byte comes back in order.
        io.writeAllowance = nil
        for _ in 0..<100 where !(io.inbound.isEmpty && c.pending.isEmpty) {
            _ = machine.writable(&c, fd: 5, io: &io, tick: 0)
            _ = machine.readable(&c, fd: 5, io: &io, tick: 0)
        }
        #expect(io.echoed == data)
    }

    @Test("half-close with nothing pending: close at once")
    func halfCloseImmediate() {
        var machine = EchoMachine(readBufferSize: 1024, maxPending: 4096)
        defer { machine.destroy() }
        var io = FakeIO(inbound: Array("bye".utf8), peerEOF: true)
        var c = Connection(peer: peer, openedAt: 0, tick: 0)
        #expect(machine.readable(&c, fd: 5, io: &io, tick: 0) == .keep)
        #expect(machine.readable(&c, fd: 5, io: &io, tick: 0) == .close(.peerClosed))
        #expect(io.echoed == Array("bye".utf8))
    }

    @Test("half-close with data pending: echo all of it first, then close")
    func halfCloseAfterFlush() {
        var machine = EchoMachine(readBufferSize: 1024, maxPending: 4096)
        defer { machine.destroy() }
        let data = randomBytes(900)
        var io = FakeIO(inbound: data, peerEOF: true, writeAllowance: 100)
        var c = Connection(peer: peer, openedAt: 0, tick: 0)
        #expect(machine.readable(&c, fd: 5, io: &io, tick: 0) == .keep)
        #expect(machine.readable(&c, fd: 5, io: &io, tick: 0) == .keep, "EOF while 800 bytes are pending: keep going")
        #expect(c.flags.contains(.readClosed))
        #expect(io.interest == .write)
        io.writeAllowance = nil
        #expect(machine.writable(&c, fd: 5, io: &io, tick: 0) == .close(.peerClosed))
        #expect(io.echoed == data)
    }

    @Test("a failed write or read closes with reason reset")
    func failures() {
        var machine = EchoMachine(readBufferSize: 1024, maxPending: 4096)
        defer { machine.destroy() }
        var io = FakeIO(inbound: [1, 2, 3], failWrites: true)
        var c = Connection(peer: peer, openedAt: 0, tick: 0)
        #expect(machine.readable(&c, fd: 5, io: &io, tick: 0) == .close(.reset))
    }

    @Test("never reads more than max_pending_bytes when it is below the read buffer size")
    func smallBound() {
        var machine = EchoMachine(readBufferSize: 65536, maxPending: 4096)
        defer { machine.destroy() }
        var io = FakeIO(inbound: randomBytes(10_000), writeAllowance: 0)
        var c = Connection(peer: peer, openedAt: 0, tick: 0)
        _ = machine.readable(&c, fd: 5, io: &io, tick: 0)
        #expect(c.pending.count == 4096)
        _ = machine.readable(&c, fd: 5, io: &io, tick: 0)
        #expect(c.pending.count == 4096)
        machine.release(&c)  // as closing the connection would: the pending buffer goes back (LeakSanitizer saw it)
    }
}

@Suite("Connection limits")
struct ConnectionLimiterTests {
    @Test("global and per-IP limits admit, refuse and release")
    func limits() {
        let limiter = ConnectionLimiter(maxConnections: 3, maxPerIP: 2)
        let a = SocketAddress(host: "10.0.0.1", port: 1)!.hostKey
        let b = SocketAddress(host: "::1", port: 1)!.hostKey
        #expect(limiter.admit(a) == .admitted)
        #expect(limiter.admit(a) == .admitted)
        #expect(limiter.admit(a) == .overPerIP)
        #expect(limiter.admit(b) == .admitted)
        #expect(limiter.admit(b) == .overTotal)
        #expect(limiter.openConnections == 3)
        limiter.release(a)
        #expect(limiter.admit(b) == .admitted)
        limiter.setLimits(maxConnections: 10, maxPerIP: 0)
        #expect(limiter.admit(b) == .admitted, "0 = unlimited per IP")
    }
}
