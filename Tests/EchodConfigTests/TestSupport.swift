import EchodTestSupport
import Testing

@testable import EchodConfig

extension TempDir {
    /// A default path that does not exist, so that the machine's own /etc/echod/echod.yaml never leaks in.
    var absentDefault: String { file("absent-default.yaml") }
}

/// Loads `yaml` (when given) as the config file, with an empty environment unless one is given.
func load(
    _ yaml: String?, env: [String: String] = [:], overrides: ConfigOverrides = .init(), in dir: TempDir = TempDir()
) throws(ConfigError) -> LoadedConfig {
    let path = yaml.map { dir.write("echod.yaml", $0) }
    return try ConfigLoader.load(path: path, overrides: overrides, environment: env, defaultPath: dir.absentDefault)
}

/// The problems a load reports; records an issue when the load unexpectedly succeeds.
func problems(
    _ yaml: String?, env: [String: String] = [:], overrides: ConfigOverrides = .init(),
    sourceLocation: SourceLocation = #_sourceLocation
) -> [ConfigProblem] {
    do {
        _ = try load(yaml, env: env, overrides: overrides)
        Issue.record("expected the load to fail", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.problems
    }
}

/// The single problem a load reports; records an issue unless there is exactly one.
func problem(
    _ yaml: String?, env: [String: String] = [:], overrides: ConfigOverrides = .init(),
    sourceLocation: SourceLocation = #_sourceLocation
) -> ConfigProblem? {
    let found = problems(yaml, env: env, overrides: overrides, sourceLocation: sourceLocation)
    guard found.count == 1 else {
        Issue.record("expected exactly one problem, got \(found.count): \(found)", sourceLocation: sourceLocation)
        return nil
    }
    return found[0]
}

/// Loads expecting success; records the problems as an issue otherwise.
func settings(
    _ yaml: String?, env: [String: String] = [:], overrides: ConfigOverrides = .init(),
    sourceLocation: SourceLocation = #_sourceLocation
) -> EchodSettings? {
    do {
        return try load(yaml, env: env, overrides: overrides).settings
    } catch {
        Issue.record("unexpected problems:\n\(error)", sourceLocation: sourceLocation)
        return nil
    }
}
