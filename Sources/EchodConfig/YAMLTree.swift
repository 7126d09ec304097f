import CYAML
import EchodText

/// A YAML document as a tree of scalars, lists and mappings with their line numbers, read with libyaml.
///
/// Why libyaml and not Yams (which wraps a copy of the same libyaml): Yams needs all of Foundation
/// (`NSRegularExpression` to resolve tags, `DateFormatter`, `NumberFormatter`), and a statically linked Foundation
/// brings ICU with its data table. Measured on the release binary: `icudt76_dat` alone was 33.9 MB of the 63 MB
/// stripped binary. echod's file needs none of that: every value is handed over as text and parsed by
/// ``Values``, so a tree with line numbers is all the key walk in ``FileDocument`` needs. libyaml does the
/// parsing (scanner, parser, errors with positions); this file only stacks its events into nodes.
///
/// Hostile input stays bounded: nesting deeper than ``YAMLTree/maxDepth`` is refused (the walk and the
/// messages recurse), and so is a document that aliases would expand past ``YAMLTree/maxNodes`` nodes
/// ("billion laughs").
indirect enum YAMLNode {
    case scalar(YAMLScalar)
    case sequence([YAMLNode], line: Int)
    case mapping([(key: YAMLNode, value: YAMLNode)], line: Int)

    /// 1-based line where the node starts.
    var line: Int {
        switch self {
        case .scalar(let scalar): scalar.line
        case .sequence(_, let line), .mapping(_, let line): line
        }
    }

    var scalar: YAMLScalar? {
        if case .scalar(let scalar) = self { scalar } else { nil }
    }

    /// A plain `null`, `~` or nothing at all (YAML 1.1's null); a quoted "null" is a string.
    var isNull: Bool {
        guard let scalar, scalar.isPlain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.text)
    }
}

struct YAMLScalar {
    var text: String
    /// Plain style without an explicit tag: only such a scalar can be a null.
    var isPlain: Bool
    var line: Int
}

/// Why a file is not a YAML document echod can read; `line` is 1-based.
struct YAMLError: Error {
    var line: Int?
    var reason: String
}

enum YAMLTree {
    /// Deeper nesting than any echod file needs, shallow enough for the recursive walk and messages.
    static let maxDepth = 64
    /// Nodes in the document once aliases are expanded.
    static let maxNodes = 100_000

    /// The document's root node; nil for an empty file (or one with only comments).
    static func parse(_ bytes: [UInt8]) throws(YAMLError) -> YAMLNode? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) != 0 else { throw YAMLError(line: nil, reason: "YAML parser: out of memory") }
        defer { yaml_parser_delete(&parser) }
        let result: Result<YAMLNode?, YAMLError> = bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var builder = Builder()
            do throws(YAMLError) {
                return .success(try builder.run(&parser))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Stacks libyaml's events into nodes, without recursion.
    private struct Builder {
        private enum Open {
            case sequence([YAMLNode], line: Int, anchor: String?)
            case mapping([(key: YAMLNode, value: YAMLNode)], key: YAMLNode?, line: Int, anchor: String?)
        }

        private var stack: [Open] = []
        private var anchors: [String: (node: YAMLNode, size: Int)] = [:]
        /// Node count of each open collection so far, for the anchor table.
        private var sizes: [Int] = []
        private var total = 0
        private var root: YAMLNode?
        private var documents = 0

        mutating func run(_ parser: inout yaml_parser_t) throws(YAMLError) -> YAMLNode? {
            var event = yaml_event_t()
            while true {
                guard yaml_parser_parse(&parser, &event) != 0 else { throw Self.syntaxError(parser) }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return root
                case YAML_DOCUMENT_START_EVENT:
                    documents += 1
                    if documents > 1 {
                        throw YAMLError(line: line, reason: "YAML error: a second document (\"---\"); the file must hold one")
                    }
                case YAML_SCALAR_EVENT:
                    let data = event.data.scalar
                    let text = String(decoding: UnsafeBufferPointer(start: data.value, count: data.length), as: UTF8.self)
                    let plain = data.style == YAML_PLAIN_SCALAR_STYLE && data.tag == nil
                    try add(.scalar(YAMLScalar(text: text, isPlain: plain, line: line)), size: 1, anchor: Self.string(data.anchor))
                case YAML_ALIAS_EVENT:
                    let name = Self.string(event.data.alias.anchor) ?? ""
                    guard let anchored = anchors[name] else {
                        throw YAMLError(line: line, reason: "YAML error: alias *\(name) names no anchor (&\(name)) before it")
                    }
                    try add(anchored.node, size: anchored.size, anchor: nil)
                case YAML_SEQUENCE_START_EVENT:
                    try open(.sequence([], line: line, anchor: Self.string(event.data.sequence_start.anchor)), line: line)
                case YAML_MAPPING_START_EVENT:
                    try open(.mapping([], key: nil, line: line, anchor: Self.string(event.data.mapping_start.anchor)), line: line)
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    let size = sizes.removeLast()
                    switch stack.removeLast() {
                    case .sequence(let items, let start, let anchor):
                        try add(.sequence(items, line: start), size: size, anchor: anchor, counted: true)
                    case .mapping(let pairs, _, let start, let anchor):
                        try add(.mapping(pairs, line: start), size: size, anchor: anchor, counted: true)
                    }
                default:
                    break  // stream start, document end
                }
            }
        }

        private mutating func open(_ collection: Open, line: Int) throws(YAMLError) {
            guard stack.count < YAMLTree.maxDepth else {
                throw YAMLError(line: line, reason: "YAML error: nested deeper than \(YAMLTree.maxDepth) levels")
            }
            try count(1, line: line)
            stack.append(collection)
            sizes.append(1)
        }

        /// Puts a finished node into the collection that is open, or makes it the root.
        private mutating func add(_ node: YAMLNode, size: Int, anchor: String?, counted: Bool = false) throws(YAMLError) {
            if !counted { try count(size, line: node.line) }
            if let anchor { anchors[anchor] = (node, size) }
            guard !stack.isEmpty else {
                root = node
                return
            }
            sizes[sizes.count - 1] += size
            switch stack.removeLast() {
            case .sequence(var items, let line, let anchor):
                items.append(node)
                stack.append(.sequence(items, line: line, anchor: anchor))
            case .mapping(let pairs, nil, let line, let anchor):
                if let name = node.scalar?.text,
                    let first = pairs.first(where: { $0.key.scalar?.text == name })
                {
                    throw YAMLError(
                        line: node.line,
                        reason: "YAML error: key \(quoted(name)) appears more than once in a mapping "
                            + "(lines \(first.key.line) and \(node.line))")
                }
                stack.append(.mapping(pairs, key: node, line: line, anchor: anchor))
            case .mapping(var pairs, let key?, let line, let anchor):
                pairs.append((key, node))
                stack.append(.mapping(pairs, key: nil, line: line, anchor: anchor))
            }
        }

        private mutating func count(_ size: Int, line: Int) throws(YAMLError) {
            total += size
            guard total <= YAMLTree.maxNodes else {
                throw YAMLError(line: line, reason: "YAML error: more than \(YAMLTree.maxNodes) values once aliases are expanded")
            }
        }

        private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
            pointer.map { String(cString: $0) }
        }

        /// libyaml's own words for a reader, scanner or parser error, with its (0-based) position made 1-based.
        private static func syntaxError(_ parser: yaml_parser_t) -> YAMLError {
            let problem = parser.problem.map { String(cString: $0) } ?? "unknown error"
            if parser.error == YAML_READER_ERROR {
                return YAMLError(line: nil, reason: "YAML syntax error: \(problem) (byte \(parser.problem_offset))")
            }
            var reason = "YAML syntax error: \(problem) (column \(parser.problem_mark.column + 1))"
            if let context = parser.context.map({ String(cString: $0) }) {
                reason += "; \(context) at line \(parser.context_mark.line + 1)"
            }
            return YAMLError(line: Int(parser.problem_mark.line) + 1, reason: reason)
        }
    }
}
