import Configuration
import Yams

/// The configuration file, checked for structure with Yams and read for values through swift-configuration's
/// `YAMLSnapshot`.
///
/// swift-configuration has no notion of a schema: it neither reports a key it was never asked about nor tells
/// a null from the string "null". So the file is first walked key by key against ``SettingKey/all``: unknown
/// keys, wrong shapes (`threads: [1]`, `log: debug`), nulls and line numbers come from that walk; the values of
/// the keys that passed are then looked up in the snapshot like those of every other layer.
struct FileDocument {
    /// Where a known key was found, and in what shape.
    struct Entry {
        var line: Int?
        var isNull: Bool
        /// Lines of a list's items, for problems with one item.
        var itemLines: [Int?]
        /// The YAML value, kept to rebuild a clean document if swift-configuration refuses the original.
        var node: Node
    }

    let path: String
    private(set) var problems: [ConfigProblem] = []
    /// Known keys present in the file with a usable shape, by dotted name.
    private(set) var entries: [String: Entry] = [:]
    /// swift-configuration's view of the file; nil when the file sets nothing.
    private(set) var snapshot: YAMLSnapshot?
    private let keys: [SettingKey]

    init(path: String, bytes: [UInt8], keys: [SettingKey]) {
        self.path = path
        self.keys = keys
        guard let text = String(validating: bytes, as: UTF8.self) else {
            report(nil, "", reason: "not valid UTF-8 text")
            return
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            reportSyntax(error)
            return
        }
        guard let root, !Self.isNull(root) else { return }  // empty file or only comments: sets nothing
        guard case .mapping(let mapping) = root else {
            report(root.mark?.line, "", reason: "the file must be a mapping of keys such as \"listen:\", but is \(Self.kind(of: root))")
            return
        }
        walk(mapping, prefix: [])
        snapshot = makeSnapshot(bytes)
    }

    // MARK: Walking the keys

    private mutating func walk(_ mapping: Node.Mapping, prefix: [String]) {
        for (keyNode, value) in mapping {
            let line = keyNode.mark?.line
            guard case .scalar(let scalar) = keyNode else {
                report(line, prefix.joined(separator: "."), reason: "a key must be a plain name, not \(Self.kind(of: keyNode))")
                continue
            }
            let path = prefix + [scalar.string]
            let name = path.joined(separator: ".")
            if let key = keys.first(where: { $0.path == path }) {
                leaf(key, value, line: line)
            } else if keys.contains(where: { $0.path.starts(with: path) }) {
                section(path, value, line: line)
            } else {
                report(line, name, reason: unknownKeyReason(scalar.string, prefix: prefix))
            }
        }
    }

    private mutating func section(_ path: [String], _ value: Node, line: Int?) {
        switch value {
        case .mapping(let mapping):
            walk(mapping, prefix: path)
        case _ where Self.isNull(value):
            break  // `admin:` with everything below commented out: nothing set
        default:
            let children = childNames(of: path).joined(separator: ", ")
            report(line, path.joined(separator: "."), value: Self.flow(value),
                   reason: "wrong type: expected a section with the keys \(children), got \(Self.kind(of: value))")
        }
    }

    private mutating func leaf(_ key: SettingKey, _ value: Node, line: Int?) {
        let wrongType = "wrong type: expected \(key.expected), got \(Self.kind(of: value))"
        switch value {
        case _ where Self.isNull(value):
            guard key.isOptional else {
                report(line, key.name, reason: "no value; give \(key.expected), or remove the key to use the default")
                return
            }
            entries[key.name] = Entry(line: line, isNull: true, itemLines: [], node: value)
        case .scalar(let scalar):
            guard !key.isList else {
                report(line, key.name, value: scalar.string, reason: wrongType)
                return
            }
            entries[key.name] = Entry(line: line, isNull: false, itemLines: [], node: value)
        case .sequence(let sequence) where key.isList:
            var usable = true
            for (index, item) in sequence.enumerated() where Self.isNull(item) || item.scalar == nil {
                usable = false
                report(item.mark?.line ?? line, "\(key.name)[\(index)]", value: Self.flow(item),
                       reason: Self.isNull(item) ? "empty item" : "wrong type: expected a HOST:PORT string, got \(Self.kind(of: item))")
            }
            if usable {
                entries[key.name] = Entry(line: line, isNull: false, itemLines: sequence.map { $0.mark?.line }, node: value)
            }
        default:
            report(line, key.name, value: Self.flow(value), reason: wrongType)
        }
    }

    private func childNames(of prefix: [String]) -> [String] {
        var names: [String] = []
        for key in keys where key.path.count > prefix.count && key.path.starts(with: prefix) {
            let child = key.path[prefix.count]
            if !names.contains(child) { names.append(child) }
        }
        return names
    }

    /// "unknown key", with the nearest key at the same level, else the same name elsewhere
    /// (`max_connections` at the top belongs under `limits:`), else the keys that are valid here.
    private func unknownKeyReason(_ name: String, prefix: [String]) -> String {
        if name.contains("."), keys.contains(where: { $0.name == (prefix + [name]).joined(separator: ".") }) {
            // swift-configuration would flatten `limits.max_connections:` onto the nested key; one spelling is enough.
            return "unknown key; write a nested key inside its section (\(name.split(separator: ".")[0]): then an indented \(name.split(separator: ".").dropFirst().joined(separator: ".")):), not with dots"
        }
        let siblings = childNames(of: prefix)
        if let near = Suggestions.closest(to: name, among: siblings) {
            return "unknown key (did you mean \(quoted(near))?)"
        }
        let elsewhere = keys.filter { $0.path.count > 1 || !prefix.isEmpty }
        if let near = Suggestions.closest(to: name, among: elsewhere.map { $0.path.last! }),
           let key = elsewhere.first(where: { $0.path.last! == near }) {
            return "unknown key (did you mean \(quoted(key.name))?)"
        }
        return "unknown key; valid keys here: " + siblings.joined(separator: ", ")
    }

    // MARK: The swift-configuration snapshot

    private mutating func makeSnapshot(_ bytes: [UInt8]) -> YAMLSnapshot? {
        do {
            return try YAMLSnapshot(data: bytes.span.bytes, providerName: path, parsingOptions: .default)
        } catch {
            // YAMLSnapshot refuses a whole file for a list inside a list or a non-string key, even under an
            // unknown key. The walk has reported those already; give it just the well-formed known keys so that
            // the remaining values are still checked and every problem shows up in one run.
            do {
                let clean = try Array(Yams.serialize(node: cleanDocument()).utf8)
                return try YAMLSnapshot(data: clean.span.bytes, providerName: path, parsingOptions: .default)
            } catch {
                report(nil, "", reason: "cannot read the values: \(error)")
                return nil
            }
        }
    }

    /// A document with only the known keys that passed the walk, nested as in the file.
    private func cleanDocument() -> Node {
        var sections: [(String, [(Node, Node)])] = []
        var top: [(Node, Node)] = []
        for key in keys {
            guard let entry = entries[key.name], !entry.isNull else { continue }
            let path = key.path
            if path.count == 1 {
                top.append((Node(path[0]), entry.node))
            } else if let index = sections.firstIndex(where: { $0.0 == path[0] }) {
                sections[index].1.append((Node(path[1]), entry.node))
            } else {
                sections.append((path[0], [(Node(path[1]), entry.node)]))
            }
        }
        return Node(top + sections.map { (Node($0.0), Node($0.1)) })
    }

    // MARK: Reporting

    private mutating func report(_ line: Int?, _ key: String, value: String? = nil, reason: String) {
        problems.append(ConfigProblem(source: path, key: key, value: value, reason: reason, line: line))
    }

    private mutating func reportSyntax(_ error: any Error) {
        guard let yamlError = error as? YamlError else {
            report(nil, "", reason: "cannot parse as YAML: \(error)")
            return
        }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            var reason = "YAML syntax error: \(problem) (column \(mark.column))"
            if let context { reason += "; \(context.text) at line \(context.mark.line)" }
            report(mark.line, "", reason: reason)
        case .duplicatedKeysInMapping(let duplicates, let context):
            let names = duplicates.map(quoted).joined(separator: ", ")
            // Yams marks where the mapping starts, not where the second copy is: say so rather than point at a wrong line.
            report(nil, "", reason: "YAML error: key \(names) appears more than once in the mapping that starts at line \(context.mark.line)")
        default:
            report(nil, "", reason: "YAML syntax error: \(yamlError)")
        }
    }

    // MARK: Node helpers

    /// A plain `null`, `~` or nothing at all; a quoted "null" is a string.
    private static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node else { return false }
        return scalar.style == .plain && node.tag.rawValue == Tag.Name.null.rawValue
    }

    private static func kind(of node: Node) -> String {
        switch node {
        case .scalar: "a single value"
        case .sequence: "a list"
        case .mapping: "a mapping of keys"
        case .alias: "an alias"
        }
    }

    /// A value in one line, for messages: `[1, 2]`, `{a: 1}`.
    private static func flow(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar): scalar.string
        case .sequence(let sequence): "[" + sequence.map(flow).joined(separator: ", ") + "]"
        case .mapping(let mapping): "{" + mapping.map { "\(flow($0.key)): \(flow($0.value))" }.joined(separator: ", ") + "}"
        case .alias: "*alias"
        }
    }
}
