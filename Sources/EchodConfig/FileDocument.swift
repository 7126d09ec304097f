import Configuration
import EchodText

/// The configuration file, read into a tree by ``YAMLTree`` (libyaml) and walked key by key against
/// ``SettingKey/all``.
///
/// A file needs a schema walk that swift-configuration cannot do: it neither reports a key it was never asked
/// about nor tells a null from the string "null". So unknown keys, wrong shapes (`threads: [1]`, `log: debug`),
/// nulls and line numbers come from the walk, and the text of each key that passed is handed to the same value
/// parsers as the environment's and the command line's.
struct FileDocument {
    /// Where a known key was found, and what it holds.
    struct Entry {
        var line: Int?
        var isNull: Bool
        /// Lines of a list's items, for problems with one item.
        var itemLines: [Int?]
        /// The text of a scalar, or of a list's items; nil for a null.
        var content: ConfigContent?
        /// A list whose items may be mappings (``SettingKey/itemKeys``): its items, in place of `content`.
        var items: [ListItem]? = nil
    }

    let path: String
    private(set) var problems: [ConfigProblem] = []
    /// Known keys present in the file with a usable shape, by dotted name.
    private(set) var entries: [String: Entry] = [:]
    private let keys: [SettingKey]

    init(path: String, bytes: [UInt8], keys: [SettingKey]) {
        self.path = path
        self.keys = keys
        // libyaml would refuse it too, but with a byte offset: this says what is wrong in words.
        guard String(validating: bytes, as: UTF8.self) != nil else {
            report(nil, "", reason: "not valid UTF-8 text")
            return
        }
        let root: YAMLNode?
        do throws(YAMLError) {
            root = try YAMLTree.parse(bytes)
        } catch {
            report(error.line, "", reason: error.reason)
            return
        }
        guard let root, !root.isNull else { return }  // empty file or only comments: sets nothing
        guard case .mapping(let mapping, _) = root else {
            report(root.line, "", reason: "the file must be a mapping of keys such as \"listen:\", but is \(Self.kind(of: root))")
            return
        }
        walk(mapping, prefix: [])
    }

    // MARK: Walking the keys

    private mutating func walk(_ mapping: [(key: YAMLNode, value: YAMLNode)], prefix: [String]) {
        for (keyNode, value) in mapping {
            let line = keyNode.line
            guard let scalar = keyNode.scalar else {
                report(line, prefix.joined(separator: "."), reason: "a key must be a plain name, not \(Self.kind(of: keyNode))")
                continue
            }
            let path = prefix + [scalar.text]
            let name = path.joined(separator: ".")
            if let key = keys.first(where: { $0.path == path }) {
                leaf(key, value, line: line)
            } else if keys.contains(where: { $0.path.starts(with: path) }) {
                section(path, value, line: line)
            } else {
                report(line, name, reason: unknownKeyReason(scalar.text, prefix: prefix))
            }
        }
    }

    private mutating func section(_ path: [String], _ value: YAMLNode, line: Int?) {
        switch value {
        case .mapping(let mapping, _):
            walk(mapping, prefix: path)
        case _ where value.isNull:
            break  // `admin:` with everything below commented out: nothing set
        default:
            let children = childNames(of: path).joined(separator: ", ")
            report(
                line, path.joined(separator: "."), value: Self.flow(value),
                reason: "wrong type: expected a section with the keys \(children), got \(Self.kind(of: value))")
        }
    }

    private mutating func leaf(_ key: SettingKey, _ value: YAMLNode, line: Int?) {
        let wrongType = "wrong type: expected \(key.expected), got \(Self.kind(of: value))"
        switch value {
        case _ where value.isNull:
            guard key.isOptional else {
                report(line, key.name, reason: "no value; give \(key.expected), or remove the key to use the default")
                return
            }
            entries[key.name] = Entry(line: line, isNull: true, itemLines: [], content: nil)
        case .scalar(let scalar):
            guard !key.isList else {
                report(line, key.name, value: scalar.text, reason: wrongType)
                return
            }
            entries[key.name] = Entry(line: line, isNull: false, itemLines: [], content: .string(scalar.text))
        case .sequence(let sequence, _) where key.isList:
            var items: [ListItem] = []
            for (index, item) in sequence.enumerated() {
                let name = "\(key.name)[\(index)]"
                if let scalar = item.scalar, !item.isNull {
                    items.append(.text(scalar.text))
                } else if case .mapping(let pairs, let itemLine) = item, !key.itemKeys.isEmpty {
                    let (fields, complete) = fields(of: pairs, in: name, keys: key.itemKeys)
                    items.append(complete ? .mapping(fields, line: itemLine) : .partial(fields, line: itemLine))
                } else {
                    var reason = item.isNull ? "empty item" : "wrong type: expected a HOST:PORT string, got \(Self.kind(of: item))"
                    if case .mapping = item {
                        reason += "; per-listener options (proxy_protocol, tag) are for TCP and Unix stream listeners, under listen:"
                    }
                    report(item.line, name, value: Self.flow(item), reason: reason)
                }
            }
            guard items.count == sequence.count else { return }
            var entry = Entry(line: line, isNull: false, itemLines: sequence.map(\.line))
            if key.itemKeys.isEmpty {
                entry.content = .stringArray(items.map { if case .text(let text) = $0 { text } else { "" } })
            } else {
                entry.items = items
            }
            entries[key.name] = entry
        default:
            report(line, key.name, value: Self.flow(value), reason: wrongType)
        }
    }

    /// The keys of a mapping item (`listen: [{address: ..., tag: banner}]`), checked against `keys` as the file's own
    /// keys are against the table: unknown keys (with the nearest one), nulls and wrong shapes are reported under the
    /// item's name (`listen[1].proxy_protocl`) with their lines. The keys that passed, and whether all did.
    private mutating func fields(
        of pairs: [(key: YAMLNode, value: YAMLNode)], in item: String, keys: [ItemKey]
    ) -> (fields: [ItemField], complete: Bool) {
        var fields: [ItemField] = []
        let before = problems.count
        for (keyNode, value) in pairs {
            let line = keyNode.line
            guard let scalar = keyNode.scalar else {
                report(line, item, reason: "a key must be a plain name, not \(Self.kind(of: keyNode))")
                continue
            }
            let name = "\(item).\(scalar.text)"
            guard let key = keys.first(where: { $0.name == scalar.text }) else {
                let names = keys.map(\.name)
                let reason =
                    Suggestions.closest(to: scalar.text, among: names).map { "unknown key (did you mean \(quoted($0))?)" }
                    ?? "unknown key; valid keys here: " + names.joined(separator: ", ")
                report(line, name, reason: reason)
                continue
            }
            let wrongType = "wrong type: expected \(key.expected), got \(Self.kind(of: value))"
            switch value {
            case _ where value.isNull:
                report(line, name, reason: "no value; give \(key.expected), or remove the key to use the default")
            case .scalar(let text) where !key.isList:
                fields.append(ItemField(name: scalar.text, value: .text(text.text), line: line))
            case .scalar(let text):
                // One shape per key, as for `listen` itself: what check-config prints is what the file says.
                report(line, name, value: text.text, reason: wrongType + "; write [\(quoted(text.text))] for a list of one")
            case .sequence(let sequence, _) where key.isList:
                var texts: [String] = []
                let reported = problems.count
                for (index, element) in sequence.enumerated() {
                    if let text = element.scalar, !element.isNull {
                        texts.append(text.text)
                    } else {
                        report(
                            element.line, "\(name)[\(index)]", value: Self.flow(element),
                            reason: element.isNull ? "empty item" : "wrong type: expected a single value, got \(Self.kind(of: element))")
                    }
                }
                if problems.count == reported {
                    fields.append(ItemField(name: scalar.text, value: .list(texts), line: line, itemLines: sequence.map(\.line)))
                }
            default:
                report(line, name, value: Self.flow(value), reason: wrongType)
            }
        }
        return (fields, problems.count == before)
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
            return
                "unknown key; write a nested key inside its section (\(name.split(separator: ".")[0]): then an indented \(name.split(separator: ".").dropFirst().joined(separator: ".")):), not with dots"
        }
        let siblings = childNames(of: prefix)
        if let near = Suggestions.closest(to: name, among: siblings) {
            return "unknown key (did you mean \(quoted(near))?)"
        }
        let elsewhere = keys.filter { $0.path.count > 1 || !prefix.isEmpty }
        if let near = Suggestions.closest(to: name, among: elsewhere.map { $0.path.last! }),
            let key = elsewhere.first(where: { $0.path.last! == near })
        {
            return "unknown key (did you mean \(quoted(key.name))?)"
        }
        return "unknown key; valid keys here: " + siblings.joined(separator: ", ")
    }

    // MARK: Reporting

    private mutating func report(_ line: Int?, _ key: String, value: String? = nil, reason: String) {
        problems.append(ConfigProblem(source: path, key: key, value: value, reason: reason, line: line))
    }

    // MARK: Node helpers

    private static func kind(of node: YAMLNode) -> String {
        switch node {
        case .scalar: "a single value"
        case .sequence: "a list"
        case .mapping: "a mapping of keys"
        }
    }

    /// A value in one line, for messages: `[1, 2]`, `{a: 1}`.
    private static func flow(_ node: YAMLNode) -> String {
        switch node {
        case .scalar(let scalar): scalar.text
        case .sequence(let sequence, _): "[" + sequence.map(flow).joined(separator: ", ") + "]"
        case .mapping(let mapping, _): "{" + mapping.map { "\(flow($0.key)): \(flow($0.value))" }.joined(separator: ", ") + "}"
        }
    }
}
