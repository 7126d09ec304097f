import EchodSystem
import EchodAdmin
import EchodEventLoop
import Glibc
import Logging
import Synchronization

/// A value shared between the test thread and the loop thread.
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

func waitUntil(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Syscall.monotonicNow() + .milliseconds(Int(seconds * 1000))
    while Syscall.monotonicNow() < deadline {
        if condition() { return true }
        usleep(2000)
    }
    return condition()
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// An AdminServer on its own loop thread, listening on 127.0.0.1 on a kernel-chosen port.
final class RunningAdmin: @unchecked Sendable {
    let loop: EventLoop
    let thread: LoopThread
    let listener: Int32
    let port: UInt16
    private let server = Locked<AdminServer?>(nil)
    /// Requests the route saw, and whether each ran on the loop thread.
    let seen = Locked<[(AdminRequest, Bool)]>([])

    init(limits: AdminServer.Limits = AdminServer.Limits(), route: (@Sendable (AdminRequest) -> AdminResponse)? = nil) throws {
        loop = try EventLoop(index: 0)
        thread = try LoopThread(loop: loop, name: "admin-test") { _ in }
        listener = try Socket.listen(on: SocketAddress(host: "127.0.0.1", port: 0)!)
        port = Socket.localAddress(listener)!.port
        let failure = Locked<String?>(nil)
        let done = Locked(false)
        let loop = self.loop
        let listener = self.listener
        let seen = self.seen
        let server = self.server
        let route = route ?? RunningAdmin.defaultRoute
        loop.execute {
            do throws(IOError) {
                var logger = Logger(label: "admin-test")
                logger.logLevel = .critical
                server.value = try AdminServer(loop: loop, listenerFD: listener, logger: logger, limits: limits) { request in
                    seen.update { $0.append((request, loop.inLoopThread)) }
                    return route(request)
                }
            } catch {
                failure.value = "\(error)"
            }
            done.value = true
        }
        guard waitUntil(5, { done.value }) else { throw TestFailure("server did not start") }
        if let failure = failure.value { throw TestFailure(failure) }
    }

    /// Health endpoints with fixed checks, /metrics with a fixed body, 404/405 otherwise.
    static let defaultRoute: @Sendable (AdminRequest) -> AdminResponse = { request in
        AdminRouter(
            live: { [HealthCheck(name: "loop-0", ok: true, detail: "last turn 1 ms ago")] },
            ready: { [HealthCheck(name: "phase", ok: false, detail: "starting")] },
            metrics: { Array("# HELP x_total x\n# TYPE x_total counter\nx_total 1\n".utf8) }
        ).route(request)
    }

    func connectionCount() -> Int {
        let count = Locked(-1)
        let server = self.server
        loop.execute { count.value = server.value?.connectionCount ?? -2 }
        _ = waitUntil { count.value != -1 }
        return count.value
    }

    func shutdown() {
        let done = Locked(false)
        let server = self.server
        let listener = self.listener
        loop.execute {
            server.value?.stop()
            server.value = nil
            Syscall.close(listener)
            done.value = true
        }
        _ = waitUntil { done.value }
        loop.stop()
        thread.join()
    }
}

func withAdmin(limits: AdminServer.Limits = AdminServer.Limits(), route: (@Sendable (AdminRequest) -> AdminResponse)? = nil,
               _ body: (RunningAdmin) throws -> Void) throws {
    let admin = try RunningAdmin(limits: limits, route: route)
    defer { admin.shutdown() }
    try body(admin)
}

/// A blocking loopback client with a receive timeout.
final class Client {
    let fd: Int32
    private var buffered: [UInt8] = []

    init(port: UInt16, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket failed") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let address = SocketAddress(host: "127.0.0.1", port: port)!
        let rc = address.withSockAddr { Glibc.connect(fd, $0, $1) }
        guard rc == 0 else {
            Glibc.close(fd)
            throw TestFailure("connect failed: errno \(errno)")
        }
    }

    deinit { Glibc.close(fd) }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw TestFailure("send failed: errno \(errno)") }
            offset += n
        }
    }

    /// Reads more; returns false at end of stream (or on a reset), throws on timeout.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 {
            buffered.append(contentsOf: chunk[0..<n])
            return true
        }
        if n == 0 { return false }
        if errno == EAGAIN || errno == EWOULDBLOCK { throw TestFailure("receive timed out") }
        return false  // ECONNRESET and the like: the stream is over
    }

    struct Response {
        var status: Int
        var statusLine: String
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? { headers[name.lowercased()] }
    }

    /// Reads one response; `head` for a response to HEAD (no body whatever Content-Length says).
    func readResponse(head: Bool = false) throws -> Response {
        var headerEnd: Int?
        while headerEnd == nil {
            headerEnd = Self.find([13, 10, 13, 10], in: buffered)
            if headerEnd == nil {
                guard try fill() else { throw TestFailure("connection closed before a complete response (\(buffered.count) bytes)") }
            }
        }
        let headText = String(decoding: buffered[0..<headerEnd!], as: UTF8.self)
        buffered.removeFirst(headerEnd! + 4)
        var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0] == "HTTP/1.1", let status = Int(parts[1]) else { throw TestFailure("bad status line: \(statusLine)") }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw TestFailure("bad header line: \(line)") }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingPrefix(" ").description
        }
        let length = head ? 0 : Int(headers["content-length"] ?? "0") ?? 0
        while buffered.count < length {
            guard try fill() else { throw TestFailure("connection closed inside a body") }
        }
        let body = Array(buffered[0..<length])
        buffered.removeFirst(length)
        return Response(status: status, statusLine: statusLine, headers: headers, body: body)
    }

    /// True when the server has closed the connection (end of stream or reset) with nothing more sent.
    func isClosedByPeer() throws -> Bool {
        if !buffered.isEmpty { return false }
        return try !fill() && buffered.isEmpty
    }

    /// Whatever arrives until the server closes.
    func readToEnd() throws -> [UInt8] {
        while try fill() {}
        defer { buffered.removeAll() }
        return buffered
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }
}

func get(_ path: String, _ extra: String = "") -> String {
    "GET \(path) HTTP/1.1\r\nHost: localhost\r\n\(extra)\r\n"
}
