import EchodText

/// One thing wrong with the configuration, named precisely enough to fix it without reading code:
/// where it came from, which key, the offending value, and why it was refused.
///
/// `description` reads like a compiler diagnostic, for example
/// `/etc/echod/echod.yaml:7: limits.max_conections: unknown key (did you mean "max_connections"?)`.
package struct ConfigProblem: Error, Sendable, CustomStringConvertible {
    /// The file path, `environment ECHOD_X` or `command line --x`; empty when the problem was found
    /// outside a load (``ListenAddress/init(parsing:)`` called directly).
    package var source: String
    /// The dotted key (`limits.max_connections`, `listen[1]`); empty for a problem with the file as a whole.
    package var key: String
    /// The offending value as written, when there is one.
    package var value: String?
    /// Why it was refused, and where it helps, what would be accepted.
    package var reason: String
    /// The 1-based line in the file, when the source is a file and the line is known.
    package var line: Int?

    /// Creates a problem; the loader fills in `source`, `key` and `line` for values parsed out of context.
    package init(source: String, key: String, value: String? = nil, reason: String, line: Int? = nil) {
        self.source = source
        self.key = key
        self.value = value
        self.reason = reason
        self.line = line
    }

    /// `SOURCE[:LINE]: KEY: invalid value "VALUE": REASON`, leaving out the parts that are absent.
    package var description: String {
        var parts: [String] = []
        if !source.isEmpty { parts.append(line.map { "\(source):\($0)" } ?? source) }
        if !key.isEmpty { parts.append(key) }
        if let value {
            parts.append("invalid value \(quoted(value)): \(reason)")
        } else {
            parts.append(reason)
        }
        return parts.joined(separator: ": ")
    }
}

/// Every problem found in one load. A load never stops at the first problem, so that one run of
/// `echod check-config` shows all that needs fixing.
package struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// The file's problems by line, then the environment's and the command line's.
    package var problems: [ConfigProblem]

    /// Creates an error from the problems found.
    package init(problems: [ConfigProblem]) {
        self.problems = problems
    }

    /// One problem per line.
    package var description: String {
        problems.map(\.description).joined(separator: "\n")
    }
}

/// Where an effective value came from; reported by `check-config` and in ``LoadedConfig/origins``.
package enum ConfigOrigin: Sendable, Equatable, CustomStringConvertible {
    /// Nothing set the key: the embedded default applies.
    case defaultValue
    /// The configuration file, by path.
    case file(String)
    /// An environment variable, by name (`ECHOD_LOG_LEVEL`).
    case environment(String)
    /// A command-line option, by flag (`--log-level`).
    case commandLine(String)

    /// `default`, `file PATH`, `environment NAME` or `command line --FLAG`, as `check-config` prints it.
    package var description: String {
        switch self {
        case .defaultValue: "default"
        case .file(let path): "file \(path)"
        case .environment(let name): "environment \(name)"
        case .commandLine(let flag): "command line \(flag)"
        }
    }
}
