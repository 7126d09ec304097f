/// The text a tagging listener sends (`tag_text`): literal text with placeholders such as `{hostname}` and
/// `{instance}`, and `{{`/`}}` for literal braces.
///
/// Parsed once when the configuration is loaded, so that an unknown placeholder is a configuration error and not a
/// surprise on the wire; expanded per connection by ``render(_:)``.
package struct TagTemplate: Sendable, Hashable, CustomStringConvertible {
    /// What a placeholder stands for. The values come from the daemon; this type only names them.
    package enum Placeholder: String, Sendable, Hashable, CaseIterable {
        /// The kernel's host name.
        case hostname
        /// The `instance` setting.
        case instance
        /// The listener's label, as the `listening` log line shows it.
        case listener
        /// The client's address (from the PROXY protocol header when there is one).
        case client
        /// echod's process ID.
        case pid
        /// `POD_NAME` and `NODE_NAME` (the Kubernetes Downward API); empty when unset.
        case pod, node
    }

    /// A run of literal text, or one placeholder.
    package enum Segment: Sendable, Hashable {
        case literal(String)
        case placeholder(Placeholder)
    }

    /// The longest template accepted, in bytes of UTF-8.
    package static let maximumBytes = 1024
    /// The longest expansion ``render(_:)`` returns, in bytes of UTF-8: a long `{pod}` cannot make a tag unbounded.
    package static let maximumExpansionBytes = 4096

    /// `{hostname}`: the default `tag_text`.
    package static let hostname = TagTemplate(segments: [.placeholder(.hostname)])

    /// Literal runs and placeholders in order; adjacent literals are one segment, and there are no empty ones.
    package let segments: [Segment]

    private init(segments: [Segment]) {
        self.segments = segments
    }

    /// Parses a template. Refused: an empty template, more than ``maximumBytes`` bytes, an unknown or unclosed
    /// placeholder and a lone `}`, each with the valid placeholders or the escape in the message.
    package init(parsing text: String) throws(InvalidValue) {
        let valid = "valid placeholders: " + Placeholder.allCases.map { "{\($0.rawValue)}" }.joined(separator: " ")
        guard !text.isEmpty else { throw InvalidValue(reason: "empty template; e.g. \"{hostname}\"") }
        let size = text.utf8.count
        guard size <= Self.maximumBytes else {
            throw InvalidValue(reason: "template is \(size) bytes; at most \(Self.maximumBytes)")
        }
        // Scalar by scalar, not by Character: a brace must stay a brace whatever combining mark follows it.
        var segments: [Segment] = []
        var literal = String.UnicodeScalarView()
        var rest = Substring(text).unicodeScalars
        while let first = rest.popFirst() {
            switch first {
            case "{" where rest.first == "{", "}" where rest.first == "}":
                literal.append(first)
                rest.removeFirst()
            case "{":
                guard let close = rest.firstIndex(where: { $0 == "}" || $0 == "{" }), rest[close] == "}" else {
                    let shown = "{" + String(String.UnicodeScalarView(rest.prefix(20)))
                    throw InvalidValue(reason: "unclosed placeholder \(quoted(shown)); write {{ for a literal brace; \(valid)")
                }
                let name = String(String.UnicodeScalarView(rest[..<close]))
                guard let placeholder = Placeholder(rawValue: name) else {
                    throw InvalidValue(reason: "unknown placeholder \(quoted("{" + name + "}")); \(valid) ({{ and }} for literal braces)")
                }
                if !literal.isEmpty { segments.append(.literal(String(literal))) }
                literal = String.UnicodeScalarView()
                segments.append(.placeholder(placeholder))
                rest = rest[rest.index(after: close)...]
            case "}":
                throw InvalidValue(reason: "a lone \"}\"; write }} for a literal brace")
            default:
                literal.append(first)
            }
        }
        if !literal.isEmpty { segments.append(.literal(String(literal))) }
        self.init(segments: segments)
    }

    /// Whether `{client}` appears: the daemon then has the client's address formatted for each connection.
    package var usesClient: Bool {
        segments.contains(.placeholder(.client))
    }

    /// Whether the literal text holds a line feed (a `prefix` tag must not: it goes before every line).
    package var containsNewline: Bool {
        segments.contains { segment in
            if case .literal(let text) = segment { text.utf8.contains(10) } else { false }
        }
    }

    /// The expansion with each placeholder replaced by `value(placeholder)`, cut at ``maximumExpansionBytes`` bytes (at
    /// a character boundary, so that the result stays valid UTF-8).
    package func render(_ value: (Placeholder) -> String) -> String {
        var out = ""
        for segment in segments {
            switch segment {
            case .literal(let text): out += text
            case .placeholder(let placeholder): out += value(placeholder)
            }
            if out.utf8.count > Self.maximumExpansionBytes { break }
        }
        guard out.utf8.count > Self.maximumExpansionBytes else { return out }
        var cut = ""
        var size = 0
        for scalar in out.unicodeScalars {
            size += UTF8.width(scalar)
            if size > Self.maximumExpansionBytes { break }
            cut.unicodeScalars.append(scalar)
        }
        return cut
    }

    /// The template as `init(parsing:)` accepts it, braces in literal text doubled.
    package var description: String {
        var out = ""
        for segment in segments {
            switch segment {
            case .literal(let text):
                for scalar in text.unicodeScalars {
                    out.unicodeScalars.append(scalar)
                    if scalar == "{" || scalar == "}" { out.unicodeScalars.append(scalar) }
                }
            case .placeholder(let placeholder):
                out += "{\(placeholder.rawValue)}"
            }
        }
        return out
    }
}
