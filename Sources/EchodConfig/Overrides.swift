/// Values given on the command line; they win over the environment and the file. nil = not given.
public struct ConfigOverrides: Sendable {
    /// `--listen`, repeatable: replaces the whole `listen` list.
    public var listen: [String]?
    /// `--threads`: `auto` or a count.
    public var threads: String?
    /// `--log-level`.
    public var logLevel: String?
    /// `--log-format`.
    public var logFormat: String?
    /// `--admin`: HOST:PORT, or an empty string to turn the endpoint off.
    public var adminListen: String?

    /// Creates overrides; every value is text exactly as typed, validated by the loader like any other layer.
    public init(listen: [String]? = nil, threads: String? = nil, logLevel: String? = nil, logFormat: String? = nil, adminListen: String? = nil) {
        self.listen = listen
        self.threads = threads
        self.logLevel = logLevel
        self.logFormat = logFormat
        self.adminListen = adminListen
    }
}
