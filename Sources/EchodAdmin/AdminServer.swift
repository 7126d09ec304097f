import CEchodLinux
import CHTTPParser
import EchodEventLoop
import EchodSystem
import Glibc
import Logging

/// One HTTP/1.1 server on one `EventLoop`: accepts on `listenerFD` through the loop's `Acceptor` and answers each
/// request with `route`, on the loop thread.
///
/// It is meant for a handful of health checkers and one metrics scraper, so it is small and defensive rather than
/// fast: requests are parsed by nodejs/http-parser (no allocation, decades of fuzzing), one request per connection
/// is in flight at a time (pipelined requests wait in the input buffer and are answered in order, and reading stops
/// while a response is being written), and every connection is bounded in memory (`Limits.maxHeaderBytes`) and in
/// time (`Limits.requestTimeout`). Malformed input gets 400, over-long headers 431, a too-slow sender 408, a body
/// over `Limits.maxBodyBytes` 413, and then a graceful close (write side shut, input drained for a short while so
/// that the peer reads the error instead of a reset).
///
/// Thread confinement: create it, call `stop()` and let the route run on the loop's thread (create it inside
/// `loop.execute { }`, or before the loop runs). The listening descriptor belongs to the caller, who closes it
/// after `stop()`.
///
/// Descriptor exhaustion: when the process is out of descriptors (the echo side may have used them all), the
/// loop's `Acceptor` pauses with back-off. The server keeps one spare descriptor (`/dev/null`) for that case: when
/// accepting fails for lack of descriptors it frees the spare, accepts one admin connection into it and serves it,
/// so that `/readyz` can still say 503 (and `/livez` 200) instead of timing out. Best effort: another thread may
/// take the freed descriptor first.
package final class AdminServer: @unchecked Sendable {
    /// Bounds on each connection. The defaults are the production values; tests shorten the timeout.
    package struct Limits: Sendable {
        /// Request line plus headers, in bytes; more gets 431.
        package var maxHeaderBytes: Int = 8 * 1024
        /// Request bodies are read and thrown away up to this many bytes; more gets 413.
        package var maxBodyBytes: Int = 8 * 1024
        /// Time to receive a complete request (from the connection's start or the previous response), and to have
        /// a response taken by the peer. A partial request then gets 408; an idle keep-alive connection is closed.
        package var requestTimeout: Duration = .seconds(10)
        /// Open admin connections at most. A new connection beyond it displaces the idle or incomplete one whose
        /// deadline comes first; it is closed at once only when every open one is writing a response.
        package var maxConnections: Int = 64
        /// After an error response or `Connection: close`, how long to wait for the peer's end of stream before
        /// closing anyway.
        package var lingerTimeout: Duration = .seconds(2)

        package init(
            maxHeaderBytes: Int = 8 * 1024, maxBodyBytes: Int = 8 * 1024, requestTimeout: Duration = .seconds(10), maxConnections: Int = 64,
            lingerTimeout: Duration = .seconds(2)
        ) {
            self.maxHeaderBytes = maxHeaderBytes
            self.maxBodyBytes = maxBodyBytes
            self.requestTimeout = requestTimeout
            self.maxConnections = maxConnections
            self.lingerTimeout = lingerTimeout
        }
    }

    package let limits: Limits
    let loop: EventLoop
    let logger: Logger
    let route: (AdminRequest) -> AdminResponse
    let settings: UnsafeMutablePointer<http_parser_settings>

    private var acceptor: Acceptor?
    private var connections: [Int32: AdminConnection] = [:]
    private var sweepTimer: LoopTimer?
    private var sweepArmed = false
    private var spareFD: Int32 = -1
    private var stopped = false
    /// A flood of admin connections, or descriptor exhaustion, costs one warning per interval.
    private var limitWarning = RateLimiter(interval: .seconds(10))
    private var pauseWarning = RateLimiter(interval: .seconds(10))

    /// Starts serving on `listenerFD` (a listening, non-blocking socket). Call on `loop`'s thread.
    package convenience init(loop: EventLoop, listenerFD: Int32, logger: Logger, route: @escaping (AdminRequest) -> AdminResponse) throws(IOError) {
        try self.init(loop: loop, listenerFD: listenerFD, logger: logger, limits: Limits(), route: route)
    }

    /// Starts serving on `listenerFD` with the given limits. Call on `loop`'s thread.
    package init(loop: EventLoop, listenerFD: Int32, logger: Logger, limits: Limits, route: @escaping (AdminRequest) -> AdminResponse) throws(IOError) {
        self.loop = loop
        self.logger = logger
        self.limits = limits
        self.route = route
        settings = .allocate(capacity: 1)
        settings.initialize(to: http_parser_settings())
        AdminConnection.installCallbacks(settings)
        sweepTimer = try LoopTimer(loop: loop) { [unowned self] in self.sweep() }
        reserveSpare()
        let acceptor = Acceptor(
            loop: loop, listenerFD: listenerFD,
            onAccept: { [unowned self] fd, peer in
                self.adopt(fd, peer: peer, spare: false)
            },
            onEvent: { [unowned self] event in
                self.acceptorReported(event)
            })
        self.acceptor = acceptor
        do {
            try acceptor.start()
        } catch {
            stop()
            throw error
        }
    }

    deinit {
        // Its acceptor and connections are registered with the loop, which holds them unowned: stop() first.
        assert(stopped, "AdminServer released without stop()")
        settings.deallocate()
    }

    /// Stops accepting and closes every admin connection (in-flight responses are cut). Idempotent; loop thread.
    package func stop() {
        loop.assertInLoop()
        guard !stopped else { return }
        stopped = true
        acceptor?.stop()
        acceptor = nil
        for connection in Array(connections.values) { connection.close() }
        connections.removeAll()
        sweepTimer?.cancel()
        sweepTimer?.close()
        sweepTimer = nil
        if spareFD >= 0 {
            Syscall.close(spareFD)
            spareFD = -1
        }
    }

    /// Open admin connections (loop thread).
    package var connectionCount: Int { connections.count }

    // MARK: Accepting

    private func adopt(_ fd: Int32, peer: SocketAddress, spare: Bool) {
        loop.assertInLoop()
        guard !stopped else {
            Syscall.close(fd)
            return
        }
        if connections.count >= limits.maxConnections {
            // Full: make room by closing the connection the sweep would close first among those with no response
            // in flight (idle keep-alive, half-sent request, lingering), so that slow or idle clients cannot lock
            // a health checker out: refusing the newcomer instead (the old behaviour) let 64 half-sent requests
            // answer every probe with a reset for up to `requestTimeout`. An idle keep-alive client that loses its
            // connection retries on a new one (RFC 9112 §9.6). Only when every connection is writing a response is
            // the newcomer refused.
            guard let victim = oldestEvictable() else {
                Syscall.close(fd)
                warnLimit(peer, evicted: nil)
                if spare { reserveSpare() }
                return
            }
            warnLimit(peer, evicted: victim.peer)
            victim.close()
        }
        Socket.setNoDelay(fd)
        let connection = AdminConnection(fd: fd, peer: peer, server: self, now: Syscall.monotonicNanoseconds())
        connection.usesSpare = spare
        do {
            try loop.register(fd: fd, interest: .read, handler: connection)
        } catch {
            logger.debug("admin: cannot watch a new connection", metadata: ["error": .stringConvertible(error)])
            Syscall.close(fd)
            if spare { reserveSpare() }
            return
        }
        connections[fd] = connection
        if !sweepArmed {
            let period = Self.sweepPeriod(limits)
            sweepTimer?.schedule(after: period, every: period)
            sweepArmed = true
        }
    }

    private func acceptorReported(_ event: Acceptor.Event) {
        switch event {
        case .paused(let error, let retry):
            if let suppressed = pauseWarning.admit(now: Syscall.monotonicNanoseconds()) {
                logger.warning(
                    "admin: accepting paused (out of descriptors or memory); answering from a spare descriptor",
                    metadata: [
                        "error": .stringConvertible(error), "retry_ms": .stringConvertible(retry.nanoseconds / 1_000_000),
                        "suppressed": .stringConvertible(suppressed),
                    ])
            }
            acceptWithSpare()
        case .resumed:
            logger.debug("admin: accepting resumed")
        case .retrying:
            break
        case .transientFailure(let error):
            logger.debug("admin: accept failed for one connection", metadata: ["error": .stringConvertible(error)])
        }
    }

    /// Out of descriptors: give the spare back to the kernel and accept one connection into it.
    private func acceptWithSpare() {
        guard spareFD >= 0, !stopped, let listener = acceptor?.listenerFD else { return }
        Syscall.close(spareFD)
        spareFD = -1
        var peer = sockaddr_storage()
        guard let fd = try? Socket.accept(listener, peer: &peer) else {
            reserveSpare()
            return
        }
        let address = withUnsafePointer(to: &peer) { SocketAddress($0) } ?? .unspecified
        adopt(fd, peer: address, spare: true)
    }

    private func reserveSpare() {
        guard spareFD < 0, !stopped else { return }
        if let fd = try? Syscall.open("/dev/null", O_RDONLY) { spareFD = fd }
    }

    /// The open connection with no response in flight whose deadline comes first, if any (at most
    /// `maxConnections` to look at, only when the limit is reached).
    private func oldestEvictable() -> AdminConnection? {
        var oldest: AdminConnection?
        for connection in connections.values where connection.isEvictable {
            if oldest == nil || connection.deadline < oldest!.deadline { oldest = connection }
        }
        return oldest
    }

    private func warnLimit(_ peer: SocketAddress, evicted: SocketAddress?) {
        guard let suppressed = limitWarning.admit(now: Syscall.monotonicNanoseconds()) else { return }
        var metadata: Logger.Metadata = [
            "limit": .stringConvertible(limits.maxConnections), "peer": .stringConvertible(peer),
            "suppressed": .stringConvertible(suppressed),
        ]
        if let evicted {
            metadata["evicted"] = .stringConvertible(evicted)
            logger.warning("admin: too many admin connections, closing the oldest idle or incomplete one", metadata: metadata)
        } else {
            logger.warning("admin: too many admin connections, all answering; closing a new one", metadata: metadata)
        }
    }

    // MARK: Connections

    func connectionClosed(_ connection: AdminConnection) {
        loop.assertInLoop()
        connections[connection.fd] = nil
        if connection.usesSpare || spareFD < 0 { reserveSpare() }
        if connections.isEmpty && sweepArmed {
            sweepTimer?.cancel()
            sweepArmed = false
        }
    }

    /// Enforces deadlines. Runs every quarter of the shorter timeout (between 10 ms and 1 s) while connections exist.
    private func sweep() {
        let now = Syscall.monotonicNanoseconds()
        for connection in Array(connections.values) where now >= connection.deadline {
            connection.deadlinePassed(now: now)
        }
        if spareFD < 0 { reserveSpare() }
    }

    static func sweepPeriod(_ limits: Limits) -> Duration {
        min(max(min(limits.requestTimeout, limits.lingerTimeout) / 4, .milliseconds(10)), .seconds(1))
    }

    func log(_ request: AdminRequest, status: Int, peer: SocketAddress) {
        // Health checkers poll every few seconds: per-request lines only at debug level.
        logger.debug(
            "admin request",
            metadata: [
                "method": .string(request.method), "path": .string(request.path), "status": .stringConvertible(status),
                "peer": .stringConvertible(peer),
            ])
    }
}
