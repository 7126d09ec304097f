import EchodSystem
import EchodTestSupport
import Glibc
import Testing

/// `Syscall.sendMessage` over a real AF_UNIX datagram socket pair: the text arrives as sent, the descriptor arrives
/// as a new descriptor for the same open file, and a full queue is `.wouldBlock`.
@Suite struct FDPassingTests {
    @Test func passesOneDescriptorWithTheText() throws {
        let pair = try DatagramPair()
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { for fd in ends { close(fd) } }

        let sent = try send(pair.sender, "FDSTORE=1", passing: ends[1])

        #expect(sent == .processed(9))
        let received = try #require(receiveWithRights(pair.receiver))
        defer { for fd in received.descriptors { close(fd) } }
        #expect(received.text == "FDSTORE=1")
        #expect(received.descriptors.count == 1)
        let passed = try #require(received.descriptors.first)
        #expect(passed != ends[1])
        #expect(try Syscall.inode(of: passed) == Syscall.inode(of: ends[1]))
        // The same pipe: what goes into the passed write end comes out of the original read end.
        #expect(write(passed, "x", 1) == 1)
        var byte: UInt8 = 0
        #expect(read(ends[0], &byte, 1) == 1 && byte == UInt8(ascii: "x"))
    }

    @Test func withoutRightsNoDescriptorArrives() throws {
        let pair = try DatagramPair()
        #expect(try send(pair.sender, "FDSTOREREMOVE=1", passing: nil) == .processed(15))
        let received = try #require(receiveWithRights(pair.receiver))
        #expect(received.text == "FDSTOREREMOVE=1")
        #expect(received.descriptors.isEmpty)
    }

    @Test func fullQueueIsWouldBlock() throws {
        let pair = try DatagramPair()
        var outcome = IOResult.processed(0)
        for _ in 0..<100_000 {
            outcome = try send(pair.sender, "FDSTORE=1", passing: pair.receiver, flags: Int32(MSG_DONTWAIT))
            if outcome == .wouldBlock { break }
        }
        #expect(outcome == .wouldBlock)
    }

    @Test func errorsNameTheCall() throws {
        let pair = try DatagramPair()
        // Passing a descriptor that is not open fails in the sender, before anything is queued.
        #expect(throws: IOError("sendmsg", errno: EBADF)) { try send(pair.sender, "x", passing: 999_999) }
        #expect(throws: IOError("sendmsg", errno: ENOTSOCK)) {
            var ends: [Int32] = [0, 0]
            _ = pipe(&ends)
            defer { for fd in ends { close(fd) } }
            return try send(ends[1], "x", passing: nil)
        }
    }

    private func send(_ fd: Int32, _ text: String, passing rights: Int32?, flags: Int32 = 0) throws -> IOResult {
        var text = text
        return try text.withUTF8 { bytes in
            try Syscall.sendMessage(
                fd, UnsafeRawBufferPointer(bytes), passing: rights, flags: flags | Int32(MSG_NOSIGNAL), address: nil, length: 0)
        }
    }
}

/// A connected pair of AF_UNIX datagram sockets, both closed on release.
final class DatagramPair {
    let sender: Int32
    let receiver: Int32

    init() throws {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw IOError("socketpair", errno: errno)
        }
        sender = fds[0]
        receiver = fds[1]
    }

    deinit {
        close(sender)
        close(receiver)
    }
}
