import EchodTestSupport
import Testing

@testable import EchodConfig

@Suite("Layers, precedence and origins")
struct LayeringTests {
    static let everyKeyChanged = """
        listen: ["0.0.0.0:7", "[::]:7"]
        instance: web-1
        threads: 3
        io:
          backend: io_uring
        limits:
          max_connections: 1000
          max_connections_per_ip: 10
          idle_timeout: 1m30s
          max_pending_bytes: 64KiB
        shutdown:
          drain_timeout: 500ms
        restart:
          keep_connections: true
        log:
          level: debug
          format: json
          file: /var/log/echod.log
          reads: true
          queue_capacity: 100
        admin:
          listen: 127.0.0.1:9090
        unix:
          mode: "0600"
          owner: nobody
          group: "65534"
        user: nobody
        udp:
          listen: ["0.0.0.0:7"]
          min_source_port: 2000
          source_rate: 10
          source_burst: 20
          global_rate: 300
          global_bandwidth: 1MiB
          source_table_size: 4096
        """

    static func expectEveryKeyChanged(_ s: EchodSettings) throws {
        #expect(s.listen == [ListenEntry(try ListenTarget(parsing: "0.0.0.0:7")), ListenEntry(try ListenTarget(parsing: "[::]:7"))])
        #expect(s.instance == "web-1" && !s.instanceIsHostName)
        #expect(s.threads == 3 && !s.threadsIsAuto)
        #expect(s.ioBackend == .ioUring)
        #expect(s.maxConnections == 1000)
        #expect(s.maxConnectionsPerIP == 10)
        #expect(s.idleTimeout == .seconds(90))
        #expect(s.maxPendingBytes == 65_536)
        #expect(s.drainTimeout == .milliseconds(500))
        #expect(s.keepConnections)
        #expect(s.logLevel == .debug)
        #expect(s.logFormat == .json)
        #expect(s.logFile == "/var/log/echod.log")
        #expect(s.logReads)
        #expect(s.logQueueCapacity == 100)
        #expect(s.adminListen == (try ListenAddress(parsing: "127.0.0.1:9090")))
        #expect(s.unixMode == 0o600 && s.unixOwner == "nobody" && s.unixGroup == "65534")
        #expect(s.user == "nobody")
        #expect(s.udpListen == [try ListenAddress(parsing: "0.0.0.0:7")])
        #expect(s.udpMinSourcePort == 2000 && s.udpSourceRate == 10 && s.udpSourceBurst == 20)
        #expect(s.udpGlobalRate == 300 && s.udpGlobalBandwidth == 1 << 20 && s.udpSourceTableSize == 4096)
    }

    @Test func fileSetsEveryKey() throws {
        let dir = TempDir()
        let loaded = try load(Self.everyKeyChanged, in: dir)
        try Self.expectEveryKeyChanged(loaded.settings)
        #expect(loaded.origins.values.allSatisfy { $0 == .file(dir.path + "/echod.yaml") })
    }

    static let environmentForEveryKey = [
        "ECHOD_LISTEN": "0.0.0.0:7, [::]:7",
        "ECHOD_INSTANCE": "web-1",
        "ECHOD_THREADS": "3",
        "ECHOD_IO_BACKEND": "io_uring",
        "ECHOD_LIMITS_MAX_CONNECTIONS": "1000",
        "ECHOD_LIMITS_MAX_CONNECTIONS_PER_IP": "10",
        "ECHOD_LIMITS_IDLE_TIMEOUT": "90s",
        "ECHOD_LIMITS_MAX_PENDING_BYTES": "64KiB",
        "ECHOD_SHUTDOWN_DRAIN_TIMEOUT": "500ms",
        "ECHOD_RESTART_KEEP_CONNECTIONS": "true",
        "ECHOD_LOG_LEVEL": "debug",
        "ECHOD_LOG_FORMAT": "json",
        "ECHOD_LOG_FILE": "/var/log/echod.log",
        "ECHOD_LOG_READS": "true",
        "ECHOD_LOG_QUEUE_CAPACITY": "100",
        "ECHOD_ADMIN_LISTEN": "127.0.0.1:9090",
        "ECHOD_UNIX_MODE": "0600",
        "ECHOD_UNIX_OWNER": "nobody",
        "ECHOD_UNIX_GROUP": "65534",
        "ECHOD_USER": "nobody",
        "ECHOD_UDP_LISTEN": "0.0.0.0:7",
        "ECHOD_UDP_MIN_SOURCE_PORT": "2000",
        "ECHOD_UDP_SOURCE_RATE": "10",
        "ECHOD_UDP_SOURCE_BURST": "20",
        "ECHOD_UDP_GLOBAL_RATE": "300",
        "ECHOD_UDP_GLOBAL_BANDWIDTH": "1MiB",
        "ECHOD_UDP_SOURCE_TABLE_SIZE": "4096",
    ]

    @Test func environmentSetsEveryKey() throws {
        let loaded = try load(nil, env: Self.environmentForEveryKey.merging(["PATH": "/bin", "HOME": "/root"]) { a, _ in a })
        try Self.expectEveryKeyChanged(loaded.settings)
        #expect(loaded.warnings.isEmpty)
        for key in SettingKey.all {
            let name = "ECHOD_" + key.name.uppercased().replacing(".", with: "_")
            #expect(loaded.origins[key.name] == .environment(name))
        }
    }

    @Test func commandLineSetsItsKeys() throws {
        let loaded = try load(
            nil,
            overrides: ConfigOverrides(
                listen: ["127.0.0.2:7", "[::1]:7"], threads: "auto", logLevel: "error", logFormat: "text", adminListen: "[::1]:9090",
                ioBackend: "auto"))
        let s = loaded.settings
        #expect(s.listen.map(\.description) == ["127.0.0.2:7", "[::1]:7"])
        #expect(s.threadsIsAuto)
        #expect(s.logLevel == .error && s.logFormat == .text)
        #expect(s.adminListen?.description == "[::1]:9090")
        #expect(loaded.origins["listen"] == .commandLine("--listen"))
        #expect(loaded.origins["threads"] == .commandLine("--threads"))
        #expect(loaded.origins["log.level"] == .commandLine("--log-level"))
        #expect(loaded.origins["log.format"] == .commandLine("--log-format"))
        #expect(loaded.origins["admin.listen"] == .commandLine("--admin"))
        #expect(s.ioBackend == .auto && loaded.origins["io.backend"] == .commandLine("--io-backend"))
        #expect(loaded.origins["limits.max_connections"] == .defaultValue)
    }

    /// `--user` (and `user:`) takes a name as written, with `_`, `-` and `.`; an empty option means none, like `--admin ""`.
    @Test func userFromTheCommandLine() throws {
        for name in ["nobody", "echod", "_echod", "www-data", "svc.echo1", String(repeating: "u", count: 32)] {
            let loaded = try load(nil, overrides: ConfigOverrides(user: name))
            #expect(loaded.settings.user == name)
            #expect(loaded.origins["user"] == .commandLine("--user"))
        }
        #expect(try load("user: nobody\n", overrides: ConfigOverrides(user: "")).settings.user == nil)
        #expect(try load(nil).settings.user == nil)
    }

    @Test func commandLineBeatsEnvironmentBeatsFileBeatsDefault() throws {
        let dir = TempDir()
        let file = "threads: 2\nlog:\n  level: warning\n  format: json\n"
        let env = ["ECHOD_THREADS": "3", "ECHOD_LOG_LEVEL": "error"]
        let cli = ConfigOverrides(threads: "4")
        let all = try load(file, env: env, overrides: cli, in: dir)
        #expect(all.settings.threads == 4 && all.origins["threads"] == .commandLine("--threads"))
        #expect(all.settings.logLevel == .error && all.origins["log.level"] == .environment("ECHOD_LOG_LEVEL"))
        #expect(all.settings.logFormat == .json && all.origins["log.format"] == .file(dir.path + "/echod.yaml"))
        #expect(all.settings.maxConnections == 50_000 && all.origins["limits.max_connections"] == .defaultValue)

        let noCLI = try load(file, env: env, in: dir)
        #expect(noCLI.settings.threads == 3 && noCLI.origins["threads"] == .environment("ECHOD_THREADS"))
        let fileOnly = try load(file, in: dir)
        #expect(fileOnly.settings.threads == 2 && fileOnly.origins["threads"] == .file(dir.path + "/echod.yaml"))
    }

    @Test func commandLineListReplacesFileList() throws {
        let s = try load("listen: ['127.0.0.1:1', '127.0.0.1:2']\n", overrides: ConfigOverrides(listen: ["127.0.0.1:3"])).settings
        #expect(s.listen.map(\.description) == ["127.0.0.1:3"])
    }

    @Test func emptyEnvironmentValueTurnsAnOptionalKeyOff() throws {
        let loaded = try load(
            "admin:\n  listen: 127.0.0.1:9090\nlog:\n  file: /tmp/x.log\n",
            env: ["ECHOD_ADMIN_LISTEN": "", "ECHOD_LOG_FILE": " "])
        #expect(loaded.settings.adminListen == nil)
        #expect(loaded.settings.logFile == nil)
        #expect(loaded.origins["admin.listen"] == .environment("ECHOD_ADMIN_LISTEN"))
    }

    @Test func valuesAreCaseInsensitiveAndTrimmed() throws {
        let s = try load(nil, env: ["ECHOD_LOG_LEVEL": " DEBUG ", "ECHOD_THREADS": "Auto", "ECHOD_LIMITS_IDLE_TIMEOUT": "2M"]).settings
        #expect(s.logLevel == .debug && s.threadsIsAuto && s.idleTimeout == .seconds(120))
    }

    /// The file must stay valid on its own: an override hides a bad value from the daemon, not from the check.
    @Test func invalidValueInALowerLayerIsReportedEvenWhenOverridden() {
        let found = problems("threads: 0\n", env: ["ECHOD_THREADS": "zero"], overrides: ConfigOverrides(threads: "4"))
        #expect(found.count == 2)
        #expect(found.contains { $0.source.hasSuffix("echod.yaml") && $0.key == "threads" && $0.value == "0" })
        #expect(found.contains { $0.source == "environment ECHOD_THREADS" && $0.value == "zero" })
    }

    @Test func unknownEchodVariablesAreWarningsNotErrors() throws {
        let loaded = try load(nil, env: ["ECHOD_LOG_LEVL": "debug", "ECHOD_BIN": "/usr/bin/echod", "OTHER_LOG_LEVEL": "x"])
        #expect(loaded.settings.logLevel == .info)
        #expect(
            loaded.warnings == [
                "environment ECHOD_BIN: unknown variable, ignored",
                "environment ECHOD_LOG_LEVL: unknown variable, ignored (did you mean ECHOD_LOG_LEVEL?)",
            ])
    }

    @Test func perIPLimitAboveGlobalLimitIsAWarning() throws {
        let loaded = try load("limits:\n  max_connections: 10\n  max_connections_per_ip: 20\n")
        #expect(loaded.warnings.count == 1)
        #expect(loaded.warnings.first?.contains("max_connections_per_ip") == true)
    }
}
