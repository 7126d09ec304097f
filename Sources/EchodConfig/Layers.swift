import Configuration

/// A value found in one layer, with enough context to report a problem with it.
struct Candidate {
    var raw: RawValue
    var origin: ConfigOrigin
    /// For messages: the file path, `environment ECHOD_X` or `command line --x`.
    var source: String
    var line: Int?
    var itemLines: [Int?] = []
}

/// One source of configuration values. The command line's and the environment's are looked up through
/// swift-configuration (an `InMemoryProvider` and an `EnvironmentVariablesProvider`); the file's come from the
/// walk of its YAML tree in ``FileDocument``.
///
/// The layers are asked one by one rather than through one `ConfigReader` over all of them, because a reader
/// answers with the winning value only: it cannot say which layer that was (needed for `check-config`), and
/// it stops at the first unconvertible value, while every problem in every layer must be reported.
enum Layer {
    case commandLine(InMemoryProvider)
    case environment(EnvironmentVariablesProvider)
    case file(FileDocument)

    /// Keys in the environment live under `echod`, so `log.level` is read from `ECHOD_LOG_LEVEL`.
    static let environmentPrefix = "echod"

    static func commandLine(_ overrides: ConfigOverrides) -> Layer {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        func set(_ name: String, _ content: ConfigContent?) {
            guard let content else { return }
            values[AbsoluteConfigKey(name.split(separator: ".").map(String.init))] = ConfigValue(content, isSecret: false)
        }
        set("listen", overrides.listen.map { .stringArray($0) })
        set("threads", overrides.threads.map { .string($0) })
        set("log.level", overrides.logLevel.map { .string($0) })
        set("log.format", overrides.logFormat.map { .string($0) })
        set("admin.listen", overrides.adminListen.map { .string($0) })
        set("user", overrides.user.map { .string($0) })
        set("udp.listen", overrides.udpListen.map { .stringArray($0) })
        set("instance", overrides.instance.map { .string($0) })
        set("io.backend", overrides.ioBackend.map { .string($0) })
        return .commandLine(InMemoryProvider(name: "command line", values: values))
    }

    /// The value this layer gives `key`, nil when it gives none; throws when the value has the wrong type.
    func lookup(_ key: SettingKey) throws(ConfigProblem) -> Candidate? {
        let type: ConfigType = key.isList ? .stringArray : .string
        switch self {
        case .commandLine(let provider):
            guard let flag = key.flag else { return nil }
            let source = "command line \(flag)"
            guard let content = try Self.content(provider.snapshot(), key.path, type, source: source, key: key) else { return nil }
            return Candidate(raw: Self.raw(content, key), origin: .commandLine(flag), source: source)
        case .environment(let provider):
            let name = Self.variableName(for: key, in: provider)
            let source = "environment \(name)"
            let path = [Self.environmentPrefix] + key.path
            guard let content = try Self.content(provider.snapshot(), path, type, source: source, key: key) else { return nil }
            return Candidate(raw: Self.raw(content, key), origin: .environment(name), source: source)
        case .file(let document):
            guard let entry = document.entries[key.name] else { return nil }
            var candidate = Candidate(
                raw: .null, origin: .file(document.path), source: document.path, line: entry.line,
                itemLines: entry.itemLines)
            if let items = entry.items {
                candidate.raw = .items(items)
                return candidate
            }
            guard let content = entry.content else { return candidate }
            candidate.raw = Self.raw(content, key)
            return candidate
        }
    }

    /// The environment variable that sets `key`, as swift-configuration encodes it (`ECHOD_LIMITS_MAX_CONNECTIONS`).
    static func variableName(for key: SettingKey, in provider: EnvironmentVariablesProvider) -> String {
        let result = try? provider.value(forKey: AbsoluteConfigKey([environmentPrefix] + key.path), type: .string)
        return result?.encodedKey ?? key.name
    }

    private static func content(
        _ snapshot: any ConfigSnapshot, _ path: [String], _ type: ConfigType,
        source: String, key: SettingKey
    ) throws(ConfigProblem) -> ConfigContent? {
        do {
            return try snapshot.value(forKey: AbsoluteConfigKey(path), type: type).value?.content
        } catch {
            throw ConfigProblem(source: source, key: key.name, reason: "wrong type: expected \(key.expected) (\(error))")
        }
    }

    /// Normalises what a layer gave: surrounding blanks dropped (an environment file easily carries a trailing
    /// space), and for an optional key an empty value means null, so `ECHOD_ADMIN_LISTEN=` turns the endpoint off.
    private static func raw(_ content: ConfigContent, _ key: SettingKey) -> RawValue {
        switch content {
        case .stringArray(let items):
            let trimmed = items.map(trimmed)
            // "ECHOD_LISTEN=" splits into one empty item; it means an empty list, which is then refused as such.
            return .list(trimmed == [""] ? [] : trimmed)
        case .string(let text):
            let text = trimmed(text)
            return key.isOptional && text.isEmpty ? .null : .text(text)
        default:
            return .text("\(content)")
        }
    }

    private static func trimmed(_ text: String) -> String {
        String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
