import EchodConfig
import EchodEventLoop

/// `io.backend` at start: the backend every worker loop is made on, chosen once for the life of the process (the
/// control loop and the admin endpoint's loop stay on epoll).
enum IOBackendChoice: Equatable {
    /// Run the worker loops on this backend.
    case use(IOBackend)
    /// `auto` where io_uring is not available: run on epoll, and say why in one log line.
    case fallBack(reason: String)
    /// `io_uring` where it is not available: refuse to start with this message.
    case refuse(String)

    /// The choice for `name`. `ioUringUnavailable` (``IOBackend/ioUringUnavailableReason()``) is asked only when
    /// io_uring is wanted: with `epoll`, the default, echod makes no io_uring call at all, so that a seccomp filter
    /// that kills on io_uring_setup (rather than failing it) cannot stop a daemon that never asked for io_uring.
    static func choose(_ name: IOBackendName, ioUringUnavailable: () -> String?) -> IOBackendChoice {
        switch name {
        case .epoll:
            return .use(.epoll)
        case .ioUring:
            guard let reason = ioUringUnavailable() else { return .use(.ioUring) }
            return .refuse(
                "io.backend is io_uring, but this kernel or process does not allow io_uring: \(reason). "
                    + "Set io.backend: epoll (or auto, which falls back to epoll), or allow io_uring: "
                    + "sysctl kernel.io_uring_disabled=0 (or 1 with echod's group in kernel.io_uring_group), and a seccomp "
                    + "filter (systemd's SystemCallFilter=, a container runtime's seccomp profile) that lets "
                    + "io_uring_setup, io_uring_enter and io_uring_register through")
        case .auto:
            guard let reason = ioUringUnavailable() else { return .use(.ioUring) }
            return .fallBack(reason: reason)
        }
    }
}

extension Daemon {
    /// Picks the worker loops' backend (``IOBackendChoice``): logs a fallback once, throws a refusal. Runs after the
    /// privileges are dropped: `kernel.io_uring_disabled=1` allows io_uring to one group only, so the probe must run
    /// with the credentials the loops will have.
    func chooseIOBackend(_ name: IOBackendName) throws(StartError) -> IOBackend {
        let choice = IOBackendChoice.choose(name) { IOBackend.ioUringUnavailableReason() }
        switch choice {
        case .use(let backend):
            return backend
        case .fallBack(let reason):
            logger.warning(
                "io.backend auto: io_uring is not available here, the event loops run on epoll",
                metadata: ["reason": .string(reason)])
            return .epoll
        case .refuse(let message):
            // Exit status 78, as for other settings this host cannot honour: a restart would meet the same kernel.
            throw StartError(description: message, status: ExitStatus.config)
        }
    }
}
