import EchodSystem
import EchodEventLoop
import Glibc
import Synchronization

/// A small echo server on its own event loop, for the bench tests: echoes faithfully, or misbehaves on purpose.
final class TestEchoServer: @unchecked Sendable {
    enum Behavior: Sendable {
        /// Echo everything; close after the client's EOF once everything is echoed.
        case echo
        /// Echo, but invert every `n`th byte of each connection's stream (bytes n-1, 2n-1, ...).
        case flipEvery(Int)
        /// Echo the first `n` bytes of each connection, then close it.
        case closeAfter(Int)
        /// Read and discard: nothing comes back, the connection stays open.
        case swallow
        /// Echo everything, but ignore the client's half-close (never close).
        case neverClose
    }

    let address: SocketAddress
    let behavior: Behavior
    private let loop: EventLoop
    private let thread: LoopThread
    private let listenerFD: Int32
    private var acceptor: Acceptor?
    fileprivate var connections: [Int32: ServerConnection] = [:]
    let accepted = Atomic<Int>(0)

    init(_ behavior: Behavior = .echo) throws {
        self.behavior = behavior
        listenerFD = try Socket.listen(on: SocketAddress(host: "127.0.0.1", port: 0)!)
        address = Socket.localAddress(listenerFD)!
        loop = try EventLoop(index: 0)
        thread = try LoopThread(loop: loop, name: "test-echo") { _ in }
        loop.execute { [self] in
            let acceptor = Acceptor(loop: loop, listenerFD: listenerFD, onAccept: { [unowned self] fd, _ in
                self.accepted.add(1, ordering: .relaxed)
                Socket.setNoDelay(fd)
                let c = ServerConnection(server: self, fd: fd)
                do throws(IOError) {
                    try self.loop.register(fd: fd, interest: .read, handler: c)
                    self.connections[fd] = c
                } catch {
                    Syscall.close(fd)
                }
            }, onEvent: { _ in })
            try? acceptor.start()
            self.acceptor = acceptor
        }
    }

    /// Stops the loop, closes every socket. Idempotent enough for `defer`.
    func shutdown() {
        loop.execute { [self] in
            acceptor?.stop()
            for (_, c) in connections { c.close() }
            connections.removeAll()
        }
        loop.stop()
        thread.join()
        Syscall.close(listenerFD)
    }

    fileprivate func forget(_ fd: Int32) { connections.removeValue(forKey: fd) }
    fileprivate var eventLoop: EventLoop { loop }
}

/// One accepted connection of the test server.
private final class ServerConnection: EventHandler {
    unowned let server: TestEchoServer
    var fd: Int32
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64 << 10, alignment: 16)
    var pendingStart = 0, pendingEnd = 0
    var offset = 0  // stream offset of the next byte read
    var peerClosed = false

    init(server: TestEchoServer, fd: Int32) {
        self.server = server
        self.fd = fd
    }

    deinit { buffer.deallocate() }

    override func handleEvent(fd: Int32, events: UInt32) {
        // close() drops the server's reference; the loop holds none: keep self alive until we return.
        withExtendedLifetime(self) { handle(fd) }
    }

    private func handle(_ fd: Int32) {
        if pendingStart < pendingEnd {
            flush()
            closeIfDone()
            return
        }
        let n: Int
        do throws(IOError) {
            guard case .processed(let r) = try Syscall.read(fd, buffer, 64 << 10) else { return }
            n = r
        } catch {
            close()
            return
        }
        if n == 0 {
            if case .neverClose = server.behavior {
                peerClosed = true
                try? server.eventLoop.modify(fd: fd, interest: Interest())
                return
            }
            close()
            return
        }
        var count = n
        switch server.behavior {
        case .echo, .neverClose:
            break
        case .flipEvery(let every):
            let bytes = buffer.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n where (offset + i + 1) % every == 0 { bytes[i] ^= 0xFF }
        case .closeAfter(let limit):
            count = max(0, min(n, limit - offset))
        case .swallow:
            count = 0
        }
        offset += n
        pendingStart = 0
        pendingEnd = count
        flush()
        closeIfDone()
    }

    private func closeIfDone() {
        if fd >= 0, case .closeAfter(let limit) = server.behavior, offset >= limit, pendingStart == pendingEnd {
            close()
        }
    }

    func flush() {
        while pendingStart < pendingEnd {
            do throws(IOError) {
                switch try Syscall.write(fd, buffer + pendingStart, pendingEnd - pendingStart) {
                case .processed(let w): pendingStart += w
                case .wouldBlock:
                    try? server.eventLoop.modify(fd: fd, interest: .write)
                    return
                }
            } catch {
                close()
                return
            }
        }
        try? server.eventLoop.modify(fd: fd, interest: .read)
    }

    func close() {
        guard fd >= 0 else { return }
        let closing = fd
        fd = -1
        server.eventLoop.deregister(fd: closing, willClose: true)
        Syscall.close(closing)
        server.forget(closing)
    }
}
