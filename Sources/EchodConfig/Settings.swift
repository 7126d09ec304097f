#if canImport(Glibc)
    import EchodSystem
    import Glibc
#endif

/// Log output format. `auto` picks `journal` when stderr is connected to the journal, else `text`;
/// the log module resolves it, since only it knows where stderr goes.
package enum LogFormat: String, Sendable, CaseIterable {
    case auto, text, json, journal
}

/// Minimum log level, by its swift-log name.
package enum LogLevelName: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// `io.backend`: the kernel interface the worker loops wait on. The daemon maps it to the event loop's backend (this
/// layer does not know the loops) and resolves `auto` at start, when it can ask the kernel.
package enum IOBackendName: String, Sendable, CaseIterable {
    /// Readiness (`epoll_wait`, then `read` and `write`): the default, available wherever echod runs.
    case epoll
    /// Completions on an io_uring; start-up fails when the kernel or a seccomp filter does not allow it.
    case ioUring = "io_uring"
    /// io_uring when the kernel allows it, else epoll.
    case auto
}

/// The validated, effective configuration of the daemon. Every field is in range and ready to use.
package struct EchodSettings: Sendable, Equatable {
    /// Addresses (TCP, Unix) to accept echo connections on, each with its options; never empty, no duplicate addresses
    /// or names.
    package var listen: [ListenEntry]
    /// How this echod names itself (`{instance}` in tags): the `instance` key, or the host name when it is null.
    package var instance = currentHostName()
    /// Whether `instance` is the host name (the key is null), so that `check-config` can say so.
    package var instanceIsHostName = true
    /// Event-loop threads, resolved: `auto` becomes the number of online CPUs (at least 1).
    package var threads: Int
    /// Whether `threads` was `auto`, so that `check-config` can say so.
    package var threadsIsAuto: Bool
    /// What the worker loops wait on (`io.backend`); only a restart applies a change.
    package var ioBackend = IOBackendName.epoll
    /// Connections open at once, over all listeners.
    package var maxConnections: Int
    /// Connections open at once from one peer address (for Unix-socket peers, one uid); 0 = unlimited.
    package var maxConnectionsPerIP: Int
    /// A connection with no traffic for this long is closed; `.zero` = never.
    package var idleTimeout: Duration
    /// Per connection: echo data read but not yet written back. Reading stops at this bound until the peer reads.
    package var maxPendingBytes: Int
    /// On SIGTERM: how long open connections may finish before they are closed.
    package var drainTimeout: Duration
    /// Keep established connections across a restart, an upgrade, a crash or a watchdog restart, through systemd's fd
    /// store (issue 14); needs the unit's `FileDescriptorStoreMax=`. Off: every restart closes them, as before.
    package var keepConnections = false
    /// Minimum level of log records.
    package var logLevel: LogLevelName
    /// Log record format.
    package var logFormat: LogFormat
    /// Absolute path of a log file (reopened on SIGUSR1), or nil for stderr.
    package var logFile: String?
    /// Log every read: peer, byte count and a short escaped preview.
    package var logReads: Bool
    /// Log records queued for the writer thread before new ones are dropped.
    package var logQueueCapacity: Int
    /// Address of the HTTP health/metrics endpoint, or nil when it is off.
    package var adminListen: ListenAddress?
    /// Unix socket files echod creates: their permission bits (at most 0777).
    package var unixMode: UInt32
    /// Their owner, a user name or numeric ID; nil = echod's user after start-up (the `user` it switches to).
    package var unixOwner: String?
    /// Their group, a name or numeric ID; nil = that user's primary group.
    package var unixGroup: String?
    /// Started as root: the user to switch to once the listeners are bound and the log file is open; nil = stay.
    package var user: String?
    /// UDP echo: addresses to serve it on; empty (the default) = off. No duplicates.
    package var udpListen: [ListenAddress] = []
    /// UDP echo: datagrams from a source port below this are not answered (the built-in list applies anyway).
    package var udpMinSourcePort = 1024
    /// UDP echo: datagrams per second answered per source address (token bucket rate).
    package var udpSourceRate = 1000
    /// UDP echo: datagrams a source address may send at once (token bucket size).
    package var udpSourceBurst = 2000
    /// UDP echo: datagrams per second answered over all sources and sockets.
    package var udpGlobalRate = 100_000
    /// UDP echo: bytes per second answered over all sources and sockets.
    package var udpGlobalBandwidth = 128 * 1024 * 1024
    /// UDP echo: entries of the per-source table (split between the UDP sockets).
    package var udpSourceTableSize = 65_536

    /// The embedded defaults: what runs when no file, environment variable or option says otherwise.
    /// `config/echod.yaml` documents exactly these values (a test keeps the two equal).
    package static let defaults = EchodSettings(
        listen: [
            ListenEntry(.ip(ListenAddress(host: "127.0.0.1", port: 8888, family: .ipv4))),
            ListenEntry(.ip(ListenAddress(host: "::1", port: 8888, family: .ipv6))),
        ],
        threads: onlineCPUCount(),
        threadsIsAuto: true,
        maxConnections: 50_000,
        maxConnectionsPerIP: 0,
        idleTimeout: .seconds(300),
        maxPendingBytes: 256 * 1024,
        drainTimeout: .seconds(10),
        logLevel: .info,
        logFormat: .auto,
        logFile: nil,
        logReads: false,
        logQueueCapacity: 16_384,
        adminListen: nil,
        unixMode: 0o660,
        unixOwner: nil,
        unixGroup: nil,
        user: nil)
}

/// The number of online CPUs, at least 1. Read on every call (not cached) so that a reload after CPUs
/// were brought online sees them; only a restart applies a changed thread count anyway.
func onlineCPUCount() -> Int {
    max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
}

/// The kernel's host name, read on every call (not cached) so that a reload sees a renamed host. gethostname cannot
/// fail with the buffer `Syscall.hostName` gives it; should it ever, `localhost` stands in rather than stopping a load.
func currentHostName() -> String {
    (try? Syscall.hostName()) ?? "localhost"
}
