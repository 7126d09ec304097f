// libFuzzer target: the admin HTTP request path (Fuzz/README.md). One AdminServer (production limits, the daemon's
// router shape) runs on its own loop thread on 127.0.0.1; each input is sent over a new connection, in as many
// writes as its first byte says, then the write side is shut and the responses are read to the end of stream.
// The server must answer only with HTTP/1.1 status lines and close by itself: a hang, a crash on the loop thread or
// a malformed answer is a finding.
import EchodAdmin
import EchodEventLoop
import EchodSystem
import FuzzSupport
import Glibc
import Logging

/// The server, started on the first input and kept for the whole run (as the daemon keeps it).
let server: (admin: AdminServer, thread: LoopThread, address: SocketAddress) = {
    do throws(IOError) {
        let loop = try EventLoop(index: 0)
        let listener = try Socket.listen(on: SocketAddress(host: "127.0.0.1", port: 0)!)
        var logger = Logger(label: "fuzz-admin")
        logger.logLevel = .critical
        // Created before its loop runs (AdminServer allows that); kept in this global for the life of the process.
        let admin = try AdminServer(loop: loop, listenerFD: listener, logger: logger) { request in
            AdminRouter(
                live: { [HealthCheck(name: "loop-0", ok: true, detail: "last turn 1 ms ago")] },
                ready: { [HealthCheck(name: "phase", ok: false, detail: "starting")] },
                metrics: { Array("# HELP x_total x\n# TYPE x_total counter\nx_total 1\n".utf8) }
            ).route(request)
        }
        let thread = try LoopThread(loop: loop, name: "fuzz-admin") { error in
            if let error { fatalError("admin loop ended: \(error)") }
        }
        return (admin, thread, Socket.localAddress(listener)!)
    } catch {
        fatalError("cannot start the admin server: \(error)")
    }
}()

/// How long the server may take to answer and close; far beyond what any input needs on loopback.
let patienceMilliseconds: Int32 = 5_000

@main
enum FuzzAdmin: FuzzTarget {
    /// The server thread allocates and frees on its own schedule, so libFuzzer's per-input malloc/free balance says
    /// nothing here, and its leak check (which re-runs an input with every thread stopped) stalled the server.
    static let flags = ["-detect_leaks=0"]

    static func fuzz(_ input: UnsafeRawBufferPointer) {
        guard let first = input.first else { return }
        let request = UnsafeRawBufferPointer(rebasing: input.dropFirst())
        let writes = Int(first % 16) + 1
        let fd = connectToServer()
        defer { Syscall.close(fd) }
        var response: [UInt8] = []
        let chunk = max(1, (request.count + writes - 1) / writes)
        var offset = 0
        while offset < request.count {
            let end = min(request.count, offset + chunk)
            send(UnsafeRawBufferPointer(rebasing: request[offset..<end]), fd, readingInto: &response)
            offset = end
        }
        Syscall.shutdown(fd, Int32(SHUT_WR))
        while readSome(fd, into: &response) {}
        checkResponses(response, sent: request.count)
    }
}

func connectToServer() -> Int32 {
    do throws(IOError) {
        let (fd, connected) = try Socket.connect(to: server.address)
        if !connected {
            if wait(fd, for: Int16(POLLOUT)) == 0 { fatalError("connecting to the admin server took over \(patienceMilliseconds) ms") }
            if let error = Socket.pendingError(fd) { throw error }
        }
        // A reset instead of a FIN when the harness closes before the end of stream (the server closed after an
        // error response while input was still being sent), so that nothing lingers on the server's side. After a
        // normal end of stream this side is already in TIME_WAIT, whose ports loopback reuses (tcp_tw_reuse).
        try Syscall.setSocketOption(fd, SOL_SOCKET, SO_LINGER, linger(l_onoff: 1, l_linger: 0), "setsockopt(SO_LINGER)")
        return fd
    } catch {
        fatalError("cannot connect to the admin server: \(error)")
    }
}

/// Sends all of `bytes`, reading responses meanwhile whenever the socket is full (the server stops reading while
/// its answer is unread, so not reading here could deadlock both).
func send(_ bytes: UnsafeRawBufferPointer, _ fd: Int32, readingInto response: inout [UInt8]) {
    var sent = 0
    while sent < bytes.count {
        switch try? Syscall.send(fd, bytes.baseAddress! + sent, bytes.count - sent) {
        case .processed(let n)?:
            sent += n
        case .wouldBlock?:
            guard readSome(fd, into: &response, events: Int16(POLLIN | POLLOUT)) else { return }
        case nil:
            return  // the server closed (after an error response): what it said is checked below
        }
    }
}

/// Waits for the socket and reads what is there; false at the end of stream or a reset.
func readSome(_ fd: Int32, into response: inout [UInt8], events: Int16 = Int16(POLLIN)) -> Bool {
    let ready = wait(fd, for: events)
    if ready == 0 { fatalError("the admin server neither answered nor closed within \(patienceMilliseconds) ms") }
    if ready & Int16(POLLIN | POLLHUP | POLLERR) == 0 { return true }
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    let result = buffer.withUnsafeMutableBytes { try? Syscall.read(fd, $0.baseAddress!, $0.count) }
    switch result {
    case .processed(let n)? where n > 0:
        response += buffer[..<n]
        return true
    case .wouldBlock?:
        return true
    default:
        return false
    }
}

/// Polls until `events` (or an error or hang-up) or until `patienceMilliseconds` have passed; 0 then. `Syscall.poll`
/// returns 0 for an interrupt as for a timeout, and libFuzzer's `-timeout` watchdog sends SIGALRM every few seconds:
/// taking that 0 for the end of the patience was this harness's "stall" after tens of thousands of inputs.
func wait(_ fd: Int32, for events: Int16) -> Int16 {
    let end = Syscall.monotonicNow() + .milliseconds(Int64(patienceMilliseconds))
    while true {
        let left = end - Syscall.monotonicNow()
        guard left > .zero else { return 0 }
        let milliseconds = Int32((left / .milliseconds(1)).rounded(.up))  // at most patienceMilliseconds
        do throws(IOError) {
            let ready = try Syscall.poll(fd, events: events, timeoutMilliseconds: milliseconds)
            if ready != 0 { return ready }
        } catch {
            fatalError("poll: \(error)")
        }
    }
}

/// Every answer starts with an HTTP/1.1 status line with a three-digit code; nothing was answered to nothing.
func checkResponses(_ response: [UInt8], sent: Int) {
    if sent == 0 && !response.isEmpty { fatalError("an answer to an empty connection") }
    guard !response.isEmpty else { return }
    let prefix = Array("HTTP/1.1 ".utf8)
    guard response.count >= prefix.count + 3, response.starts(with: prefix),
        response[prefix.count..<prefix.count + 3].allSatisfy({ (0x30...0x39).contains($0) })
    else {
        fatalError("not an HTTP/1.1 status line: \(String(decoding: response.prefix(80), as: UTF8.self))")
    }
}
