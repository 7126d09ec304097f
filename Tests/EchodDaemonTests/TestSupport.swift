import EchodEcho
import EchodEventLoop
import EchodLog
import EchodSystem
import EchodSystemd
import EchodTestSupport
import Glibc
import Logging
import Synchronization

@testable import EchodDaemon

/// A logger that writes nothing (the parts under test log their decisions; the tests check the decisions).
let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

/// An AF_UNIX datagram socket in the abstract namespace standing in for systemd's NOTIFY_SOCKET.
final class NotifyReceiver: @unchecked Sendable {
    private let socket: TestSocket
    /// The NOTIFY_SOCKET value that reaches this receiver.
    let address: String

    init() {
        address = "@" + uniqueName("echod-daemon-test")
        socket = try! TestSocket.unixDatagram(boundTo: address)
    }

    /// The notifier a daemon part would get from systemd's environment.
    var notifier: SystemdNotifier { SystemdNotifier(environment: ["NOTIFY_SOCKET": address]) }

    /// The next datagram, waiting up to `seconds`; nil when none came.
    func next(within seconds: Double = 5) -> String? {
        var poller = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(seconds * 1000)) == 1 else { return nil }
        return socket.receive()?.text
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

/// The shared loopback client, with the two questions the drain tests ask of it.
typealias Client = TestClient

extension TestClient {
    /// Connects to 127.0.0.1:`port`; nil when refused.
    static func connect(port: UInt16) -> TestClient? { try? TestClient(port: port) }

    /// Sends `text` and returns what comes back (as many bytes), or nil at end of stream or timeout.
    func echo(_ text: String) -> String? {
        let count = text.utf8.count
        guard (try? send(text)) != nil else { return nil }
        while buffered.count < count {
            guard (try? fill()) == true else { return nil }
        }
        return String(decoding: take(count), as: UTF8.self)
    }

    /// Waits (up to the receive timeout) for the server to close: true at end of stream or reset.
    func closedByServer() -> Bool { (try? isClosedByPeer()) ?? false }
}
