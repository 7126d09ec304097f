import Configuration
import EchodText
import FoundationEssentials

/// The result of a successful load: validated settings and where each value came from.
package struct LoadedConfig: Sendable {
    /// The effective settings.
    package var settings: EchodSettings
    /// The file that was read; nil when running on embedded defaults.
    package var filePath: String?
    /// Dotted key (`limits.idle_timeout`) to the layer its effective value came from; every key is present.
    package var origins: [String: ConfigOrigin]
    /// Things worth a log line that do not stop the daemon, such as unknown `ECHOD_*` variables.
    package var warnings: [String]
}

/// Loads the configuration: embedded defaults, overlaid by the file, the environment and the command line,
/// in that order of increasing precedence.
///
/// Loading is a plain synchronous function without global state: the daemon runs it on a helper thread at
/// start and on every SIGHUP, and a failed reload changes nothing.
package enum ConfigLoader {
    /// The file read when no path is given, if it exists.
    package static let defaultPath = "/etc/echod/echod.yaml"

    /// Loads and validates the configuration, reporting every problem at once.
    ///
    /// - Parameters:
    ///   - path: The file to read. nil: `defaultPath` when that file exists, else embedded defaults only.
    ///     An explicit path that does not exist is an error.
    ///   - overrides: Command-line values; they win over everything else.
    ///   - environment: Variables named `ECHOD_` + the key in upper case with `_` for `.`
    ///     (`ECHOD_LIMITS_MAX_CONNECTIONS`); `ECHOD_LISTEN` is comma-separated.
    ///   - defaultPath: Where to look when `path` is nil (tests point it elsewhere).
    /// - Throws: ``ConfigError`` listing every problem in every layer, including values that a higher layer
    ///   overrides: the file must stay valid on its own, or removing an override would break the next start.
    package static func load(
        path: String?,
        overrides: ConfigOverrides = .init(),
        environment: [String: String] = ProcessInfo.processInfo.environment,
        defaultPath: String = defaultPath
    ) throws(ConfigError) -> LoadedConfig {
        let keys = SettingKey.all
        var problems: [ConfigProblem] = []

        var file: FileDocument?
        let chosenPath = path ?? (FileReading.exists(defaultPath) ? defaultPath : nil)
        if let chosenPath {
            if !FileReading.exists(chosenPath) {
                problems.append(ConfigProblem(source: chosenPath, key: "", reason: "configuration file not found"))
            } else {
                do throws(InvalidValue) {
                    file = FileDocument(path: chosenPath, bytes: try FileReading.read(chosenPath), keys: keys)
                    problems += file!.problems
                } catch {
                    problems.append(ConfigProblem(source: chosenPath, key: "", reason: error.reason))
                }
            }
        }

        let envProvider = EnvironmentVariablesProvider(environmentVariables: environment)
        let layers = [Layer.commandLine(overrides), .environment(envProvider)] + (file.map { [Layer.file($0)] } ?? [])
        var resolution = Resolution()
        for key in keys {
            resolution.resolve(key, from: layers)
        }
        problems += resolution.problems
        problems += resolution.crossKeyProblems()
        guard problems.isEmpty else { throw ConfigError(problems: inReadingOrder(problems, file: chosenPath)) }

        let known = keys.map { Layer.variableName(for: $0, in: envProvider) }
        return LoadedConfig(
            settings: resolution.settings,
            filePath: file?.path,
            origins: resolution.origins,
            warnings: unknownVariables(in: environment, known: known) + Validation.warnings(resolution.settings))
    }

    /// The file's problems first, by line (as an editor shows the file), then the environment's and the command
    /// line's in key order.
    static func inReadingOrder(_ problems: [ConfigProblem], file: String?) -> [ConfigProblem] {
        let fromFile = problems.enumerated().filter { $0.element.source == file }
            .sorted { ($0.element.line ?? 0, $0.offset) < ($1.element.line ?? 0, $1.offset) }
            .map(\.element)
        return fromFile + problems.filter { $0.source != file }
    }

    /// `ECHOD_*` variables that set nothing: probably a typo, worth a warning but not worth refusing to start
    /// (the environment is shared with other tools, which may use the prefix too).
    static func unknownVariables(in environment: [String: String], known: [String]) -> [String] {
        let prefix = "ECHOD_"
        let knownSuffixes = known.map { String($0.dropFirst(prefix.count)) }
        return environment.keys.sorted().filter { $0.hasPrefix(prefix) && !known.contains($0) }.map { name in
            var warning = "environment \(name): unknown variable, ignored"
            if let near = Suggestions.closest(to: String(name.dropFirst(prefix.count)), among: knownSuffixes) {
                warning += " (did you mean \(prefix + near)?)"
            }
            return warning
        }
    }
}
