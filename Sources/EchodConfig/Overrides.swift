/// Values given on the command line; they win over the environment and the file. nil = not given.
package struct ConfigOverrides: Sendable {
    /// `--listen`, repeatable: replaces the whole `listen` list.
    package var listen: [String]?
    /// `--threads`: `auto` or a count.
    package var threads: String?
    /// `--log-level`.
    package var logLevel: String?
    /// `--log-format`.
    package var logFormat: String?
    /// `--admin`: HOST:PORT, or an empty string to turn the endpoint off.
    package var adminListen: String?
    /// `--user`: the user to switch to after binding, when started as root.
    package var user: String?
    /// `--udp`, repeatable: replaces the whole `udp.listen` list.
    package var udpListen: [String]?
    /// `--instance`: the name in `{instance}`; an empty string means the host name.
    package var instance: String?
    /// `--io-backend`: `epoll`, `io_uring` or `auto`.
    package var ioBackend: String?

    /// Creates overrides; every value is text exactly as typed, validated by the loader like any other layer.
    package init(
        listen: [String]? = nil, threads: String? = nil, logLevel: String? = nil, logFormat: String? = nil, adminListen: String? = nil,
        user: String? = nil, udpListen: [String]? = nil, instance: String? = nil, ioBackend: String? = nil
    ) {
        self.ioBackend = ioBackend
        self.instance = instance
        self.udpListen = udpListen
        self.listen = listen
        self.threads = threads
        self.logLevel = logLevel
        self.logFormat = logFormat
        self.adminListen = adminListen
        self.user = user
    }
}
