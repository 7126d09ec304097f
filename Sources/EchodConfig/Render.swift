import EchodText

extension LoadedConfig {
    /// The effective configuration for `echod check-config`: every key in config syntax (the output is itself
    /// a valid configuration file), each with where its value came from as a trailing comment.
    package func render() -> String {
        var lines: [(text: String, comment: String)] = []
        var section: String?
        for key in SettingKey.all {
            let path = key.path
            let indent: String
            if path.count > 1 {
                if section != path[0] {
                    section = path[0]
                    lines.append((path[0] + ":", ""))
                }
                indent = "  "
            } else {
                section = nil
                indent = ""
            }
            var comment = (origins[key.name] ?? .defaultValue).description
            if key.name == "threads" && settings.threadsIsAuto {
                comment += "; auto = \(settings.threads) (online CPUs)"
            }
            if key.name == "instance" && settings.instanceIsHostName {
                comment += "; null = the host name, \(quoted(settings.instance))"
            }
            lines.append(("\(indent)\(path.last!): \(key.render(settings))", comment))
        }
        let column = min(48, lines.map(\.text.count).max() ?? 0) + 2
        var out = "# echod configuration: " + (filePath ?? "embedded defaults (no configuration file)") + "\n"
        out += "# precedence: command line > environment (ECHOD_*) > file > embedded defaults\n"
        for line in lines {
            guard !line.comment.isEmpty else {
                out += line.text + "\n"
                continue
            }
            let padding = String(repeating: " ", count: max(2, column - line.text.count))
            out += line.text + padding + "# " + line.comment + "\n"
        }
        return out
    }
}
