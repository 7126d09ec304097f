import EchodSystem
import Glibc

/// Service-manager notifications (`sd_notify(3)`): readiness, status, reload, stop, watchdog keep-alives.
///
/// Why this speaks the protocol itself instead of calling libsystemd's `sd_notify`:
/// - `sd_notify` reads `NOTIFY_SOCKET` from the process environment on every call. The notifier is configured from
///   an explicit environment dictionary instead, so what it sends to is decided once, at construction, and tests can
///   point it at their own receiver without `setenv` (which is not thread-safe, and tests run in parallel).
/// - The protocol is one datagram of `KEY=VALUE` lines sent to the AF_UNIX address in `NOTIFY_SOCKET` (a path, or
///   `@name` for the abstract namespace); systemd documents it as a stable interface and publishes a reference
///   implementation for daemons that do not link libsystemd. The kernel attaches the sender's credentials, which is
///   what `NotifyAccess=main` checks, so nothing else is needed. About 40 lines, no libsystemd surface to audit.
/// - The send is bounded: a send timeout (`SO_SNDTIMEO`, 250 ms) keeps a watchdog ping from an event loop from
///   waiting on a stuck receiver; `sd_notify` sends blocking without a bound.
/// `vsock:` addresses (systemd 254+, for virtual machines) are not supported: the notifier is then disabled.
///
/// With `NOTIFY_SOCKET` unset (not started by systemd, or `Type=simple`) every call is a no-op returning false.
package struct SystemdNotifier: Sendable {
    private let address: NotifyAddress?

    /// Enabled iff `environment["NOTIFY_SOCKET"]` holds a usable address: an absolute path or `@abstract-name`
    /// that fits in `sockaddr_un`.
    package init(environment: [String: String]) {
        address = environment["NOTIFY_SOCKET"].flatMap(NotifyAddress.init)
    }

    /// Whether notifications are sent at all.
    package var isEnabled: Bool { address != nil }

    /// `READY=1` with a status line and `MAINPID=` (this process): send only once the daemon really serves.
    @discardableResult
    package func ready(status: String) -> Bool {
        send("READY=1\nSTATUS=\(Self.oneLine(status))\nMAINPID=\(getpid())")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC now, in microseconds), as `Type=notify-reload`
    /// (systemd 253+) requires; send `ready(status:)` again once the reload is done.
    @discardableResult
    package func reloading() -> Bool {
        send("RELOADING=1\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())")
    }

    /// `STOPPING=1` with a status line: the daemon has begun shutting down (draining).
    @discardableResult
    package func stopping(status: String) -> Bool {
        send("STOPPING=1\nSTATUS=\(Self.oneLine(status))")
    }

    /// `STATUS=`: the free-form line `systemctl status` shows.
    @discardableResult
    package func status(_ text: String) -> Bool {
        send("STATUS=\(Self.oneLine(text))")
    }

    /// `WATCHDOG=1`: the keep-alive ping; send it more often than `SystemdWatchdog.interval()`.
    @discardableResult
    package func watchdogPing() -> Bool {
        send("WATCHDOG=1")
    }

    /// `EXTEND_TIMEOUT_USEC=`: asks for `duration` more before the current start/stop/reload timeout fires.
    @discardableResult
    package func extendTimeout(by duration: Duration) -> Bool {
        let (seconds, attoseconds) = duration.components
        let usec = max(0, seconds) &* 1_000_000 &+ max(0, attoseconds) / 1_000_000_000_000
        return send("EXTEND_TIMEOUT_USEC=\(usec)")
    }

    /// Sends `raw` (newline-separated `KEY=VALUE` lines) as one datagram to `NOTIFY_SOCKET`.
    ///
    /// Returns true when the whole datagram was handed to the kernel; false when the notifier is disabled, `raw` is
    /// empty, or the send failed (no receiver, queue full for 250 ms, ...). Never throws; blocks at most 250 ms.
    @discardableResult
    package func send(_ raw: String) -> Bool {
        guard let address, !raw.isEmpty else { return false }
        guard let fd = try? Syscall.socket(domain: AF_UNIX, type: Int32(SOCK_DGRAM.rawValue)) else { return false }
        defer { Syscall.close(fd) }
        try? Syscall.setSocketOption(fd, SOL_SOCKET, SO_SNDTIMEO, timeval(tv_sec: 0, tv_usec: 250_000), "setsockopt(SO_SNDTIMEO)")
        var message = raw
        return message.withUTF8 { bytes in
            address.withSockaddr { sockaddr, sockaddrLength in
                let sent = try? Syscall.sendTo(
                    fd, UnsafeRawBufferPointer(bytes), flags: Int32(MSG_NOSIGNAL), address: sockaddr, length: sockaddrLength)
                return sent == bytes.count
            }
        }
    }

    /// A `STATUS=` value must stay on its line: a newline in it would start another assignment.
    private static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }

    private static func monotonicMicroseconds() -> Int64 {
        Syscall.monotonicNanoseconds() / 1_000
    }
}

/// The `NOTIFY_SOCKET` address as a ready-made `sockaddr_un`.
struct NotifyAddress: Sendable {
    /// The bytes of `sun_path` that count: path plus NUL, or NUL plus the abstract name (no terminator).
    private let path: [UInt8]

    init?(_ value: String) {
        let bytes = Array(value.utf8)
        switch bytes.first {
        case UInt8(ascii: "/"): path = bytes + [0]
        case UInt8(ascii: "@") where bytes.count > 1: path = [0] + bytes.dropFirst()
        default: return nil
        }
        guard path.count <= MemoryLayout.size(ofValue: sockaddr_un().sun_path) else { return nil }
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + path.count)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}
