import Glibc
import Synchronization

/// A loopback TCP echo server on its own thread, written directly on poll(2) rather than on echod's event loop, so
/// that a test of echod's clients (`probe`, `bench`) does not lean on the code it is testing. It echoes faithfully,
/// or misbehaves on purpose. Connections are served concurrently.
package final class TestEchoServer: Sendable {
    package enum Behavior: Sendable {
        /// Echo everything; close after the client's end of stream once everything is echoed.
        case echo
        /// Echo, but invert every `n`th byte of each connection's stream (stream offsets n-1, 2n-1, ...).
        case flipEvery(Int)
        /// Echo, but invert the byte at this stream offset of each connection.
        case flipByte(at: Int)
        /// Echo the first `n` bytes of each connection, then close it.
        case closeAfter(Int)
        /// Read and discard: nothing comes back, the connection stays open until the client closes.
        case swallow
        /// Echo everything, but ignore the client's half-close (never close).
        case neverClose
        /// Echo each chunk read with one byte more (`*`) after it.
        case extraByte
        /// Read up to the end of a request's headers, answer with this raw response, then close.
        case http(String)
        /// Take a PROXY protocol header off the front of each connection (v1: through its CRLF; v2: 16 bytes and its
        /// length field), keep it (``proxyHeaders``), and echo what follows. Framing only, no validation: the tests
        /// check the kept bytes with the parser under test.
        case stripProxyHeader
    }

    package let port: UInt16
    private let core: Core
    private let thread: TestThread

    package init(_ behavior: Behavior = .echo) {
        let listener = listenOnLoopback()
        port = localPort(listener)
        setNonBlocking(listener)
        let core = Core(behavior: behavior, listener: listener)
        self.core = core
        thread = TestThread { core.run() }
    }

    deinit { stop() }

    /// Connections accepted so far.
    package var accepted: Int { core.accepted.load(ordering: .relaxed) }

    /// `stripProxyHeader`: each connection's header as received, with the client's port as the server saw it.
    package var proxyHeaders: [(header: [UInt8], peerPort: UInt16)] { core.proxyHeaders.withLock { $0 } }

    /// Stops serving and closes every socket (the listener last); idempotent.
    package func stop() {
        if core.stopping.exchange(true, ordering: .relaxed) { return }
        precondition(thread.wait(timeout: 10), "the test echo server did not stop")
    }

    /// The server thread's state: only `accepted` and `stopping` are touched from other threads.
    private final class Core: Sendable {
        let behavior: Behavior
        let listener: Int32
        let accepted = Atomic<Int>(0)
        let stopping = Atomic<Bool>(false)
        let proxyHeaders = Mutex<[(header: [UInt8], peerPort: UInt16)]>([])

        init(behavior: Behavior, listener: Int32) {
            self.behavior = behavior
            self.listener = listener
        }

        /// Polls the listener and every connection, 50 ms at a time so that `stop` is seen soon.
        func run() {
            var connections: [Connection] = []
            var fds: [pollfd] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while !stopping.load(ordering: .relaxed) {
                fds.removeAll(keepingCapacity: true)
                fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
                for c in connections { fds.append(pollfd(fd: c.fd, events: c.wantedEvents, revents: 0)) }
                guard poll(&fds, nfds_t(fds.count), 50) > 0 else { continue }
                let polled = connections
                if fds[0].revents != 0 { acceptAll(into: &connections) }
                for (c, pfd) in zip(polled, fds.dropFirst()) where pfd.revents != 0 {
                    c.serve(pfd.revents, behavior, &buffer, self)
                }
                connections.removeAll { $0.isClosed }
            }
            for c in connections { c.close() }
            close(listener)
        }

        private func acceptAll(into connections: inout [Connection]) {
            while true {
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return }  // EAGAIN: none left (or an error the next poll shows again)
                accepted.add(1, ordering: .relaxed)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                setNonBlocking(fd)
                var on: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                connections.append(Connection(fd: fd))
            }
        }
    }

    /// One accepted connection: what it still has to send back, and where in the client's stream it is.
    private final class Connection {
        private(set) var fd: Int32
        private var pending: [UInt8] = []
        private var sent = 0
        /// Stream offset of the next byte read.
        private var offset = 0
        private var readClosed = false
        private var closeWhenFlushed = false
        private var request: [UInt8] = []
        private var headerDone = false

        init(fd: Int32) { self.fd = fd }

        var isClosed: Bool { fd < 0 }

        /// Nothing is read while an echo is pending: the client's sends back up, as with a real echo server.
        var wantedEvents: Int16 {
            if sent < pending.count { return Int16(POLLOUT) }
            return readClosed ? 0 : Int16(POLLIN)
        }

        func serve(_ revents: Int16, _ behavior: Behavior, _ buffer: inout [UInt8], _ core: Core) {
            if sent < pending.count {
                flush()
                closeIfDone(behavior)
                return
            }
            if readClosed {
                if revents & Int16(POLLHUP | POLLERR) != 0 { close() }
                return
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 {
                if errno != EAGAIN && errno != EINTR { close() }
                return
            }
            if n == 0 {
                if case .neverClose = behavior { readClosed = true } else { close() }
                return
            }
            var bytes = Array(buffer[0..<n])
            switch behavior {
            case .echo, .neverClose:
                break
            case .flipEvery(let every):
                for i in 0..<n where (offset + i + 1) % every == 0 { bytes[i] ^= 0xFF }
            case .flipByte(let at):
                if at >= offset && at < offset + n { bytes[at - offset] ^= 0xFF }
            case .closeAfter(let limit):
                bytes = Array(bytes.prefix(max(0, limit - offset)))
            case .swallow:
                bytes = []
            case .extraByte:
                bytes.append(UInt8(ascii: "*"))
            case .http(let response):
                request += bytes
                bytes = []
                if request.firstRange(of: Array("\r\n\r\n".utf8)) != nil {
                    bytes = Array(response.utf8)
                    closeWhenFlushed = true
                }
            case .stripProxyHeader:
                if !headerDone {
                    request += bytes
                    bytes = []
                    if let end = Self.proxyHeaderEnd(request) {
                        headerDone = true
                        let header = Array(request[..<end])
                        let port = peerPort()
                        core.proxyHeaders.withLock { $0.append((header, port)) }
                        bytes = Array(request[end...])
                    }
                }
            }
            offset += n
            pending = bytes
            sent = 0
            flush()
            closeIfDone(behavior)
        }

        /// Where a PROXY header at the start of `bytes` ends; nil while it is incomplete; 0 when it is none at all.
        static func proxyHeaderEnd(_ bytes: [UInt8]) -> Int? {
            guard let first = bytes.first else { return nil }
            if first == 0x0D {
                guard bytes.count >= 16 else { return nil }
                let end = 16 + (Int(bytes[14]) << 8 | Int(bytes[15]))
                return bytes.count >= end ? end : nil
            }
            guard first == UInt8(ascii: "P") else { return 0 }
            if let crlf = bytes.firstRange(of: [0x0D, 0x0A]) { return crlf.upperBound }
            return bytes.count > 107 ? 0 : nil
        }

        private func peerPort() -> UInt16 {
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let rc = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
            }
            return rc == 0 ? UInt16(bigEndian: address.sin_port) : 0
        }

        private func flush() {
            while sent < pending.count {
                let n = pending.withUnsafeBytes {
                    send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                if n > 0 {
                    sent += n
                } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                    return
                } else {
                    close()
                    return
                }
            }
        }

        private func closeIfDone(_ behavior: Behavior) {
            guard !isClosed, sent == pending.count else { return }
            if closeWhenFlushed {
                close()
            } else if case .closeAfter(let limit) = behavior, offset >= limit {
                close()
            }
        }

        func close() {
            guard fd >= 0 else { return }
            Glibc.close(fd)
            fd = -1
        }
    }
}
