import EchodText

/// A value as one source gave it, before parsing: every source hands over text, so one parser serves all.
enum RawValue {
    case text(String)
    case list([String])
    /// YAML `null` (or `~`, or nothing after the colon); an empty environment variable or option for an optional key.
    case null
    /// A list whose items may be mappings (`listen` in the file), with the items' keys as the file walk found them.
    case items([ListItem])
}

/// One item of a list key whose items may be mappings (``SettingKey/itemKeys``): a plain string, or a mapping whose
/// keys the file walk has checked against the item keys (names and shapes; the values are parsed by the key).
enum ListItem {
    case text(String)
    case mapping([ItemField], line: Int?)
    /// A mapping in which the file walk refused (and reported) some keys: the keys it kept are still parsed, and the item
    /// keeps its place so that the other items are checked and numbered as in the file; it gives no entry.
    case partial([ItemField], line: Int?)

    /// The line of `field` in a mapping item, else of the item.
    func line(of field: String) -> Int? {
        switch self {
        case .text: nil
        case .mapping(let fields, let line), .partial(let fields, let line): fields.first { $0.name == field }?.line ?? line
        }
    }

    /// Whether a mapping item sets `field`.
    func has(_ field: String) -> Bool {
        switch self {
        case .text: false
        case .mapping(let fields, _), .partial(let fields, _): fields.contains { $0.name == field }
        }
    }
}

/// One key of a mapping item, with its value and lines.
struct ItemField {
    var name: String
    var value: FieldValue
    var line: Int?
    /// Lines of a list's items.
    var itemLines: [Int?] = []
}

/// The value of an item's key: one text, or a list of texts.
enum FieldValue {
    case text(String)
    case list([String])
}

/// One refused value inside a key: for a list, which item; for a mapping item, which of its keys and where.
struct ValueProblem {
    var index: Int?
    var value: String?
    var reason: String
    /// The key inside a mapping item (`proxy_protocol`, `proxy_protocol_from[2]`), named after the item in messages.
    var field: String? = nil
    /// Where that key is, when it is not the item's own line.
    var line: Int? = nil
}

/// One configuration key: its name, how it is written, how it is parsed into ``EchodSettings`` and
/// printed back. The table in ``SettingKey/all`` is the single list of keys: the file walk, the
/// environment names, the command-line flags and `check-config` are all derived from it.
struct SettingKey {
    /// Dotted name as in the file (`limits.max_connections`).
    let name: String
    /// The command-line option that can override it, if any.
    let flag: String?
    /// True for `listen`: a YAML list, a comma-separated environment variable, a repeated option.
    let isList: Bool
    /// Accepts `null`, meaning "off".
    let isOptional: Bool
    /// What a value must look like, for wrong-type messages.
    let expected: String
    /// Parses a value and stores it into `settings`, or reports what is wrong and leaves `settings` alone.
    let apply: (RawValue, inout EchodSettings) -> [ValueProblem]
    /// The effective value in config syntax, for `check-config`.
    let render: (EchodSettings) -> String
    /// For a list key whose items may be mappings (`listen`): the keys of such a mapping. Empty: items are strings.
    var itemKeys: [ItemKey] = []

    var path: [String] { name.split(separator: ".").map(String.init) }
}

extension SettingKey {
    /// All keys, in the order of `config/echod.yaml`.
    static var all: [SettingKey] {
        [
            listenKey,
            optional(
                "instance", flag: "--instance", expected: "a name for this echod such as web-1, or null for the host name",
                set: { text, s throws(InvalidValue) in
                    s.instance = try text.map(Values.instanceName) ?? currentHostName()
                    s.instanceIsHostName = text == nil
                },
                render: { $0.instanceIsHostName ? "null" : quoted($0.instance) }),
            scalar(
                "threads", flag: "--threads", expected: "\"auto\" or a whole number between 1 and 1024",
                set: { text, s throws(InvalidValue) in
                    let count = try Values.threads(text)
                    s.threads = count ?? onlineCPUCount()
                    s.threadsIsAuto = count == nil
                },
                render: { $0.threadsIsAuto ? "auto" : "\($0.threads)" }),
            scalar(
                "io.backend", flag: "--io-backend", expected: "epoll, io_uring or auto",
                set: { text, s throws(InvalidValue) in s.ioBackend = try Values.choice(text, of: IOBackendName.self) },
                render: { $0.ioBackend.rawValue }),
            scalar(
                "limits.max_connections", expected: "a whole number",
                set: { text, s throws(InvalidValue) in s.maxConnections = try Values.integer(text, in: 1...10_000_000) },
                render: { "\($0.maxConnections)" }),
            scalar(
                "limits.max_connections_per_ip", expected: "a whole number",
                set: { text, s throws(InvalidValue) in s.maxConnectionsPerIP = try Values.integer(text, in: 0...10_000_000) },
                render: { "\($0.maxConnectionsPerIP)" }),
            scalar(
                "limits.idle_timeout", expected: "a duration such as 300s or 5m",
                set: { text, s throws(InvalidValue) in s.idleTimeout = try Units.parseDuration(text, in: .zero ... .seconds(168 * 3600)) },
                render: { Units.format($0.idleTimeout) }),
            scalar(
                "limits.max_pending_bytes", expected: "a size such as 256KiB",
                set: { text, s throws(InvalidValue) in s.maxPendingBytes = try Units.parseSize(text, in: 4096...(1 << 30)) },
                render: { Units.formatSize($0.maxPendingBytes) }),
            scalar(
                "shutdown.drain_timeout", expected: "a duration such as 10s",
                set: { text, s throws(InvalidValue) in s.drainTimeout = try Units.parseDuration(text, in: .zero ... .seconds(3600)) },
                render: { Units.format($0.drainTimeout) }),
            scalar(
                "restart.keep_connections", expected: "true or false",
                set: { text, s throws(InvalidValue) in s.keepConnections = try Values.bool(text) },
                render: { "\($0.keepConnections)" }),
            scalar(
                "log.level", flag: "--log-level", expected: "a level name such as info",
                set: { text, s throws(InvalidValue) in s.logLevel = try Values.choice(text, of: LogLevelName.self) },
                render: { $0.logLevel.rawValue }),
            scalar(
                "log.format", flag: "--log-format", expected: "a format name such as text",
                set: { text, s throws(InvalidValue) in s.logFormat = try Values.choice(text, of: LogFormat.self) },
                render: { $0.logFormat.rawValue }),
            optional(
                "log.file", expected: "an absolute file path, or null",
                set: { text, s throws(InvalidValue) in s.logFile = try text.map(Values.absolutePath) },
                render: { $0.logFile.map(quoted) ?? "null" }),
            scalar(
                "log.reads", expected: "true or false",
                set: { text, s throws(InvalidValue) in s.logReads = try Values.bool(text) },
                render: { "\($0.logReads)" }),
            scalar(
                "log.queue_capacity", expected: "a whole number",
                set: { text, s throws(InvalidValue) in s.logQueueCapacity = try Values.integer(text, in: 16...10_000_000) },
                render: { "\($0.logQueueCapacity)" }),
            optional(
                "admin.listen", flag: "--admin", expected: "HOST:PORT, or null",
                set: { text, s throws(InvalidValue) in s.adminListen = try text.map(Values.address) },
                render: { $0.adminListen.map { quoted($0.description) } ?? "null" }),
            scalar(
                "unix.mode", expected: "an octal mode such as \"0660\"",
                set: { text, s throws(InvalidValue) in s.unixMode = try Values.octalMode(text) },
                render: { quoted(Values.formatMode($0.unixMode)) }),
            optional(
                "unix.owner", expected: "a user name or numeric ID, or null",
                set: { text, s throws(InvalidValue) in s.unixOwner = try text.map { t throws(InvalidValue) in try Values.accountName(t, kind: "user") } },
                render: { $0.unixOwner.map(quoted) ?? "null" }),
            optional(
                "unix.group", expected: "a group name or numeric ID, or null",
                set: { text, s throws(InvalidValue) in s.unixGroup = try text.map { t throws(InvalidValue) in try Values.accountName(t, kind: "group") } },
                render: { $0.unixGroup.map(quoted) ?? "null" }),
            optional(
                "user", flag: "--user", expected: "a user name, or null",
                set: { text, s throws(InvalidValue) in s.user = try text.map(Values.userName) },
                render: { $0.user.map(quoted) ?? "null" }),
            udpListenKey,
            scalar(
                "udp.min_source_port", expected: "a whole number",
                set: { text, s throws(InvalidValue) in s.udpMinSourcePort = try Values.integer(text, in: 1...65535) },
                render: { "\($0.udpMinSourcePort)" }),
            scalar(
                "udp.source_rate", expected: "a whole number (datagrams per second)",
                set: { text, s throws(InvalidValue) in s.udpSourceRate = try Values.integer(text, in: 1...100_000_000) },
                render: { "\($0.udpSourceRate)" }),
            scalar(
                "udp.source_burst", expected: "a whole number (datagrams)",
                set: { text, s throws(InvalidValue) in s.udpSourceBurst = try Values.integer(text, in: 1...100_000_000) },
                render: { "\($0.udpSourceBurst)" }),
            scalar(
                "udp.global_rate", expected: "a whole number (datagrams per second)",
                set: { text, s throws(InvalidValue) in s.udpGlobalRate = try Values.integer(text, in: 1...100_000_000) },
                render: { "\($0.udpGlobalRate)" }),
            scalar(
                "udp.global_bandwidth", expected: "a size per second such as 128MiB",
                set: { text, s throws(InvalidValue) in s.udpGlobalBandwidth = try Units.parseSize(text, in: 1...(1 << 40)) },
                render: { Units.formatSize($0.udpGlobalBandwidth) }),
            scalar(
                "udp.source_table_size", expected: "a whole number (entries)",
                set: { text, s throws(InvalidValue) in s.udpSourceTableSize = try Values.integer(text, in: 64...16_777_216) },
                render: { "\($0.udpSourceTableSize)" }),
        ]
    }

    /// `udp.listen`: like `listen` (every item checked, no duplicates or overlaps), but empty is allowed and means
    /// that the UDP echo is off.
    static var udpListenKey: SettingKey {
        SettingKey(
            name: "udp.listen", flag: "--udp", isList: true, isOptional: false,
            expected: "a list of HOST:PORT addresses, e.g. [\"127.0.0.1:8888\"], or [] for off",
            apply: { raw, settings in
                guard case .list(let items) = raw else { return [ValueProblem(reason: "expected a list of addresses")] }
                var problems: [ValueProblem] = []
                var addresses: [ListenAddress] = []
                for (index, item) in items.enumerated() {
                    do throws(InvalidValue) {
                        addresses.append(try Values.address(item))
                    } catch {
                        problems.append(ValueProblem(index: index, value: item, reason: error.reason))
                        continue
                    }
                    if let reason = Validation.conflict(addresses.last!, with: addresses.dropLast()) {
                        problems.append(ValueProblem(index: index, value: item, reason: reason))
                    }
                }
                if problems.isEmpty { settings.udpListen = addresses }
                return problems
            },
            render: { "[" + $0.udpListen.map { quoted($0.description) }.joined(separator: ", ") + "]" })
    }

    /// `listen`: every item is checked, and the list as a whole must be non-empty and free of duplicate addresses and
    /// names. In the file an item may be a mapping with per-listener options (``ListenEntry``).
    static var listenKey: SettingKey {
        SettingKey(
            name: "listen", flag: "--listen", isList: true, isOptional: false,
            expected: "a list of HOST:PORT addresses or unix:/PATH sockets, e.g. [\"127.0.0.1:8888\", \"[::1]:8888\", \"unix:/run/echod/echo.sock\"]",
            apply: { raw, settings in
                let items: [ListItem]
                switch raw {
                case .list(let texts): items = texts.map(ListItem.text)
                case .items(let found): items = found
                default: return [ValueProblem(reason: "expected a list of addresses")]
                }
                guard !items.isEmpty else {
                    return [ValueProblem(reason: "no address: list at least one HOST:PORT to listen on")]
                }
                var problems: [ValueProblem] = []
                var entries: [ListenEntry] = []
                var complete = true
                for (index, item) in items.enumerated() {
                    let parsed = ListenEntry.parse(item, index: index)
                    complete = complete && parsed.entry != nil
                    problems += parsed.problems
                    guard let entry = parsed.entry else { continue }
                    if let reason = Validation.conflict(entry.target, with: entries.map(\.target)) {
                        let field = item.has("address") ? "address" : nil
                        problems.append(
                            ValueProblem(
                                index: index, value: entry.target.description, reason: reason, field: field, line: item.line(of: "address")))
                    }
                    if let name = entry.name, let other = entries.firstIndex(where: { $0.name == name }) {
                        problems.append(
                            ValueProblem(
                                index: index, value: name, reason: "this name is given twice (also item \(other))", field: "name",
                                line: item.line(of: "name")))
                    }
                    entries.append(entry)
                }
                if problems.isEmpty && complete { settings.listen = entries }
                return problems
            },
            render: { "[" + $0.listen.map(\.yaml).joined(separator: ", ") + "]" },
            itemKeys: ListenEntry.keys)
    }

    private static func scalar(
        _ name: String, flag: String? = nil, expected: String,
        set: @escaping (String, inout EchodSettings) throws(InvalidValue) -> Void,
        render: @escaping (EchodSettings) -> String
    ) -> SettingKey {
        SettingKey(
            name: name, flag: flag, isList: false, isOptional: false, expected: expected,
            apply: { raw, settings in
                guard case .text(let text) = raw else { return [ValueProblem(reason: "expected \(expected)")] }
                do throws(InvalidValue) {
                    try set(text, &settings)
                    return []
                } catch {
                    return [ValueProblem(value: text, reason: error.reason)]
                }
            },
            render: render)
    }

    private static func optional(
        _ name: String, flag: String? = nil, expected: String,
        set: @escaping (String?, inout EchodSettings) throws(InvalidValue) -> Void,
        render: @escaping (EchodSettings) -> String
    ) -> SettingKey {
        SettingKey(
            name: name, flag: flag, isList: false, isOptional: true, expected: expected,
            apply: { raw, settings in
                let text: String?
                switch raw {
                case .text(let value): text = value
                case .null: text = nil
                case .list, .items: return [ValueProblem(reason: "expected \(expected)")]
                }
                do throws(InvalidValue) {
                    try set(text, &settings)
                    return []
                } catch {
                    return [ValueProblem(value: text, reason: error.reason)]
                }
            },
            render: render)
    }
}
