import EchodTestSupport
import Testing

@testable import EchodConfig

/// One bad value: the file text, the key and value the problem must name, and a phrase from its reason.
struct BadValue: Sendable, CustomTestStringConvertible {
    var yaml: String
    var key: String
    var value: String?
    var reason: String
    var testDescription: String { yaml }
}

@Suite("Per-key parse and range errors")
struct KeyErrorTests {
    static let badValues: [BadValue] = [
        BadValue(yaml: "listen: []", key: "listen", value: nil, reason: "no address"),
        BadValue(yaml: "listen: ['127.0.0.1:99999']", key: "listen[0]", value: "127.0.0.1:99999", reason: "between 1 and 65535"),
        BadValue(yaml: "threads: 0", key: "threads", value: "0", reason: "out of range; expected \"auto\" or a whole number between 1 and 1024"),
        BadValue(yaml: "threads: 1025", key: "threads", value: "1025", reason: "out of range"),
        BadValue(yaml: "threads: zero", key: "threads", value: "zero", reason: "not a whole number"),
        BadValue(yaml: "threads: -2", key: "threads", value: "-2", reason: "must not be negative"),
        BadValue(yaml: "threads: 2.5", key: "threads", value: "2.5", reason: "not a whole number"),
        BadValue(yaml: "limits:\n  max_connections: 0", key: "limits.max_connections", value: "0", reason: "between 1 and 10000000"),
        BadValue(yaml: "limits:\n  max_connections: 10000001", key: "limits.max_connections", value: "10000001", reason: "out of range"),
        BadValue(
            yaml: "limits:\n  max_connections: 99999999999999999999999", key: "limits.max_connections",
            value: "99999999999999999999999", reason: "out of range"),
        BadValue(yaml: "limits:\n  max_connections: lots", key: "limits.max_connections", value: "lots", reason: "not a whole number"),
        BadValue(yaml: "limits:\n  max_connections_per_ip: -1", key: "limits.max_connections_per_ip", value: "-1", reason: "must not be negative"),
        BadValue(
            yaml: "limits:\n  max_connections_per_ip: 10000001", key: "limits.max_connections_per_ip", value: "10000001",
            reason: "between 0 and 10000000"),
        BadValue(yaml: "limits:\n  idle_timeout: soon", key: "limits.idle_timeout", value: "soon", reason: "does not start with a number"),
        BadValue(yaml: "limits:\n  idle_timeout: -5s", key: "limits.idle_timeout", value: "-5s", reason: "cannot be negative"),
        BadValue(yaml: "limits:\n  idle_timeout: 169h", key: "limits.idle_timeout", value: "169h", reason: "between 0s and 168h"),
        BadValue(yaml: "limits:\n  idle_timeout: 5 minutes", key: "limits.idle_timeout", value: "5 minutes", reason: "unknown duration unit \"minutes\""),
        BadValue(yaml: "limits:\n  max_pending_bytes: 4095", key: "limits.max_pending_bytes", value: "4095", reason: "between 4KiB and 1GiB"),
        BadValue(yaml: "limits:\n  max_pending_bytes: 2GiB", key: "limits.max_pending_bytes", value: "2GiB", reason: "out of range"),
        BadValue(yaml: "limits:\n  max_pending_bytes: 4096.5", key: "limits.max_pending_bytes", value: "4096.5", reason: "not a whole number of bytes"),
        BadValue(yaml: "limits:\n  max_pending_bytes: 64XB", key: "limits.max_pending_bytes", value: "64XB", reason: "unknown size unit \"XB\""),
        BadValue(yaml: "limits:\n  max_pending_bytes: -64KiB", key: "limits.max_pending_bytes", value: "-64KiB", reason: "cannot be negative"),
        BadValue(yaml: "shutdown:\n  drain_timeout: 2h", key: "shutdown.drain_timeout", value: "2h", reason: "between 0s and 1h"),
        BadValue(
            yaml: "log:\n  level: verbose", key: "log.level", value: "verbose",
            reason: "expected one of trace, debug, info, notice, warning, error, critical"),
        BadValue(yaml: "log:\n  level: debgu", key: "log.level", value: "debgu", reason: "(did you mean \"debug\"?)"),
        BadValue(yaml: "log:\n  format: xml", key: "log.format", value: "xml", reason: "expected one of auto, text, json, journal"),
        BadValue(yaml: "log:\n  file: echod.log", key: "log.file", value: "echod.log", reason: "must be an absolute path"),
        BadValue(yaml: "log:\n  file: /var/log/", key: "log.file", value: "/var/log/", reason: "names a directory"),
        BadValue(yaml: "log:\n  reads: maybe", key: "log.reads", value: "maybe", reason: "expected true or false"),
        BadValue(yaml: "restart:\n  keep_connections: 2", key: "restart.keep_connections", value: "2", reason: "expected true or false"),
        BadValue(yaml: "log:\n  queue_capacity: 15", key: "log.queue_capacity", value: "15", reason: "between 16 and 10000000"),
        BadValue(yaml: "log:\n  queue_capacity: 10000001", key: "log.queue_capacity", value: "10000001", reason: "out of range"),
        BadValue(yaml: "admin:\n  listen: localhost:9090", key: "admin.listen", value: "localhost:9090", reason: "hostname"),
        BadValue(yaml: "admin:\n  listen: 127.0.0.1", key: "admin.listen", value: "127.0.0.1", reason: "missing port"),
        BadValue(yaml: "user: 65534", key: "user", value: "65534", reason: "a number, not a user name"),
        BadValue(yaml: "user: '-nobody'", key: "user", value: "-nobody", reason: "expected a user name"),
        BadValue(yaml: "user: no body", key: "user", value: "no body", reason: "expected a user name"),
        BadValue(yaml: "user: nobody:nogroup", key: "user", value: "nobody:nogroup", reason: "expected a user name"),
        BadValue(yaml: "user: \(String(repeating: "u", count: 33))", key: "user", value: String(repeating: "u", count: 33), reason: "longer than 32"),
    ]

    @Test(arguments: badValues)
    func badValueIsReportedWithSourceKeyValueAndReason(_ bad: BadValue) throws {
        let dir = TempDir()
        do {
            _ = try load(bad.yaml + "\n", in: dir)
            Issue.record("accepted \(bad.yaml)")
        } catch {
            let found = try #require(error.problems.first)
            #expect(error.problems.count == 1, "\(error)")
            #expect(found.source == dir.path + "/echod.yaml")
            #expect(found.key == bad.key)
            #expect(found.value == bad.value)
            #expect(found.reason.contains(bad.reason), "reason: \(found.reason)")
            #expect(found.line == bad.yaml.split(separator: "\n").count)
            #expect(found.description.contains(bad.key))
        }
    }

    @Test func bareNumberIsSecondsForEveryDuration() {
        let s = settings("limits:\n  idle_timeout: 45\nshutdown:\n  drain_timeout: 0\n")
        #expect(s?.idleTimeout == .seconds(45))
        #expect(s?.drainTimeout == .zero)
    }

    @Test func zeroMeansOffWhereDocumented() {
        let s = settings("limits:\n  idle_timeout: 0s\n  max_connections_per_ip: 0\n")
        #expect(s?.idleTimeout == .zero && s?.maxConnectionsPerIP == 0)
    }

    @Test func environmentProblemNamesTheVariable() throws {
        let found = try #require(problem(nil, env: ["ECHOD_LIMITS_MAX_CONNECTIONS": "-5"]))
        #expect(found.source == "environment ECHOD_LIMITS_MAX_CONNECTIONS")
        #expect(found.key == "limits.max_connections" && found.value == "-5" && found.line == nil)
        #expect(
            found.description
                == "environment ECHOD_LIMITS_MAX_CONNECTIONS: limits.max_connections: invalid value \"-5\": must not be negative; expected a whole number between 1 and 10000000"
        )
    }

    @Test func environmentListProblemNamesTheItem() throws {
        let found = try #require(problem(nil, env: ["ECHOD_LISTEN": "127.0.0.1:7,,[::1]:7"]))
        #expect(found.source == "environment ECHOD_LISTEN" && found.key == "listen[1]" && found.value == "")
        #expect(found.reason.contains("empty address"))
        let empty = try #require(problem(nil, env: ["ECHOD_LISTEN": ""]))
        #expect(empty.key == "listen" && empty.reason.contains("no address"))
    }

    @Test func commandLineProblemNamesTheFlag() throws {
        let found = try #require(problem(nil, overrides: ConfigOverrides(threads: "many")))
        #expect(found.source == "command line --threads" && found.key == "threads" && found.value == "many")
        let format = try #require(problem(nil, overrides: ConfigOverrides(logFormat: "jsn")))
        #expect(format.source == "command line --log-format" && format.reason.contains("did you mean \"json\"?"))
    }

    @Test func adminEndpointMustNotShareAnEchoListenerPort() throws {
        let found = try #require(problem("listen: ['0.0.0.0:7']\nadmin:\n  listen: 127.0.0.1:7\n"))
        #expect(found.key == "admin.listen" && found.value == "127.0.0.1:7" && found.line == 3)
        #expect(found.reason.contains("collides with listen item 0"))
        #expect(settings("listen: ['127.0.0.1:7']\nadmin:\n  listen: 127.0.0.1:8\n") != nil)
    }
}

@Suite("Unknown keys, wrong types, nulls")
struct StructureErrorTests {
    @Test func misspeltKeyIsAnErrorWithSuggestion() throws {
        let dir = TempDir()
        do {
            _ = try load("limits:\n  max_conections: 5\n", in: dir)
            Issue.record("accepted a misspelt key")
        } catch {
            #expect(error.problems.count == 1)
            #expect(error.description == "\(dir.path)/echod.yaml:2: limits.max_conections: unknown key (did you mean \"max_connections\"?)")
        }
    }

    @Test(arguments: [
        ("log:\n  Level: info\n", "log.Level", "did you mean \"level\"?"),
        ("max_connections: 5\n", "max_connections", "did you mean \"limits.max_connections\"?"),
        ("thread: 2\n", "thread", "did you mean \"threads\"?"),
        ("log:\n  reeds: true\n", "log.reeds", "did you mean \"reads\"?"),
        ("colour: red\n", "colour", "valid keys here: listen, instance, threads, io, limits, shutdown, restart, log, admin"),
        ("admin:\n  port: 80\n", "admin.port", "valid keys here: listen"),
        ("limits.max_connections: 5\n", "limits.max_connections", "write a nested key inside its section"),
    ])
    func unknownKeys(yaml: String, key: String, reason: String) throws {
        let found = try #require(problem(yaml))
        #expect(found.key == key && found.reason.contains(reason), "\(found)")
        #expect(found.reason.hasPrefix("unknown key"))
    }

    @Test(
        arguments: [
            ("threads: [1]\n", "threads", "[1]", "wrong type: expected \"auto\" or a whole number between 1 and 1024, got a list"),
            ("listen: 127.0.0.1:7\n", "listen", "127.0.0.1:7", "got a single value"),
            ("log: debug\n", "log", "debug", "expected a section with the keys level, format, file, reads, queue_capacity, got a single value"),
            ("limits:\n  max_connections: {a: 1}\n", "limits.max_connections", "{a: 1}", "got a mapping of keys"),
            ("listen: [[1]]\n", "listen[0]", "[1]", "expected a HOST:PORT string, got a list"),
            ("listen: ['127.0.0.1:7', ~]\n", "listen[1]", "~", "empty item"),
            ("threads:\n", "threads", nil, "no value"),
            ("log:\n  reads: null\n", "log.reads", nil, "no value"),
        ] as [(String, String, String?, String)])
    func wrongTypes(yaml: String, key: String, value: String?, reason: String) throws {
        let found = try #require(problem(yaml))
        #expect(found.key == key && found.value == value && found.reason.contains(reason), "\(found)")
    }

    @Test func nullTurnsOptionalKeysOffAndEmptySectionsSetNothing() throws {
        let s = try #require(settings("log:\n  file: ~\nadmin:\n  listen: null\nshutdown:\n"))
        #expect(s == .defaults)
        let quoted = try #require(problem("log:\n  file: \"null\"\n"))
        #expect(quoted.reason.contains("absolute path"), "a quoted \"null\" is a string")
    }
}
