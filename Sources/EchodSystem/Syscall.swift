import CEchodLinux
import Glibc

/// Thin wrappers around the Linux calls echod makes, in the style of swift-system: typed errors (``IOError``: the
/// call and its errno), EINTR retried, EAGAIN turned into `IOResult.wouldBlock` where it is an expected outcome.
/// The event loop, the log writer, the config reader, systemd notification, the probe and the load generator all
/// call the kernel through this module; none of them handles EINTR itself. (apple/swift-system is not used: it
/// has no sockets, epoll, eventfd, timerfd or signalfd, and two styles of wrapper side by side would be two
/// concepts for one.)
package enum Syscall {
    /// `read(2)` on a non-blocking descriptor. The corresponding C function is `read`.
    @inline(__always)
    package static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(IOError) -> IOResult {
        while true {
            let n = Glibc.read(fd, buffer, count)
            if n >= 0 { return .processed(n) }
            let code = echod_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw IOError("read", errno: code)
        }
    }

    /// `recv(2)` with `MSG_PEEK` on a non-blocking socket: copies what is waiting without taking it, so that the next
    /// read returns the same bytes. Used where a reader must not consume past a boundary it cannot know in advance (the
    /// end of a PROXY protocol header). `.processed(0)` is end of file.
    package static func peek(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(IOError) -> IOResult {
        while true {
            let n = Glibc.recv(fd, buffer, count, Int32(MSG_PEEK))
            if n >= 0 { return .processed(n) }
            let code = echod_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw IOError("recv", errno: code)
        }
    }

    /// `write(2)` on a non-blocking descriptor. The corresponding C function is `write`.
    @inline(__always)
    package static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(IOError) -> IOResult {
        while true {
            let n = Glibc.write(fd, buffer, count)
            if n >= 0 { return .processed(n) }
            let code = echod_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw IOError("write", errno: code)
        }
    }

    /// Writes all of `bytes` to `fd`, blocking or not, for the cold paths (log sink, stderr, stdout, files):
    /// EINTR retried; short writes continued; EAGAIN on a non-blocking descriptor (a stderr pipe inherited as
    /// O_NONBLOCK) waits for POLLOUT in one-second slices, asking `shouldAbandon` between them so that a shutdown can
    /// give up on a reader that never comes back. Never for the echo path, which must not block.
    package static func writeAll(
        _ fd: Int32, _ bytes: UnsafeRawBufferPointer, shouldAbandon: () -> Bool = { false }
    ) -> WriteOutcome {
        guard var pointer = bytes.baseAddress else { return .written }
        var remaining = bytes.count
        while remaining > 0 {
            let n = Glibc.write(fd, pointer, remaining)
            if n > 0 {
                pointer += n
                remaining -= n
                continue
            }
            if n == 0 { continue }  // not expected for count > 0; try again
            let code = echod_errno()
            switch code {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                while true {
                    if shouldAbandon() { return .abandoned }
                    do throws(IOError) {
                        // Writable, or POLLERR/POLLHUP which the next write reports.
                        if try poll(fd, events: Int16(POLLOUT), timeoutMilliseconds: 1000) != 0 { break }
                    } catch {
                        return .failed(error)
                    }
                }
            default:
                return .failed(IOError("write", errno: code))
            }
        }
        return .written
    }

    /// `poll(2)` on one descriptor: the returned events, 0 on timeout. EINTR returns 0 too, so that a caller with a
    /// deadline recomputes what is left and polls again. A negative timeout waits without limit.
    package static func poll(_ fd: Int32, events: Int16, timeoutMilliseconds: Int32) throws(IOError) -> Int16 {
        var pfd = pollfd(fd: fd, events: events, revents: 0)
        let n = Glibc.poll(&pfd, 1, timeoutMilliseconds)
        if n > 0 { return pfd.revents }
        if n == 0 { return 0 }
        let code = echod_errno()
        if code == EINTR { return 0 }
        throw IOError("poll", errno: code)
    }

    /// `open(2)`, EINTR retried; `O_CLOEXEC` is always added.
    package static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(IOError) -> Int32 {
        try retryingInterrupts("open") { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// `fstat(2)`.
    package static func fileStatus(_ fd: Int32) throws(IOError) -> stat {
        var info = stat()
        _ = try retryingInterrupts("fstat") { fstat(fd, &info) }
        return info
    }

    /// Reads a blocking descriptor to its end, refusing more than `limit` bytes (nil when the data goes past it).
    /// For small files: the config file, /proc entries.
    package static func readToEnd(_ fd: Int32, limit: Int) throws(IOError) -> [UInt8]? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: min(16 * 1024, limit + 1))
        while true {
            let count = try chunk.withUnsafeMutableBufferPointer { (raw) throws(IOError) -> Int in
                try retryingInterrupts("read") { Glibc.read(fd, raw.baseAddress, raw.count) }
            }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
            if bytes.count > limit { return nil }
        }
    }

    /// `close(2)`. EINTR is not retried: on Linux the descriptor is released even then, and a retry could close
    /// a descriptor another thread has just been given.
    package static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// `shutdown(2)`. Errors (ENOTCONN after a reset) are of no use to the caller and are ignored.
    package static func shutdown(_ fd: Int32, _ how: Int32) {
        _ = Glibc.shutdown(fd, how)
    }

    /// `epoll_create1(EPOLL_CLOEXEC)`.
    package static func epollCreate() throws(IOError) -> Int32 {
        try retryingInterrupts("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    /// `epoll_ctl(2)`.
    package static func epollControl(_ epfd: Int32, _ op: Int32, _ fd: Int32, events: UInt32, data: UInt64) throws(IOError) {
        var event = echod_epoll_event(events, data)
        _ = try retryingInterrupts("epoll_ctl") { epoll_ctl(epfd, op, fd, &event) }
    }

    /// `epoll_wait(2)`; returns 0 when interrupted by a signal so the caller simply turns again.
    @inline(__always)
    package static func epollWait(_ epfd: Int32, _ events: UnsafeMutablePointer<epoll_event>, _ max: Int32, _ timeout: Int32) throws(IOError) -> Int {
        let n = epoll_wait(epfd, events, max, timeout)
        if n >= 0 { return Int(n) }
        let code = echod_errno()
        if code == EINTR { return 0 }
        throw IOError("epoll_wait", errno: code)
    }

    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    package static func eventFD() throws(IOError) -> Int32 {
        try retryingInterrupts("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    /// `timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)`.
    package static func timerFD() throws(IOError) -> Int32 {
        try retryingInterrupts("timerfd_create") { timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC)) }
    }

    /// `timerfd_settime(2)` with a relative first expiry and an optional period (nil = one-shot).
    package static func timerSet(_ fd: Int32, after: Duration, every period: Duration?) throws(IOError) {
        var spec = itimerspec(it_interval: timespec(period ?? .zero), it_value: timespec(after))
        if spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0 { spec.it_value.tv_nsec = 1 }  // 0 would disarm
        _ = try retryingInterrupts("timerfd_settime") { timerfd_settime(fd, 0, &spec, nil) }
    }

    /// Disarms a timerfd.
    package static func timerDisarm(_ fd: Int32) throws(IOError) {
        var spec = itimerspec()
        _ = try retryingInterrupts("timerfd_settime") { timerfd_settime(fd, 0, &spec, nil) }
    }

    /// `signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC)` for the given signals. The caller must block them first.
    package static func signalFD(_ signals: [Int32]) throws(IOError) -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        return try retryingInterrupts("signalfd") { signalfd(-1, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC)) }
    }

    /// Blocks the given signals in the calling thread (and so in every thread it creates afterwards), so that they
    /// are delivered only through a signalfd. The corresponding C function is `pthread_sigmask`.
    package static func blockSignals(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Reads and discards the 8-byte counter of an eventfd or timerfd; returns it (0 when nothing was pending).
    @discardableResult
    package static func drainCounter(_ fd: Int32) -> UInt64 {
        var value: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &value) { Glibc.read(fd, $0.baseAddress, 8) }
        return n == 8 ? value : 0
    }

    /// Adds 1 to an eventfd's counter, waking whoever waits on it. EAGAIN (counter saturated) still means "woken".
    package static func signalEventFD(_ fd: Int32) {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(fd, $0.baseAddress, 8) }
    }

    /// Raises the soft RLIMIT_NOFILE to the hard limit (what Go and systemd do for servers); returns the new soft limit.
    @discardableResult
    package static func raiseFileLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(fileLimitResource, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(fileLimitResource, &limit)
            _ = getrlimit(fileLimitResource, &limit)
        }
        return UInt64(limit.rlim_cur)
    }

    /// The size of a memory page in bytes (`sysconf(_SC_PAGESIZE)`).
    package static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// The soft limit on open descriptors (RLIMIT_NOFILE).
    package static func descriptorLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(fileLimitResource, &limit) == 0 else { return 1024 }
        return UInt64(limit.rlim_cur)
    }

    /// The current monotonic time in nanoseconds (CLOCK_MONOTONIC), without `Duration`'s 128-bit arithmetic (read
    /// twice per loop turn). The one clock of echod's timeouts, rate limits and watchdog: it never jumps with the
    /// wall clock.
    @inline(__always)
    package static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    /// The current monotonic time.
    @inline(__always)
    package static func monotonicNow() -> Duration {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
    }
}

private let fileLimitResource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)

extension timespec {
    init(_ d: Duration) {
        let (seconds, attoseconds) = d.components
        self.init(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
    }
}
