import EchodSystem
import EchodEventLoop
import Glibc

/// What `echod probe` checks.
public enum ProbeTarget: Sendable, Equatable {
    /// An echo listener: send random bytes, expect exactly them back.
    case echo(host: String, port: UInt16)
    /// An HTTP endpoint (the admin `/livez`, `/readyz`): healthy on status 200.
    case http(HTTPURL)
}

/// A plain `http://host[:port][/path][?query]` URL (no TLS, no user info).
public struct HTTPURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    /// Path and query as sent on the request line, e.g. `/readyz?verbose`.
    public var target: String

    public init(host: String, port: UInt16, target: String) {
        self.host = host
        self.port = port
        self.target = target
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "http://\(h):\(port)\(target)"
    }

    /// The `Host` header value.
    var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? h : "\(h):\(port)"
    }
}

/// A command-line value that does not parse.
public struct ProbeUsageError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The probe's settings.
public struct ProbeOptions: Sendable {
    public var target: ProbeTarget
    /// For the whole probe: resolving, connecting and every round trip together.
    public var timeout: Duration
    /// Bytes per echo round trip (random each time).
    public var payloadSize: Int
    /// Round trips (echo: on one connection; HTTP: one request per connection).
    public var count: Int

    public init(target: ProbeTarget, timeout: Duration = .seconds(2), payloadSize: Int = 64, count: Int = 1) {
        self.target = target
        self.timeout = timeout
        self.payloadSize = payloadSize
        self.count = count
    }

    public static let maximumPayloadSize = 16 << 20
}

/// The outcome of one probe: the exit status, a one-line summary and a JSON object.
public struct ProbeResult: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        /// Everything as expected: exit 0.
        case healthy
        /// Connected, but the echo was wrong, short or late, or the HTTP status was not 200: exit 1.
        case unhealthy
        /// Could not resolve or connect (refused, unreachable, timed out): exit 2.
        case unreachable
    }

    public var outcome: Outcome
    /// `echo` or `http`.
    public var mode: String
    /// The target as given: `127.0.0.1:8888`, `localhost:8888` or the URL.
    public var target: String
    /// The address actually connected to, e.g. `[::1]:8888`.
    public var address: String?
    /// Why it failed.
    public var reason: String?
    /// Payload bytes per round trip (echo).
    public var bytes: Int = 0
    /// Completed round trips.
    public var completed: Int = 0
    public var connectMilliseconds: Double?
    /// Each completed round trip (echo: first byte sent to last byte back; HTTP: request sent to response read).
    public var roundTripMilliseconds: [Double] = []
    /// The last HTTP status received.
    public var httpStatus: Int?

    public init(outcome: Outcome, mode: String, target: String) {
        self.outcome = outcome
        self.mode = mode
        self.target = target
    }

    public var exitCode: Int32 {
        switch outcome {
        case .healthy: 0
        case .unhealthy: 1
        case .unreachable: 2
        }
    }

    /// `ok 127.0.0.1:8888 64 bytes in 0.21 ms` / `fail 127.0.0.1:8888: echo mismatch at byte 3 of 64`.
    public var line: String {
        guard outcome == .healthy else { return "fail \(target): \(reason ?? "failed")" }
        let total = roundTripMilliseconds.reduce(0, +)
        if mode == "http" {
            var text = "ok \(target) \(httpStatus ?? 0) in \(ms(total))"
            if roundTripMilliseconds.count > 1 { text = "ok \(target) \(httpStatus ?? 0) x\(roundTripMilliseconds.count) in \(ms(total))" + stats }
            return text
        }
        if roundTripMilliseconds.count > 1 {
            return "ok \(target) \(roundTripMilliseconds.count)x\(bytes) bytes in \(ms(total))" + stats
        }
        return "ok \(target) \(bytes) bytes in \(ms(total))"
    }

    private var stats: String {
        let sorted = roundTripMilliseconds.sorted()
        let avg = sorted.reduce(0, +) / Double(sorted.count)
        return " (min \(ms(sorted.first!)), avg \(ms(avg)), max \(ms(sorted.last!)))"
    }

    private func ms(_ x: Double) -> String { "\(ProbeFormat.fixed(x, 2)) ms" }

    /// One JSON object on one line.
    public var json: String {
        var fields: [(String, String)] = [
            ("ok", outcome == .healthy ? "true" : "false"),
            ("exit_code", String(exitCode)),
            ("mode", ProbeFormat.jsonString(mode)),
            ("target", ProbeFormat.jsonString(target)),
            ("address", address.map(ProbeFormat.jsonString) ?? "null"),
        ]
        if mode == "echo" { fields.append(("bytes", String(bytes))) }
        if let httpStatus { fields.append(("status", String(httpStatus))) }
        fields.append(("count", String(completed)))
        fields.append(("connect_ms", connectMilliseconds.map { ProbeFormat.fixed($0, 3) } ?? "null"))
        if !roundTripMilliseconds.isEmpty {
            let sorted = roundTripMilliseconds.sorted()
            fields.append(("rtt_ms", ProbeFormat.fixed(sorted.reduce(0, +) / Double(sorted.count), 3)))
            fields.append(("rtt_min_ms", ProbeFormat.fixed(sorted.first!, 3)))
            fields.append(("rtt_max_ms", ProbeFormat.fixed(sorted.last!, 3)))
            fields.append(("total_ms", ProbeFormat.fixed(sorted.reduce(0, +), 3)))
        }
        fields.append(("error", reason.map(ProbeFormat.jsonString) ?? "null"))
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }
}

/// `echod probe`: a health-check client for scripts and orchestrators. Blocking sockets with `poll` timeouts, on
/// the calling thread; no event loop needed for one short-lived connection.
public enum Probe {
    /// Runs the probe; never throws: every failure is a result.
    public static func run(_ options: ProbeOptions) -> ProbeResult {
        let deadline = Syscall.monotonicNow() + options.timeout
        switch options.target {
        case .echo(let host, let port):
            return runEcho(host: host, port: port, options: options, deadline: deadline)
        case .http(let url):
            return runHTTP(url, options: options, deadline: deadline)
        }
    }

    // MARK: Echo

    static func runEcho(host: String, port: UInt16, options: ProbeOptions, deadline: Duration) -> ProbeResult {
        let label = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        var result = ProbeResult(outcome: .unreachable, mode: "echo", target: label)
        result.bytes = options.payloadSize
        let connectStart = Syscall.monotonicNow()
        let connection: Connected
        switch connect(host: host, port: port, deadline: deadline) {
        case .failure(let reason):
            result.reason = reason
            return result
        case .success(let c):
            connection = c
        }
        defer { Syscall.close(connection.fd) }
        result.address = connection.address.description
        result.connectMilliseconds = milliseconds(Syscall.monotonicNow() - connectStart)
        result.outcome = .unhealthy

        var rng = SystemRandomNumberGenerator()
        var payload = [UInt8](repeating: 0, count: options.payloadSize)
        var echo = [UInt8](repeating: 0, count: min(options.payloadSize, 65536))
        for _ in 0..<options.count {
            fillRandom(&payload, &rng)
            let start = Syscall.monotonicNow()
            var sent = 0
            var received = 0
            while received < payload.count {
                let remaining = deadline - Syscall.monotonicNow()
                guard remaining > .zero else {
                    result.reason = "timed out after \(describe(options.timeout)) waiting for the echo (got \(received) of \(payload.count) bytes)"
                    return result
                }
                var pfd = pollfd(fd: connection.fd, events: Int16(POLLIN) | (sent < payload.count ? Int16(POLLOUT) : 0), revents: 0)
                let ready = poll(&pfd, 1, pollTimeout(remaining))
                if ready < 0 {
                    if errno == EINTR { continue }
                    result.reason = "poll: \(String(cString: strerror(errno)))"
                    return result
                }
                if ready == 0 { continue }
                if sent < payload.count && pfd.revents & Int16(POLLOUT) != 0 {
                    let n = payload.withUnsafeBytes { send(connection.fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                    if n > 0 {
                        sent += n
                    } else if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                        result.reason = "send failed after \(sent) of \(payload.count) bytes: \(String(cString: strerror(errno)))"
                        return result
                    }
                }
                if pfd.revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
                    let want = min(echo.count, payload.count - received)
                    let n = echo.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, want, Int32(MSG_DONTWAIT)) }
                    if n == 0 {
                        result.reason = "connection closed by the server after \(received) of \(payload.count) echoed bytes"
                        return result
                    }
                    if n < 0 {
                        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                        result.reason = "receive failed after \(received) of \(payload.count) bytes: \(String(cString: strerror(errno)))"
                        return result
                    }
                    for i in 0..<n where echo[i] != payload[received + i] {
                        result.reason = "echo mismatch at byte \(received + i) of \(payload.count) (sent 0x\(hex(payload[received + i])), got 0x\(hex(echo[i])))"
                        return result
                    }
                    received += n
                }
            }
            result.roundTripMilliseconds.append(milliseconds(Syscall.monotonicNow() - start))
            result.completed += 1
        }
        // Nothing more may follow the last echo.
        var extra = [UInt8](repeating: 0, count: 4096)
        let n = extra.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 {
            result.reason = "the server sent \(n) byte(s) more than were echoed"
            return result
        }
        result.outcome = .healthy
        return result
    }

    // MARK: HTTP

    static let maximumResponseBytes = 64 * 1024

    static func runHTTP(_ url: HTTPURL, options: ProbeOptions, deadline: Duration) -> ProbeResult {
        var result = ProbeResult(outcome: .unreachable, mode: "http", target: url.description)
        for _ in 0..<options.count {
            let connectStart = Syscall.monotonicNow()
            let connection: Connected
            switch connect(host: url.host, port: url.port, deadline: deadline) {
            case .failure(let reason):
                result.outcome = .unreachable
                result.reason = reason
                return result
            case .success(let c):
                connection = c
            }
            defer { Syscall.close(connection.fd) }
            result.address = connection.address.description
            if result.connectMilliseconds == nil { result.connectMilliseconds = milliseconds(Syscall.monotonicNow() - connectStart) }
            result.outcome = .unhealthy
            let start = Syscall.monotonicNow()
            let request = Array("GET \(url.target) HTTP/1.1\r\nHost: \(url.hostHeader)\r\nUser-Agent: echod-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n".utf8)
            switch exchange(connection.fd, request: request, deadline: deadline, timeout: options.timeout) {
            case .failure(let failure):
                result.reason = failure.reason
                return result
            case .success(let response):
                result.httpStatus = response.status
                guard response.status == 200 else {
                    let detail = response.firstBodyLine.isEmpty ? "" : ": \(response.firstBodyLine)"
                    result.reason = "status \(response.status)\(detail)"
                    return result
                }
            }
            result.roundTripMilliseconds.append(milliseconds(Syscall.monotonicNow() - start))
            result.completed += 1
        }
        result.outcome = .healthy
        return result
    }

    struct HTTPResponse {
        var status: Int
        var firstBodyLine: String
    }

    /// Sends `request` and reads the response: the status line, headers, and the body (up to 64 KiB) as far as
    /// `Content-Length` or the end of stream says.
    static func exchange(_ fd: Int32, request: [UInt8], deadline: Duration, timeout: Duration) -> Result<HTTPResponse, ProbeFailure> {
        var sent = 0
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        var headerEnd: Int?
        var bodyLength: Int?
        var ended = false
        while true {
            if let end = headerEnd {
                let have = buffer.count - end
                if ended || (bodyLength.map { have >= $0 } ?? false) || have >= maximumResponseBytes { break }
            } else if ended {
                return .failure(ProbeFailure(buffer.isEmpty ? "connection closed without a response" : "connection closed inside the response headers"))
            }
            let remaining = deadline - Syscall.monotonicNow()
            guard remaining > .zero else {
                if headerEnd != nil { break }  // status and headers are in: enough to judge
                return .failure(ProbeFailure("timed out after \(describe(timeout)) waiting for the response"))
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN) | (sent < request.count ? Int16(POLLOUT) : 0), revents: 0)
            let ready = poll(&pfd, 1, pollTimeout(remaining))
            if ready < 0 && errno != EINTR { return .failure(ProbeFailure("poll: \(String(cString: strerror(errno)))")) }
            if ready <= 0 { continue }
            if sent < request.count && pfd.revents & Int16(POLLOUT) != 0 {
                let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                if n > 0 { sent += n } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    return .failure(ProbeFailure("send failed: \(String(cString: strerror(errno)))"))
                }
            }
            if pfd.revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    buffer.append(contentsOf: chunk[0..<n])
                    if headerEnd == nil, let end = find([13, 10, 13, 10], in: buffer) {
                        headerEnd = end + 4
                        bodyLength = contentLength(buffer[0..<end])
                    }
                    if headerEnd == nil && buffer.count > maximumResponseBytes {
                        return .failure(ProbeFailure("response headers larger than \(maximumResponseBytes) bytes"))
                    }
                } else if n == 0 {
                    ended = true
                } else if errno != EAGAIN && errno != EINTR {
                    if headerEnd != nil { ended = true } else {
                        return .failure(ProbeFailure("receive failed: \(String(cString: strerror(errno)))"))
                    }
                }
            }
        }
        let end = headerEnd!
        let head = String(decoding: buffer[0..<end], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n", maxSplits: 1).first ?? ""
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let status = Int(parts[1]) else {
            return .failure(ProbeFailure("not an HTTP response: \(String(statusLine.prefix(80)))"))
        }
        var body = buffer[end...]
        if let length = bodyLength, body.count > length { body = body.prefix(length) }
        let firstLine = String(decoding: body.prefix { $0 != 10 && $0 != 13 }, as: UTF8.self)
        return .success(HTTPResponse(status: status, firstBodyLine: String(firstLine.prefix(200))))
    }

    static func contentLength(_ head: ArraySlice<UInt8>) -> Int? {
        let text = String(decoding: head, as: UTF8.self)
        for line in text.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].lowercased() == "content-length" {
                return Int(line[line.index(after: colon)...].trimmingPrefix(" "))
            }
        }
        return nil
    }

    // MARK: Connecting

    struct Connected {
        var fd: Int32
        var address: SocketAddress
    }

    struct ProbeFailure: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    enum ConnectResult {
        case success(Connected)
        case failure(String)
    }

    /// Resolves `host` (numeric, or a name through getaddrinfo) and tries each address in turn until one accepts
    /// or the deadline passes.
    static func connect(host: String, port: UInt16, deadline: Duration) -> ConnectResult {
        let addresses: [SocketAddress]
        switch resolve(host: host, port: port) {
        case .failure(let reason):
            return .failure(reason)
        case .success(let list):
            addresses = list
        }
        var errors: [String] = []
        for address in addresses {
            let remaining = deadline - Syscall.monotonicNow()
            if remaining <= .zero {
                errors.append("\(address): timed out")
                break
            }
            let attempt: (fd: Int32, connected: Bool)
            do {
                attempt = try Socket.connect(to: address)
            } catch {
                errors.append("\(address): \(String(cString: strerror(error.errno)))")
                continue
            }
            if attempt.connected { return .success(Connected(fd: attempt.fd, address: address)) }
            var pfd = pollfd(fd: attempt.fd, events: Int16(POLLOUT), revents: 0)
            var ready: Int32
            repeat {
                ready = poll(&pfd, 1, pollTimeout(deadline - Syscall.monotonicNow()))
            } while ready < 0 && errno == EINTR
            if ready <= 0 {
                Syscall.close(attempt.fd)
                errors.append("\(address): timed out")
                continue
            }
            if let error = Socket.pendingError(attempt.fd) {
                Syscall.close(attempt.fd)
                errors.append("\(address): \(String(cString: strerror(error.errno)))")
                continue
            }
            return .success(Connected(fd: attempt.fd, address: address))
        }
        return .failure("cannot connect: " + errors.joined(separator: "; "))
    }

    enum ResolveResult {
        case success([SocketAddress])
        case failure(String)
    }

    /// Numeric addresses directly; names through getaddrinfo (TCP, IPv4 and IPv6, in the resolver's order).
    static func resolve(host: String, port: UInt16) -> ResolveResult {
        if let numeric = SocketAddress(host: host, port: port) { return .success([numeric]) }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            return .failure("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var result: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let entry = node {
            if let raw = entry.pointee.ai_addr {
                var storage = sockaddr_storage()
                let length = min(Int(entry.pointee.ai_addrlen), MemoryLayout<sockaddr_storage>.size)
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: length)) }
                if let address = withUnsafePointer(to: &storage, { SocketAddress($0) }), !result.contains(address) {
                    result.append(address)
                }
            }
            node = entry.pointee.ai_next
        }
        return result.isEmpty ? .failure("cannot resolve \(host): no TCP addresses") : .success(result)
    }

    // MARK: Parsing command-line values

    /// `HOST:PORT`, `[IPV6]:PORT` (hostnames allowed).
    public static func parseHostPort(_ text: String) throws(ProbeUsageError) -> (host: String, port: UInt16) {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw ProbeUsageError("\(text): missing ']'") }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ProbeUsageError("\(text): expected [IPV6]:PORT") }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw ProbeUsageError("\(text): expected HOST:PORT") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { throw ProbeUsageError("\(text): put an IPv6 address in brackets, e.g. [::1]:7") }
        }
        guard !host.isEmpty else { throw ProbeUsageError("\(text): the host is empty") }
        guard let port = UInt16(portText), port > 0 else { throw ProbeUsageError("\(text): the port must be 1-65535") }
        return (String(host), port)
    }

    /// `http://host[:port][/path][?query]`.
    public static func parseURL(_ text: String) throws(ProbeUsageError) -> HTTPURL {
        let lower = text.lowercased()
        if lower.hasPrefix("https://") { throw ProbeUsageError("\(text): https is not supported (the admin endpoint is plain HTTP)") }
        guard lower.hasPrefix("http://") else { throw ProbeUsageError("\(text): expected http://HOST:PORT/PATH") }
        let rest = text.dropFirst("http://".count)
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var target = String(rest[authorityEnd...])
        if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        if authority.contains("@") { throw ProbeUsageError("\(text): user info is not supported") }
        guard !authority.isEmpty else { throw ProbeUsageError("\(text): the host is empty") }
        let hasPort = authority.hasPrefix("[") ? authority.contains("]:") : authority.contains(":")
        if hasPort {
            let (host, port) = try parseHostPort(String(authority))
            return HTTPURL(host: host, port: port, target: target)
        }
        var host = String(authority)
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return HTTPURL(host: host, port: 80, target: target)
    }

    /// `2s`, `500ms`, `1.5s`, `250us`, `1m`, or a bare number of seconds.
    public static func parseDuration(_ text: String) throws(ProbeUsageError) -> Duration {
        let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("s", 1), ("m", 60)]
        var number = Substring(text.trimmingPrefix(" "))
        var scale = 1.0
        for (suffix, factor) in units where number.hasSuffix(suffix) {
            number = number.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number), value.isFinite, value > 0 else {
            throw ProbeUsageError("\(text): expected a positive duration such as 2s, 500ms or 1.5s")
        }
        let nanoseconds = value * scale * 1e9
        guard nanoseconds >= 1e6, nanoseconds <= 3600e9 else { throw ProbeUsageError("\(text): must be between 1ms and 1h") }
        return .nanoseconds(Int64(nanoseconds))
    }

    // MARK: Helpers

    static func fillRandom(_ bytes: inout [UInt8], _ rng: inout SystemRandomNumberGenerator) {
        bytes.withUnsafeMutableBytes { raw in
            var i = 0
            while i < raw.count {
                var word = rng.next()
                let n = min(8, raw.count - i)
                withUnsafeBytes(of: &word) { raw.baseAddress!.advanced(by: i).copyMemory(from: $0.baseAddress!, byteCount: n) }
                i += n
            }
        }
    }

    static func pollTimeout(_ remaining: Duration) -> Int32 {
        let ms = (remaining.nanoseconds + 999_999) / 1_000_000
        return Int32(clamping: max(ms, 0))
    }

    static func milliseconds(_ d: Duration) -> Double { Double(d.nanoseconds) / 1e6 }

    static func describe(_ d: Duration) -> String {
        let ns = d.nanoseconds
        if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000) s" }
        return "\(ProbeFormat.fixed(Double(ns) / 1e6, 0)) ms"
    }

    static func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var i = 0
        while i <= haystack.count - needle.count {
            if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}

/// Number and string formatting without Foundation.
enum ProbeFormat {
    /// `x` with exactly `digits` decimals (half away from zero), e.g. `fixed(0.214, 2)` = `0.21`.
    static func fixed(_ x: Double, _ digits: Int) -> String {
        guard x.isFinite else { return "0" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(x) * scale).rounded()
        guard scaled < 9e18 else { return String(x) }
        let n = UInt64(scaled)
        let integer = n / UInt64(scale)
        var text = (x < 0 && n != 0 ? "-" : "") + String(integer)
        if digits > 0 {
            var fraction = String(n % UInt64(scale))
            while fraction.count < digits { fraction = "0" + fraction }
            text += "." + fraction
        }
        return text
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += "\\u00" + Probe.hex(UInt8(scalar.value))
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
