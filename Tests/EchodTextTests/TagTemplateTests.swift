import EchodText
import Testing

@Suite("Tag templates")
struct TagTemplateTests {
    typealias P = TagTemplate.Placeholder

    static func values(_ placeholder: P) -> String {
        switch placeholder {
        case .hostname: "web-1"
        case .instance: "blue"
        case .listener: "127.0.0.1:9000"
        case .client: "203.0.113.7:51234"
        case .pid: "42"
        case .pod: "echod-7d9f"
        case .node: ""
        }
    }

    @Test(arguments: [
        ("{hostname}", "web-1", [TagTemplate.Segment.placeholder(.hostname)]),
        ("{hostname} {instance}", "web-1 blue", [.placeholder(.hostname), .literal(" "), .placeholder(.instance)]),
        (
            "served by {listener} for {client}\n", "served by 127.0.0.1:9000 for 203.0.113.7:51234\n",
            [.literal("served by "), .placeholder(.listener), .literal(" for "), .placeholder(.client), .literal("\n")]
        ),
        ("{pid}{pod}{node}", "42echod-7d9f", [.placeholder(.pid), .placeholder(.pod), .placeholder(.node)]),
        ("{{hostname}}", "{hostname}", [.literal("{hostname}")]),
        ("{{{hostname}}}", "{web-1}", [.literal("{"), .placeholder(.hostname), .literal("}")]),
        (
            "json {{\"host\": \"{hostname}\"}}", "json {\"host\": \"web-1\"}",
            [.literal("json {\"host\": \""), .placeholder(.hostname), .literal("\"}")]
        ),
        ("plain text", "plain text", [.literal("plain text")]),
        ("é{hostname}\u{301}", "éweb-1\u{301}", [.literal("é"), .placeholder(.hostname), .literal("\u{301}")]),
    ])
    func parsesAndRenders(text: String, rendered: String, segments: [TagTemplate.Segment]) throws {
        let template = try TagTemplate(parsing: text)
        #expect(template.segments == segments)
        #expect(template.render(Self.values) == rendered)
        #expect(template.description == text)
        #expect(try TagTemplate(parsing: template.description) == template)
    }

    @Test(arguments: [
        ("", "empty template"),
        ("{hostnam}", "unknown placeholder \"{hostnam}\"; valid placeholders: {hostname} {instance} {listener} {client} {pid} {pod} {node}"),
        ("{HOSTNAME}", "unknown placeholder \"{HOSTNAME}\""),
        ("{}", "unknown placeholder \"{}\""),
        ("{ hostname }", "unknown placeholder \"{ hostname }\""),
        ("{hostname", "unclosed placeholder \"{hostname\"; write {{ for a literal brace"),
        ("a { b", "unclosed placeholder \"{ b\""),
        ("{host{name}", "unclosed placeholder"),
        ("{", "unclosed placeholder"),
        ("}", "a lone \"}\"; write }} for a literal brace"),
        ("{hostname}}", "a lone \"}\""),
        ("{{{", "unclosed placeholder"),
        (String(repeating: "x", count: 1025), "template is 1025 bytes; at most 1024"),
        (String(repeating: "é", count: 513), "template is 1026 bytes; at most 1024"),
    ])
    func refused(text: String, reason: String) {
        #expect {
            try TagTemplate(parsing: text)
        } throws: { error in
            (error as! InvalidValue).reason.contains(reason)
        }
    }

    @Test func longestTemplateIsAccepted() throws {
        #expect(try TagTemplate(parsing: String(repeating: "x", count: 1024)).description.utf8.count == 1024)
        #expect(try TagTemplate(parsing: String(repeating: "{pid}", count: 204)).segments.count == 204)
    }

    @Test func usesClientAndNewline() throws {
        #expect(try TagTemplate(parsing: "{client}").usesClient)
        #expect(try TagTemplate(parsing: "x {client} y").usesClient)
        #expect(try !TagTemplate(parsing: "{{client}}").usesClient)
        #expect(!TagTemplate.hostname.usesClient)
        #expect(try TagTemplate(parsing: "a\nb").containsNewline)
        #expect(try !TagTemplate(parsing: "{hostname} {instance}").containsNewline)
        #expect(try !TagTemplate(parsing: "a\rb").containsNewline)
    }

    @Test func defaultIsTheHostName() throws {
        #expect(TagTemplate.hostname == (try TagTemplate(parsing: "{hostname}")))
        #expect(TagTemplate.hostname.description == "{hostname}")
    }

    /// A long value cannot make the expansion unbounded; the cut falls on a character boundary.
    @Test func expansionIsCutAt4096Bytes() throws {
        let template = try TagTemplate(parsing: "{pod} {pod} {node}")
        let long = template.render { $0 == .node ? "" : String(repeating: "p", count: 3000) }
        #expect(long.utf8.count == TagTemplate.maximumExpansionBytes)
        #expect(long == String(repeating: "p", count: 3000) + " " + String(repeating: "p", count: 1095))
        let wide = try TagTemplate(parsing: "x{pod}").render { _ in String(repeating: "€", count: 2000) }  // 3 bytes each
        #expect(wide.utf8.count == 4096)  // "x" and 1365 euros of 3 bytes
        let wider = try TagTemplate(parsing: "xy{pod}").render { _ in String(repeating: "€", count: 2000) }
        #expect(wider.utf8.count == 4094)  // "xy" and 1364 euros: the 1365th would pass 4096
        #expect(wide.hasPrefix("x€") && wide.unicodeScalars.dropFirst().allSatisfy { $0 == "€" })
        let exact = try TagTemplate(parsing: "{pod}").render { _ in String(repeating: "a", count: 4096) }
        #expect(exact.utf8.count == 4096)
    }

    @Test func everyPlaceholderIsAsked() throws {
        let template = try TagTemplate(parsing: P.allCases.map { "{\($0.rawValue)}" }.joined(separator: "|"))
        var asked: [P] = []
        _ = template.render { placeholder in
            asked.append(placeholder)
            return ""
        }
        #expect(asked == P.allCases)
    }
}
