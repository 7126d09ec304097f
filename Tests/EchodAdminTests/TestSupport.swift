import EchodAdmin
import EchodEventLoop
import EchodSystem
import EchodTestSupport
import Logging

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

func withAdmin(
    limits: AdminServer.Limits = AdminServer.Limits(), route: (@Sendable (AdminRequest) -> AdminResponse)? = nil,
    _ body: (RunningAdmin) throws -> Void
) throws {
    let admin = try RunningAdmin(limits: limits, route: route)
    defer { admin.shutdown() }
    try body(admin)
}

/// HTTP/1.1 responses as the admin tests read them off a ``TestClient``.
struct Response {
    var status: Int
    var statusLine: String
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? { headers[name.lowercased()] }
}

extension TestClient {
    /// Reads one response; `head` for a response to HEAD (no body whatever Content-Length says).
    func readResponse(head: Bool = false) throws -> Response {
        let end = Array("\r\n\r\n".utf8)
        var headerEnd = buffered.firstRange(of: end)
        while headerEnd == nil {
            guard try fill() else { throw TestFailure("connection closed before a complete response (\(buffered.count) bytes)") }
            headerEnd = buffered.firstRange(of: end)
        }
        let headText = String(decoding: take(headerEnd!.lowerBound), as: UTF8.self)
        _ = take(end.count)
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
        return Response(status: status, statusLine: statusLine, headers: headers, body: take(length))
    }
}

func get(_ path: String, _ extra: String = "") -> String {
    "GET \(path) HTTP/1.1\r\nHost: localhost\r\n\(extra)\r\n"
}
