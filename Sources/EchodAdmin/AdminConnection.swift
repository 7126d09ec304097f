import CEchodLinux
import CHTTPParser
import EchodEventLoop
import EchodSystem
import Glibc

/// One admin connection: http-parser state, a small input buffer, the response being written. Loop thread only.
///
/// States: `reading` a request (interest: read) → `writing` its response (interest: write while the socket is
/// full; no reading meanwhile, so pipelined requests wait in the kernel) → back to `reading` (keep-alive), or
/// `lingering` (write side shut, input discarded until the peer's end of stream or `lingerTimeout`) → closed.
final class AdminConnection: EventHandler {
    enum State { case reading, writing, lingering, closed }

    let fd: Int32
    let peer: SocketAddress
    unowned let server: AdminServer
    /// Accepted into the spare descriptor during exhaustion: the spare is re-reserved when this one closes.
    var usesSpare = false
    private(set) var state = State.reading
    /// Monotonic nanoseconds by which the current phase must be over (see `AdminServer.Limits.requestTimeout`).
    private(set) var deadline: Int64

    private let parser: UnsafeMutablePointer<http_parser>
    private static let inputCapacity = 4096
    private let input: UnsafeMutableRawPointer
    private var inputCount = 0
    private var interest: Interest = .read

    // The request being parsed (filled by the parser callbacks).
    private var target: [UInt8] = []
    private var receivedForRequest = 0
    private var headerBytes = 0
    private var headersComplete = false
    private var messageComplete = false
    private var headersTooLarge = false
    private var bodyBytes = 0
    private var bodyTooLarge = false
    private var requestKeepAlive = true
    private var methodCode: UInt32 = 0
    private var httpMajor: UInt16 = 1
    private var httpMinor: UInt16 = 1

    // The response being written.
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var closeAfterWrite = false

    init(fd: Int32, peer: SocketAddress, server: AdminServer, now: Int64) {
        self.fd = fd
        self.peer = peer
        self.server = server
        deadline = now + server.limits.requestTimeout.nanoseconds
        parser = .allocate(capacity: 1)
        input = .allocate(byteCount: Self.inputCapacity, alignment: 16)
        super.init()
        http_parser_init(parser, HTTP_REQUEST)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        parser.deallocate()
        input.deallocate()
    }

    // MARK: Events

    override func handleEvent(fd: Int32, events: UInt32) {
        // The loop calls handlers without retaining them, and close() drops the server's reference, the last one:
        // hold one of our own until this event is handled. `withExtendedLifetime(self)` cannot, since `self` is a
        // guaranteed parameter it adds no retain, and optimised builds freed the connection inside its close().
        let retained = Unmanaged.passRetained(self)
        defer { retained.release() }
        if events & EventBits.error != 0 {
            close()
            return
        }
        switch state {
        case .reading:
            readRequests()
        case .writing:
            flush()
            // The response is out: answer what was pipelined behind it before reading more.
            if state == .reading && inputCount > 0 { parseInput() }
        case .lingering:
            discardInput()
        case .closed:
            break
        }
    }

    /// No response is in flight: waiting for (the rest of) a request, or lingering after the last response. Such a
    /// connection may be closed to make room for a new one (`AdminServer` at its connection limit).
    var isEvictable: Bool { state == .reading || state == .lingering }

    /// The sweep found this connection past its deadline.
    func deadlinePassed(now: Int64) {
        withExtendedLifetime(self) {
            if state == .reading {
                // Bytes already in the socket count as received, though their readiness event may not have been
                // handled yet (a busy loop's batch can hold the sweep's timer first): read them.
                // A request they complete is answered (which sets a new deadline); a partial one gets its 408 below
                // instead of a silent close.
                readRequests()
                if deadline > now { return }
            }
            switch state {
            case .reading where receivedForRequest > 0 || inputCount > 0:
                fail(408, "request timeout: the request was not received in time")
            case .reading, .writing, .lingering:
                close()
            case .closed:
                break
            }
        }
    }

    func close() {
        guard state != .closed else { return }
        state = .closed
        server.loop.deregister(fd: fd, willClose: true)
        Syscall.close(fd)
        server.connectionClosed(self)
    }

    // MARK: Reading and parsing

    private func readRequests() {
        // A few reads per wake-up at most: the loop is level-triggered and comes back for the rest.
        for _ in 0..<4 {
            let free = Self.inputCapacity - inputCount
            if free == 0 {
                // Cannot happen (input is parsed as it arrives), but never spin on a full buffer.
                fail(431, "request header fields too large")
                return
            }
            let result: IOResult
            do {
                result = try Syscall.read(fd, input + inputCount, free)
            } catch {
                close()
                return
            }
            switch result {
            case .wouldBlock:
                return
            case .processed(0):
                // End of stream: a half-received request can never be completed; a finished one was answered.
                close()
                return
            case .processed(let n):
                inputCount += n
                receivedForRequest += n
                parseInput()
                if state != .reading { return }
            }
        }
    }

    /// Feeds buffered input to the parser, answering each complete request in turn.
    private func parseInput() {
        while state == .reading && inputCount > 0 {
            let headersBefore = headersComplete
            // While the headers are incomplete the parser sees at most one byte more than the header limit, so the
            // limit is exact whatever the read sizes (http-parser's own cap is a compile-time 80 KiB).
            let offered = headersBefore ? inputCount : min(inputCount, server.limits.maxHeaderBytes - headerBytes + 1)
            let consumed = input.withMemoryRebound(to: CChar.self, capacity: offered) {
                http_parser_execute(parser, server.settings, $0, offered)
            }
            if !headersBefore && !headersComplete { headerBytes += consumed }
            let code = parser.pointee.http_errno
            consume(consumed)
            if headersTooLarge {
                fail(431, "request header fields too large (limit \(server.limits.maxHeaderBytes) bytes)")
                return
            }
            if bodyTooLarge {
                fail(413, "request body too large (limit \(server.limits.maxBodyBytes) bytes)")
                return
            }
            if messageComplete {
                http_parser_pause(parser, 0)
                respond()
                continue  // pipelined requests left in the buffer are parsed once the response is out
            }
            if code != HPE_OK.rawValue {
                fail(400, "bad request: \(String(cString: http_errno_description(http_errno(rawValue: code))))")
                return
            }
            if !headersComplete && headerBytes > server.limits.maxHeaderBytes {
                fail(431, "request header fields too large (limit \(server.limits.maxHeaderBytes) bytes)")
                return
            }
            if consumed == 0 { return }  // nothing more the parser will take now (does not happen without error)
        }
    }

    private func consume(_ n: Int) {
        guard n > 0 else { return }
        if n >= inputCount {
            inputCount = 0
        } else {
            (input).copyMemory(from: input + n, byteCount: inputCount - n)
            inputCount -= n
        }
    }

    // Parser callbacks (C function pointers: they capture nothing and find the connection through `data`).

    static func installCallbacks(_ settings: UnsafeMutablePointer<http_parser_settings>) {
        settings.pointee.on_message_begin = { p in
            AdminConnection.from(p).messageBegan()
            return 0
        }
        settings.pointee.on_url = { p, at, length in
            AdminConnection.from(p).appendTarget(at, length)
        }
        settings.pointee.on_headers_complete = { p in
            AdminConnection.from(p).headersDone()
        }
        settings.pointee.on_body = { p, _, length in
            AdminConnection.from(p).bodyReceived(length)
        }
        settings.pointee.on_message_complete = { p in
            AdminConnection.from(p).messageComplete = true
            // Stop here: the rest of the buffer (a pipelined request) waits until this one is answered.
            http_parser_pause(p, 1)
            return 0
        }
    }

    @inline(__always)
    private static func from(_ p: UnsafeMutablePointer<http_parser>?) -> AdminConnection {
        Unmanaged<AdminConnection>.fromOpaque(p!.pointee.data).takeUnretainedValue()
    }

    private func messageBegan() {
        target.removeAll(keepingCapacity: true)
        headersComplete = false
        messageComplete = false
        bodyBytes = 0
    }

    private func appendTarget(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        guard let at else { return 0 }
        if target.count + length > server.limits.maxHeaderBytes {
            headersTooLarge = true
            return 1
        }
        at.withMemoryRebound(to: UInt8.self, capacity: length) {
            target.append(contentsOf: UnsafeBufferPointer(start: $0, count: length))
        }
        return 0
    }

    private func headersDone() -> Int32 {
        headersComplete = true
        methodCode = parser.pointee.method
        httpMajor = parser.pointee.http_major
        httpMinor = parser.pointee.http_minor
        requestKeepAlive = http_should_keep_alive(parser) != 0 && parser.pointee.upgrade == 0
        if parser.pointee.content_length != UInt64.max && parser.pointee.content_length > UInt64(server.limits.maxBodyBytes) {
            bodyTooLarge = true
            return -1
        }
        return 0
    }

    private func bodyReceived(_ length: Int) -> Int32 {
        bodyBytes += length
        if bodyBytes > server.limits.maxBodyBytes {
            bodyTooLarge = true
            return 1
        }
        return 0
    }

    // MARK: Responding

    private func respond() {
        let methodName = String(cString: http_method_str(http_method(rawValue: methodCode)))
        let (path, query) = AdminRequest.splitTarget(String(decoding: target, as: UTF8.self))
        // Upgrade requests (and CONNECT) leave non-HTTP bytes behind: answer and close.
        let keepAlive = requestKeepAlive && parser.pointee.upgrade == 0
        let request = AdminRequest(method: methodName, path: path, query: query, keepAlive: keepAlive)
        let response: AdminResponse
        if httpMajor != 1 {
            response = .text(505, "HTTP/\(httpMajor).\(httpMinor) is not supported; use HTTP/1.1")
        } else {
            response = server.route(request)
        }
        server.log(request, status: response.status, peer: peer)
        let http10 = httpMajor == 1 && httpMinor == 0
        let close = !keepAlive || httpMajor != 1
        // Ready for the next request (pipelined bytes already buffered count towards it).
        messageComplete = false
        headersComplete = false
        headerBytes = 0
        receivedForRequest = inputCount
        startResponse(response.serialize(keepAlive: !close, http10: http10, omitBody: methodName == "HEAD"), closeAfter: close)
    }

    /// Answers with an error and closes: the parser cannot be trusted to find the next request after it.
    private func fail(_ status: Int, _ message: String) {
        let request = AdminRequest(
            method: methodCode == 0 && !headersComplete ? "-" : String(cString: http_method_str(http_method(rawValue: methodCode))),
            path: target.isEmpty ? "-" : String(decoding: target, as: UTF8.self), keepAlive: false)
        server.log(request, status: status, peer: peer)
        inputCount = 0
        startResponse(AdminResponse.text(status, message).serialize(keepAlive: false, http10: false, omitBody: false), closeAfter: true)
    }

    private func startResponse(_ bytes: [UInt8], closeAfter: Bool) {
        output = bytes
        outputOffset = 0
        closeAfterWrite = closeAfter
        state = .writing
        // The peer has this long to take the response.
        deadline = Syscall.monotonicNanoseconds() + server.limits.requestTimeout.nanoseconds
        flush()
    }

    private func flush() {
        while outputOffset < output.count {
            let result: IOResult
            do {
                result = try output.withUnsafeBytes { raw throws(IOError) in
                    try Syscall.write(fd, raw.baseAddress! + outputOffset, raw.count - outputOffset)
                }
            } catch {
                close()
                return
            }
            switch result {
            case .wouldBlock:
                setInterest(.write)
                return
            case .processed(let n):
                outputOffset += n
            }
        }
        output.removeAll(keepingCapacity: output.capacity <= 64 * 1024)
        outputOffset = 0
        if closeAfterWrite {
            beginLinger()
        } else {
            state = .reading
            deadline = Syscall.monotonicNanoseconds() + server.limits.requestTimeout.nanoseconds
            setInterest(.read)
        }
    }

    /// Shuts the write side and waits briefly for the peer to close, so that unread input does not turn our close
    /// into a reset that would destroy the response before the peer reads it.
    private func beginLinger() {
        state = .lingering
        Syscall.shutdown(fd, Int32(SHUT_WR))
        inputCount = 0
        deadline = Syscall.monotonicNanoseconds() + server.limits.lingerTimeout.nanoseconds
        setInterest(.read)
    }

    private func discardInput() {
        for _ in 0..<4 {
            switch try? Syscall.read(fd, input, Self.inputCapacity) {
            case .wouldBlock?:
                return
            case .processed(let n)? where n > 0:
                continue
            default:
                close()
                return
            }
        }
    }

    private func setInterest(_ wanted: Interest) {
        guard wanted != interest, state != .closed else { return }
        do {
            try server.loop.modify(fd: fd, interest: wanted)
            interest = wanted
        } catch {
            close()
        }
    }
}
