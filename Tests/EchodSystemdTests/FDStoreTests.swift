import EchodSystemd
import EchodTestSupport
import Glibc
import Testing

/// The fd-store channel against a fake NOTIFY_SOCKET receiver (an AF_UNIX datagram socket read with `recvmsg`, as
/// systemd reads it): the exact text of each message, and the descriptor that arrives with it.
@Suite struct FDStoreChannelTests {
    @Test func storedDescriptorIsTheSameSocketWithTheExactText() throws {
        let receiver = try FakeNotifySocket()
        let channel = try #require(try FDStoreChannel(environment: ["NOTIFY_SOCKET": receiver.address]))
        let connection = try ConnectedPair()
        let inode = inodeOf(connection.server)
        let name = FDStoreName.connection(inode: inode)

        #expect(channel.store(connection.server, name: name) == .sent)

        let message = try #require(receiver.receive())
        #expect(message.text == "FDSTORE=1\nFDNAME=echod-conn-\(inode)\nFDPOLL=0")
        let passed = try #require(message.descriptors.first)
        defer { close(passed) }
        #expect(message.descriptors.count == 1)
        #expect(inodeOf(passed) == inode)
        // The very socket: what the client sends is read from the passed descriptor.
        #expect(send(connection.client, "ping", 4, Int32(MSG_NOSIGNAL)) == 4)
        var bytes = [UInt8](repeating: 0, count: 4)
        #expect(recv(passed, &bytes, 4, Int32(MSG_WAITALL)) == 4 && bytes == Array("ping".utf8))
        #expect(fcntl(connection.server, F_GETFD) >= 0, "the sender's descriptor stays open")
    }

    @Test func storeConnectionSendsWhatStoreWithItsNameSends() throws {
        let receiver = try FakeNotifySocket()
        let channel = try #require(try FDStoreChannel(environment: ["NOTIFY_SOCKET": receiver.address]))
        let connection = try ConnectedPair()

        for inode: UInt64 in [0, 7, 4711, UInt64.max] {
            #expect(channel.storeConnection(connection.server, inode: inode) == .sent)
            #expect(channel.store(connection.server, name: FDStoreName.connection(inode: inode)) == .sent)
            let viaInode = try #require(receiver.receive())
            let viaName = try #require(receiver.receive())
            for fd in viaInode.descriptors { close(fd) }
            for fd in viaName.descriptors { close(fd) }
            #expect(viaInode.text == "FDSTORE=1\nFDNAME=echod-conn-\(inode)\nFDPOLL=0")
            #expect(viaInode.text == viaName.text)
            #expect(viaInode.descriptors.count == 1)
        }
    }

    @Test func removeCarriesNoDescriptorAndTheExactText() throws {
        let receiver = try FakeNotifySocket()
        let channel = try #require(try FDStoreChannel(environment: ["NOTIFY_SOCKET": receiver.address]))

        #expect(channel.remove(name: FDStoreName.state) == .sent)
        #expect(channel.removeConnection(inode: 123_456) == .sent)
        #expect(channel.remove(name: FDStoreName.connection(inode: 98)) == .sent)

        let received = (0..<3).compactMap { _ in receiver.receive() }
        #expect(
            received.map(\.text) == [
                "FDSTOREREMOVE=1\nFDNAME=echod-state",
                "FDSTOREREMOVE=1\nFDNAME=echod-conn-123456",
                "FDSTOREREMOVE=1\nFDNAME=echod-conn-98",
            ])
        #expect(received.allSatisfy { $0.descriptors.isEmpty })
    }

    @Test(arguments: ["", "a:b", "echod-conn-1\nFDSTORE=1", "tab\there", "caf\u{e9}", String(repeating: "n", count: 256)])
    func namesSystemdWouldRefuseAreNotSent(name: String) throws {
        let receiver = try FakeNotifySocket()
        let channel = try #require(try FDStoreChannel(environment: ["NOTIFY_SOCKET": receiver.address]))
        let connection = try ConnectedPair()

        #expect(errnoOf(channel.store(connection.server, name: name)) == EINVAL)
        #expect(errnoOf(channel.remove(name: name)) == EINVAL)
        #expect(receiver.receive() == nil)
    }

    @Test func longestValidNameFits() throws {
        let receiver = try FakeNotifySocket()
        let channel = try #require(try FDStoreChannel(environment: ["NOTIFY_SOCKET": receiver.address]))
        let connection = try ConnectedPair()
        let name = String(repeating: "~", count: 255)

        #expect(channel.store(connection.server, name: name) == .sent)

        let message = try #require(receiver.receive())
        for fd in message.descriptors { close(fd) }
        #expect(message.text == "FDSTORE=1\nFDNAME=\(name)\nFDPOLL=0")
    }

    /// A receiver that does not read: the queue fills, the send says so at once, `waitWritable` waits in vain, and
    /// once one message is read it returns true and the next send goes.
    @Test func fullQueueIsWouldBlockUntilTheReceiverReads() throws {
        let receiver = try FakeNotifySocket()
        let channel = try #require(try FDStoreChannel(environment: ["NOTIFY_SOCKET": receiver.address]))
        let connection = try ConnectedPair()

        var sent = 0
        var outcome = FDStoreSend.sent
        while sent < 100_000 {
            outcome = channel.storeConnection(connection.server, inode: UInt64(sent))
            guard outcome == .sent else { break }
            sent += 1
        }
        #expect(outcome == .wouldBlock, "after \(sent) messages")
        #expect(channel.remove(name: FDStoreName.state) == .wouldBlock)
        let start = monotonicNow()
        #expect(!channel.waitWritable(timeout: .milliseconds(200)))
        #expect(monotonicNow() - start >= .milliseconds(200))

        for fd in receiver.receive()?.descriptors ?? [] { close(fd) }

        #expect(channel.waitWritable(timeout: .seconds(5)))
        #expect(channel.storeConnection(connection.server, inode: 1) == .sent)
        while let message = receiver.receive() {
            for fd in message.descriptors { close(fd) }
        }
    }

    @Test func waitWritableIsTrueAtOnceWithRoom() throws {
        let receiver = try FakeNotifySocket()
        let channel = try #require(try FDStoreChannel(environment: ["NOTIFY_SOCKET": receiver.address]))
        #expect(channel.waitWritable(timeout: .zero))
    }

    @Test func withoutUsableNotifySocketThereIsNoChannel() throws {
        #expect(try FDStoreChannel(environment: [:]) == nil)
        #expect(try FDStoreChannel(environment: ["NOTIFY_SOCKET": "relative/path"]) == nil)
        #expect(try FDStoreChannel(environment: ["NOTIFY_SOCKET": "vsock:2:1234"]) == nil)
    }

    @Test func nobodyReceivingIsAnError() {
        #expect { try FDStoreChannel(environment: ["NOTIFY_SOCKET": "@" + uniqueName("nobody")]) } throws: {
            "\($0)".hasPrefix("connect: Connection refused")
        }
        #expect { try FDStoreChannel(environment: ["NOTIFY_SOCKET": "/tmp/\(uniqueName("nobody")).sock"]) } throws: {
            "\($0)".hasPrefix("connect: No such file or directory")
        }
    }

    @Test func closedChannelSendsNothing() throws {
        let receiver = try FakeNotifySocket()
        let channel = try #require(try FDStoreChannel(environment: ["NOTIFY_SOCKET": receiver.address]))
        let connection = try ConnectedPair()
        channel.close()
        channel.close()

        #expect(errnoOf(channel.store(connection.server, name: FDStoreName.listener(inode: 1))) == EBADF)
        #expect(errnoOf(channel.remove(name: FDStoreName.listener(inode: 1))) == EBADF)
        #expect(!channel.waitWritable(timeout: .zero))
        #expect(receiver.receive() == nil)
    }

    @Test func storingAClosedDescriptorFails() throws {
        let receiver = try FakeNotifySocket()
        let channel = try #require(try FDStoreChannel(environment: ["NOTIFY_SOCKET": receiver.address]))
        #expect(errnoOf(channel.storeConnection(999_999, inode: 1)) == EBADF)
        #expect(receiver.receive() == nil)
    }

    private func errnoOf(_ outcome: FDStoreSend) -> Int32? {
        if case .failed(let error) = outcome { return error.errno }
        return nil
    }
}

@Suite struct FDStoreNameTests {
    @Test func namesAreTheDesignedOnes() {
        #expect(FDStoreName.listener(inode: 4711) == "echod-listen-4711")
        #expect(FDStoreName.state == "echod-state")
        #expect(FDStoreName.connection(inode: 4711) == "echod-conn-4711")
    }

    @Test(arguments: [0, 1, 9, 10, 4711, 1 << 32, UInt64.max])
    func connectionNamesRoundTrip(inode: UInt64) {
        let name = FDStoreName.connection(inode: inode)
        #expect(FDStoreName.parse(name) == .connection(inode: inode))
        #expect(FDStoreName.isValid(name))
    }

    @Test(arguments: [0, 1, 4711, UInt64.max])
    func listenerNamesRoundTrip(inode: UInt64) {
        let name = FDStoreName.listener(inode: inode)
        #expect(FDStoreName.parse(name) == .listener(inode: inode))
        #expect(FDStoreName.isValid(name))
    }

    @Test func theStateNameParses() {
        #expect(FDStoreName.parse("echod-state") == .state)
    }

    @Test(arguments: [
        "", "echod-conn-", "echod-conn-01", "echod-conn-00", "echod-conn-+1", "echod-conn--1", "echod-conn- 1",
        "echod-conn-1 ", "echod-conn-1a", "echod-conn-0x10", "echod-conn-18446744073709551616",
        "echod-conn-99999999999999999999", "echod-conn-\u{0661}", "Echod-conn-1", "echod-conn1", "echod-listen2",
        "echod-listen", "echod-listen-", "echod-listen-01", "echod-listen-1x",
        "echod-state ", "stored", "unknown", "echo",
    ])
    func otherNamesAreRefused(name: String) {
        #expect(FDStoreName.parse(name) == nil)
    }
}

@Suite struct ValidateConnectionTests {
    @Test func connectedTCPBothEndsAreAccepted() throws {
        let connection = try ConnectedPair()
        #expect(SocketActivation.validateConnection(PassedSocket(fd: connection.server, name: "echod-conn-1")) == nil)
        #expect(SocketActivation.validateConnection(PassedSocket(fd: connection.client, name: "echod-conn-2")) == nil)
    }

    @Test func halfClosedConnectionIsStillAccepted() throws {
        let connection = try ConnectedPair()
        shutdown(connection.client, Int32(SHUT_WR))
        #expect(waitUntil { peerHasClosed(connection.server) })
        #expect(SocketActivation.validateConnection(PassedSocket(fd: connection.server, name: "echod-conn-1")) == nil)
    }

    @Test func connectedUnixStreamIsAccepted() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        defer { for fd in fds { close(fd) } }
        #expect(SocketActivation.validateConnection(PassedSocket(fd: fds[0], name: "echod-conn-3")) == nil)
    }

    @Test func listeningSocketIsRefused() {
        let s = TestSocket.tcp(listening: true)
        #expect(
            SocketActivation.validateConnection(PassedSocket(fd: s.fd, name: "echod-conn-1"))
                == "fd \(s.fd) (\"echod-conn-1\") is a listening socket, expected a connected stream socket")
    }

    @Test func unconnectedTCPIsRefused() {
        let s = TestSocket.tcp(listening: false)
        #expect(
            SocketActivation.validateConnection(PassedSocket(fd: s.fd, name: "echod-conn-1"))
                == "fd \(s.fd) (\"echod-conn-1\") is a stream socket that is not connected")
    }

    @Test func udpIsRefused() {
        let s = TestSocket.udp()
        #expect(
            SocketActivation.validateConnection(PassedSocket(fd: s.fd, name: "echod-conn-1"))
                == "fd \(s.fd) (\"echod-conn-1\") is SOCK_DGRAM, expected a connected stream socket")
    }

    @Test func pipeIsNotASocket() throws {
        let pipe = try TestPipe()
        defer {
            pipe.closeReadEnd()
            pipe.closeWriteEnd()
        }
        #expect(
            SocketActivation.validateConnection(PassedSocket(fd: pipe.readFD, name: "echod-conn-1"))
                == "fd \(pipe.readFD) (\"echod-conn-1\") is not a socket")
    }
}

@Suite struct ValidateMemfdTests {
    @Test func sealedMemfdIsAccepted() throws {
        let fd = try makeMemfd(sealed: true)
        defer { close(fd) }
        #expect(SocketActivation.validateMemfd(PassedSocket(fd: fd, name: "echod-state")) == nil)
    }

    @Test func unsealedMemfdIsRefused() throws {
        let fd = try makeMemfd(sealed: false)
        defer { close(fd) }
        #expect(
            SocketActivation.validateMemfd(PassedSocket(fd: fd, name: "echod-state"))
                == "fd \(fd) (\"echod-state\") is a memfd that is not sealed against writes")
    }

    @Test func socketIsNotAMemfd() {
        let s = TestSocket.tcp(listening: true)
        #expect(
            SocketActivation.validateMemfd(PassedSocket(fd: s.fd, name: "echod-state"))
                == "fd \(s.fd) (\"echod-state\") is not a memfd")
    }

    @Test func pipeIsNotAMemfd() throws {
        let pipe = try TestPipe()
        defer {
            pipe.closeReadEnd()
            pipe.closeWriteEnd()
        }
        #expect(
            SocketActivation.validateMemfd(PassedSocket(fd: pipe.readFD, name: "echod-state"))
                == "fd \(pipe.readFD) (\"echod-state\") is not a memfd")
    }

    /// A memfd made here without EchodSystem (this target does not depend on it): `memfd_create` and the seal
    /// commands are hidden from Swift's Glibc module (no _GNU_SOURCE), so the function is looked up by name and the
    /// `fcntl` commands are the kernel's numbers.
    private func makeMemfd(sealed: Bool) throws -> Int32 {
        typealias MemfdCreate = @convention(c) (UnsafePointer<CChar>, UInt32) -> Int32
        let symbol = try #require(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "memfd_create"))
        let memfdCreate = unsafeBitCast(symbol, to: MemfdCreate.self)
        let fd = memfdCreate("echod-test-state", 3)  // MFD_CLOEXEC | MFD_ALLOW_SEALING
        try #require(fd >= 0, "memfd_create: errno \(errno)")
        let fAddSeals: Int32 = 1024 + 9  // F_ADD_SEALS
        if sealed { try #require(fcntl(fd, fAddSeals, 1 | 2 | 4 | 8) == 0, "F_ADD_SEALS: errno \(errno)") }
        return fd
    }
}

/// A stand-in for systemd's notification socket: an abstract AF_UNIX datagram socket, read without waiting, with the
/// descriptors of each message's SCM_RIGHTS control message (received close-on-exec; the caller closes them).
private final class FakeNotifySocket {
    let socket: TestSocket
    let address: String

    init() throws {
        address = "@" + uniqueName("fdstore")
        socket = try TestSocket.unixDatagram(boundTo: address)
    }

    /// The next queued message with its descriptors, nil when none is queued.
    func receive() -> (text: String, descriptors: [Int32])? {
        receiveWithRights(socket.fd)
    }
}

/// An established loopback TCP connection: both ends, closed on release.
private final class ConnectedPair {
    let client: Int32
    let server: Int32

    init() throws {
        let listener = TestSocket.tcp(listening: true)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        client = fd
        var address = loopbackAddress(port: listener.port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let accepted = rc == 0 ? accept(listener.fd, nil, nil) : -1
        guard accepted >= 0 else {
            let failure = TestFailure("connect or accept: errno \(errno)")
            close(fd)
            throw failure
        }
        server = accepted
        _ = fcntl(server, F_SETFD, FD_CLOEXEC)
    }

    deinit {
        close(client)
        close(server)
    }
}

private func inodeOf(_ fd: Int32) -> UInt64 {
    var info = stat()
    precondition(fstat(fd, &info) == 0)
    return UInt64(info.st_ino)
}

/// Whether the peer's FIN has arrived: a peeking read returns end of file without blocking.
private func peerHasClosed(_ fd: Int32) -> Bool {
    var byte: UInt8 = 0
    return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
}
