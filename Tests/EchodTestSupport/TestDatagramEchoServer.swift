import Glibc
import Synchronization

/// A loopback UDP echo server on its own thread, written directly on recvfrom/sendto rather than on echod, so that a
/// test of echod's UDP clients (`probe udp://`, `bench --udp`) does not lean on the code it is testing. It echoes
/// each datagram to its sender faithfully, or misbehaves on purpose.
package final class TestDatagramEchoServer: Sendable {
    package enum Behavior: Sendable {
        /// Echo every datagram unchanged.
        case echo
        /// Echo with the byte at this offset inverted (datagrams shorter than that unchanged).
        case flipByte(at: Int)
        /// Never answer.
        case swallow
        /// Echo every datagram twice.
        case twice
        /// Answer none of the first `n` datagrams, then echo.
        case dropFirst(Int)
        /// Drop every `n`th datagram (the n-th, 2n-th, ...), echo the others.
        case dropEvery(Int)
        /// Hold the first datagram back and echo it just before the echo of the second (a late reply).
        case holdFirst
        /// Echo with one byte more.
        case longer
    }

    package let port: UInt16
    private let core: Core
    private let thread: TestThread

    package init(_ behavior: Behavior = .echo) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0, "socket: errno \(errno)")
        var address = loopbackAddress(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(bound == 0, "bind: errno \(errno)")
        port = localPort(fd)
        let core = Core(behavior: behavior, fd: fd)
        self.core = core
        thread = TestThread { core.run() }
    }

    deinit { stop() }

    /// Datagrams received so far.
    package var received: Int { core.received.load(ordering: .relaxed) }

    /// Stops serving and closes the socket; idempotent.
    package func stop() {
        if core.stopping.exchange(true, ordering: .relaxed) { return }
        precondition(thread.wait(timeout: 10), "the test UDP echo server did not stop")
    }

    private final class Core: Sendable {
        let behavior: Behavior
        let fd: Int32
        let received = Atomic<Int>(0)
        let stopping = Atomic<Bool>(false)

        init(behavior: Behavior, fd: Int32) {
            self.behavior = behavior
            self.fd = fd
        }

        /// Polls the socket 50 ms at a time so that `stop` is seen soon.
        func run() {
            var buffer = [UInt8](repeating: 0, count: 65536)
            var held: (bytes: [UInt8], from: sockaddr_storage, length: socklen_t)?
            while !stopping.load(ordering: .relaxed) {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 50) > 0 else { continue }
                var from = sockaddr_storage()
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &length) }
                }
                guard n >= 0 else { continue }
                let number = received.add(1, ordering: .relaxed).newValue
                var reply = Array(buffer[0..<n])
                switch behavior {
                case .echo:
                    break
                case .flipByte(let at):
                    if at < reply.count { reply[at] = ~reply[at] }
                case .swallow:
                    continue
                case .twice:
                    send(reply, to: &from, length)
                case .dropFirst(let count):
                    if number <= count { continue }
                case .dropEvery(let every):
                    if number % every == 0 { continue }
                case .holdFirst:
                    if number == 1 {
                        held = (reply, from, length)
                        continue
                    }
                    if var first = held {
                        send(first.bytes, to: &first.from, first.length)
                        held = nil
                    }
                case .longer:
                    reply.append(0x2A)
                }
                send(reply, to: &from, length)
            }
            close(fd)
        }

        private func send(_ bytes: [UInt8], to address: inout sockaddr_storage, _ length: socklen_t) {
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes, bytes.count, 0, $0, length) }
            }
        }
    }
}
