import EchodEcho
import EchodEventLoop
import EchodLog
import EchodSystem
import EchodSystemd
import Glibc
import Logging
import Synchronization

@testable import EchodDaemon

/// A value shared between a test and the threads it starts.
final class Locked<T>: @unchecked Sendable {
    private let mutex = Mutex<Void>(())
    private var _value: T
    init(_ value: T) { _value = value }
    var value: T {
        get { mutex.withLock { _ in _value } }
        set { mutex.withLock { _ in _value = newValue } }
    }
    func update(_ body: (inout T) -> Void) { mutex.withLock { _ in body(&_value) } }
}

/// Polls `condition` every 2 ms for up to `seconds`.
func waitUntil(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Syscall.monotonicNanoseconds() + Int64(seconds * 1e9)
    while Syscall.monotonicNanoseconds() < deadline {
        if condition() { return true }
        usleep(2000)
    }
    return condition()
}

/// A logger that writes nothing (the parts under test log their decisions; the tests check the decisions).
let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

private let names = Atomic<Int>(0)

/// An AF_UNIX datagram socket in the abstract namespace standing in for systemd's NOTIFY_SOCKET.
final class NotifyReceiver: @unchecked Sendable {
    let fd: Int32
    /// The NOTIFY_SOCKET value that reaches this receiver.
    let address: String

    init() {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0, "socket: errno \(errno)")
        let name = "echod-daemon-test-\(getpid())-\(names.add(1, ordering: .relaxed).newValue)"
        address = "@" + name
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let path = [UInt8(0)] + Array(name.utf8)
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: path) }
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + path.count)
        let bound = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        precondition(bound == 0, "bind: errno \(errno)")
    }

    deinit { close(fd) }

    /// The notifier a daemon part would get from systemd's environment.
    var notifier: SystemdNotifier { SystemdNotifier(environment: ["NOTIFY_SOCKET": address]) }

    /// The next datagram, waiting up to `seconds`; nil when none came.
    func next(within seconds: Double = 5) -> String? {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(seconds * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        return n < 0 ? nil : String(decoding: buffer[..<n], as: UTF8.self)
    }

    /// Every datagram queued now, without waiting.
    func pending() -> [String] {
        var all: [String] = []
        while let message = next(within: 0) { all.append(message) }
        return all
    }
}

/// Event loops running on threads of their own, stopped and joined by ``stop()``.
final class RunningLoops: @unchecked Sendable {
    let loops: [EventLoop]
    private var threads: [LoopThread] = []

    init(count: Int, firstIndex: Int = 0) throws {
        loops = try (0..<count).map { i throws(IOError) in try EventLoop(index: firstIndex + i) }
        for loop in loops {
            threads.append(try LoopThread(loop: loop, name: "test-loop-\(loop.index)") { _ in })
        }
    }

    /// Runs `body` on `loop`'s thread and waits for it.
    func sync<T: Sendable>(on loop: EventLoop, _ body: @escaping @Sendable () -> T) -> T {
        let result = Locked<T?>(nil)
        loop.execute { result.value = body() }
        precondition(waitUntil(10) { result.value != nil }, "loop \(loop.index) did not run the task")
        return result.value!
    }

    func stop() {
        for loop in loops { loop.stop() }
        for thread in threads { thread.join() }
        threads.removeAll()
    }
}

/// A blocking TCP client on loopback with a 5 s receive timeout.
struct Client {
    let fd: Int32

    /// Connects to 127.0.0.1:`port`; nil when refused.
    static func connect(port: UInt16) -> Client? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            Glibc.close(fd)
            return nil
        }
        return Client(fd: fd)
    }

    /// Sends `text` and returns what comes back (as many bytes), or nil at end of stream or timeout.
    func echo(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { return nil }
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while got.count < bytes.count {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return nil }
            got += buffer[..<n]
        }
        return String(decoding: got, as: UTF8.self)
    }

    /// Waits (up to the receive timeout) for the server to close: true at end of stream or reset.
    func closedByServer() -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, 0)
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }

    func close() { _ = Glibc.close(fd) }
}
