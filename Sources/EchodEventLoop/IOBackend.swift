import CEchodUring
import EchodSystem
import Glibc

/// The kernel interface an event loop waits on (`io.backend`).
///
/// - `epoll`: readiness for everything; one `epoll_wait`, then a `read` and a `write` per echo round trip.
/// - `ioUring`: the same loop on an io_uring: echo connections are served by completions (a receive into a
///   provided buffer ring, the received buffer sent back as it is), so that one `io_uring_enter` per turn submits
///   every receive and send and waits for what comes next; everything else on the loop (timers, signals, wake-ups, listeners,
///   the admin endpoint) keeps its readiness handler on the loop's epoll set, which the ring watches.
package enum IOBackend: String, Sendable, CaseIterable, CustomStringConvertible {
    case epoll
    case ioUring = "io_uring"

    package var description: String { rawValue }

    /// Nil when this kernel and process can run the io_uring backend, else why not (for a log line or a start-up
    /// error). Tries what the backend stands on: a ring, a provided buffer ring, and a receive into it on a
    /// socket pair, so that `kernel.io_uring_disabled`, a seccomp filter (systemd's `SystemCallFilter=`, container
    /// runtimes' default profiles) and kernels without buffer rings (before 5.19) are all caught here, not at the first
    /// connection.
    package static func ioUringUnavailableReason() -> String? {
        var step: UnsafePointer<CChar>? = nil
        let result = echod_uring_probe(&step)
        guard result < 0 else { return nil }
        let what = step.map { String(cString: $0) } ?? "io_uring"
        var reason = "\(what): \(IOError("io_uring", errno: -result).reason)"
        if let disabled = Self.ioUringDisabledSysctl(), disabled != "0" {
            reason += " (kernel.io_uring_disabled=\(disabled))"
        }
        return reason
    }

    /// `kernel.io_uring_disabled` (Linux 6.6): 0 allowed, 1 only for a group, 2 off; nil where the kernel lacks it.
    private static func ioUringDisabledSysctl() -> String? {
        let fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Syscall.close(fd) }
        guard let bytes = try? Syscall.readWholeFile(fd, limit: 16) else { return nil }
        return String(decoding: bytes.filter { $0 > 0x20 }, as: UTF8.self)
    }
}
