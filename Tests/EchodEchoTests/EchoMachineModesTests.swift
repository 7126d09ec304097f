import EchodEcho
import EchodEventLoop
import EchodProxyProtocol
import EchodSystem
import Testing

@Suite("Echo state machine: PROXY header phase and tagging, without sockets")
struct EchoMachineModesTests {
    let proxyPeer = SocketAddress(host: "127.0.0.1", port: 4000)!

    /// `PROXY TCP4 198.51.100.7 192.0.2.1 51234 9000\r\n`: a header naming 198.51.100.7:51234.
    let v1 = Array("PROXY TCP4 198.51.100.7 192.0.2.1 51234 9000\r\n".utf8)

    /// A v2 PROXY header over IPv4 naming 198.51.100.7:51234.
    var v2: [UInt8] {
        [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 12]
            + [198, 51, 100, 7, 192, 0, 2, 1, 0xC8, 0x22, 0x23, 0x28]
    }

    func client(_ header: ProxyHeader) -> (UInt16, UInt64)? {
        guard case .inet(let source, _) = header.addresses else { return nil }
        return (source.port, source.high)
    }

    @Test("a v1 header and data in one read: the header is taken, the data handed back as leftover")
    func headerWithData() {
        var machine = EchoMachine(readBufferSize: 8192, maxPending: 4096)
        defer { machine.destroy() }
        var io = FakeIO(inbound: v1 + Array("hello".utf8))
        var c = Connection(peer: proxyPeer, openedAt: 0, tick: 0)
        let step = machine.readHeader(&c, fd: 5, io: &io, mode: .any, exact: false)
        guard case .complete(let header, let leftover) = step else {
            Issue.record("expected a complete header, got \(step)")
            return
        }
        #expect(client(header)?.0 == 51234)
        #expect(leftover == 5)
        #expect(!c.pending.hasStorage)
        #expect(machine.echoReadBuffer(&c, fd: 5, io: &io, count: leftover) == .keep)
        #expect(io.echoed == Array("hello".utf8))
        #expect(io.reads == 1)
    }

    @Test("a header a byte at a time is held, parsed whole, and nothing of it is echoed")
    func headerByteByByte() {
        var machine = EchoMachine(readBufferSize: 8192, maxPending: 4096)
        defer { machine.destroy() }
        var io = FakeIO()
        var c = Connection(peer: proxyPeer, openedAt: 0, tick: 0)
        let header = v2
        for (i, byte) in (header + Array("xy".utf8)).enumerated() where i < header.count {
            io.inbound = [byte]
            let step = machine.readHeader(&c, fd: 5, io: &io, mode: .v2, exact: false)
            if i < header.count - 1 {
                #expect(step == .waiting)
                #expect(c.pending.count == i + 1)
            } else {
                guard case .complete(let parsed, let leftover) = step else {
                    Issue.record("expected complete at the last byte, got \(step)")
                    return
                }
                #expect(client(parsed)?.0 == 51234)
                #expect(leftover == 0)
                #expect(!c.pending.hasStorage)
            }
        }
        #expect(io.echoed.isEmpty)
    }

    @Test("exact mode peeks and takes only the header: the data stays for the next read")
    func exactLeavesData() {
        var machine = EchoMachine(readBufferSize: 8192, maxPending: 4096)
        defer { machine.destroy() }
        var io = FakeIO(inbound: v1 + Array("hello".utf8))
        var c = Connection(peer: proxyPeer, openedAt: 0, tick: 0)
        guard case .complete(_, let leftover) = machine.readHeader(&c, fd: 5, io: &io, mode: .v1, exact: true) else {
            Issue.record("expected a complete header")
            return
        }
        #expect(leftover == 0)
        #expect(io.inbound == Array("hello".utf8))
    }

    @Test("exact mode with a header split in two: the first part is taken and held, the rest peeked and taken")
    func exactSplit() {
        var machine = EchoMachine(readBufferSize: 8192, maxPending: 4096)
        defer { machine.destroy() }
        var io = FakeIO(inbound: Array(v1[0..<10]))
        var c = Connection(peer: proxyPeer, openedAt: 0, tick: 0)
        #expect(machine.readHeader(&c, fd: 5, io: &io, mode: .v1, exact: true) == .waiting)
        #expect(io.inbound.isEmpty)
        io.inbound = Array(v1[10...]) + Array("data".utf8)
        guard case .complete = machine.readHeader(&c, fd: 5, io: &io, mode: .v1, exact: true) else {
            Issue.record("expected a complete header")
            return
        }
        #expect(io.inbound == Array("data".utf8))
        #expect(!c.pending.hasStorage)
    }

    @Test("bytes that are not a header, a wrong version, and a close mid-header are refused")
    func refusals() {
        var machine = EchoMachine(readBufferSize: 8192, maxPending: 4096)
        defer { machine.destroy() }
        var c = Connection(peer: proxyPeer, openedAt: 0, tick: 0)
        var io = FakeIO(inbound: Array("hello\n".utf8))
        guard case .refused(.some) = machine.readHeader(&c, fd: 5, io: &io, mode: .any, exact: false) else {
            Issue.record("a plain client's bytes must be refused")
            return
        }
        io = FakeIO(inbound: v1)
        guard case .refused(.some) = machine.readHeader(&c, fd: 5, io: &io, mode: .v2, exact: false) else {
            Issue.record("v1 on a v2 listener must be refused")
            return
        }
        io = FakeIO(inbound: Array(v1[0..<8]), peerEOF: true)
        #expect(machine.readHeader(&c, fd: 5, io: &io, mode: .v1, exact: false) == .waiting)
        #expect(machine.readHeader(&c, fd: 5, io: &io, mode: .v1, exact: false) == .refused(nil))
        machine.release(&c)
        #expect(io.echoed.isEmpty)
    }

    @Test("prefix mode: each line after the tag, a fragment prefixed once, no buffering for a newline")
    func prefixLines() {
        var machine = EchoMachine(readBufferSize: 8192, maxPending: 4096)
        defer { machine.destroy() }
        var c = Connection(peer: proxyPeer, openedAt: 0, tick: 0)
        machine.beginPrefixing(&c, prefix: Array("one ".utf8))
        var io = FakeIO(inbound: Array("world\nsecond\nfrag".utf8))
        #expect(machine.readablePrefixed(&c, fd: 5, io: &io, tick: 1) == .keep)
        #expect(String(decoding: io.echoed, as: UTF8.self) == "one world\none second\none frag")
        io.inbound = Array("ment\n\n".utf8)
        #expect(machine.readablePrefixed(&c, fd: 5, io: &io, tick: 1) == .keep)
        #expect(String(decoding: io.echoed, as: UTF8.self) == "one world\none second\none fragment\none \n")
        #expect(c.bytesIn == 23)
        machine.release(&c)
    }

    @Test("prefix mode: a read of newlines is bounded so its output fits the pending buffer; a slow reader pauses reading")
    func prefixBound() {
        let maxPending = 4096
        var machine = EchoMachine(readBufferSize: 65536, maxPending: maxPending)
        defer { machine.destroy() }
        var c = Connection(peer: proxyPeer, openedAt: 0, tick: 0)
        let prefix = Array(repeating: UInt8(ascii: "t"), count: 99) + [UInt8(ascii: " ")]
        machine.beginPrefixing(&c, prefix: prefix)
        let sent = [UInt8](repeating: 0x0A, count: 20_000)
        var io = FakeIO(inbound: sent, writeAllowance: 0)
        var rounds = 0
        while !io.inbound.isEmpty && rounds < 10_000 {
            rounds += 1
            if io.interest.contains(.read) {
                #expect(machine.readablePrefixed(&c, fd: 5, io: &io, tick: 1) == .keep)
            }
            #expect(c.pending.count <= maxPending)
            io.writeAllowance = 1000
            if io.interest.contains(.write) { #expect(machine.writable(&c, fd: 5, io: &io, tick: 1) == .keep) }
            io.writeAllowance = 0
        }
        io.writeAllowance = nil
        while c.pending.count > 0 { _ = machine.writable(&c, fd: 5, io: &io, tick: 1) }
        #expect(io.inbound.isEmpty)
        #expect(io.echoed == Array(repeating: prefix + [0x0A], count: sent.count).flatMap { $0 })
        machine.release(&c)
    }

    @Test("send: a tag line the socket only partly takes waits in the pending buffer")
    func sendPartial() {
        var machine = EchoMachine(readBufferSize: 8192, maxPending: 4096)
        defer { machine.destroy() }
        var c = Connection(peer: proxyPeer, openedAt: 0, tick: 0)
        var io = FakeIO(writeAllowance: 3)
        let line = Array("host-1\n".utf8)
        #expect(line.withUnsafeBytes { machine.send(&c, fd: 5, io: &io, $0.baseAddress!, count: line.count) } == .keep)
        #expect(c.pending.count == 4)
        #expect(io.interest.contains(.write))
        io.writeAllowance = nil
        #expect(machine.writable(&c, fd: 5, io: &io, tick: 0) == .keep)
        #expect(io.echoed == line)
        machine.release(&c)
    }
}
