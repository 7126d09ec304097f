import EchodTestSupport
import EchodText
import Testing

@testable import EchodConfig

@Suite("listen mapping entries and instance")
struct ListenEntryTests {
    static let full = """
        listen:
          - 127.0.0.1:8888
          - address: 127.0.0.1:9000
            name: proxied
            proxy_protocol: v2
            proxy_protocol_from: [10.0.0.0/8, 127.0.0.1/32, "::1/128"]
            proxy_protocol_untrusted: serve
            proxy_protocol_timeout: 1500ms
            tag: banner
            tag_text: "{hostname} {instance}"
          - address: unix:@tagged
            proxy_protocol: any
            tag: prefix
          - {address: "[::1]:9001"}
          - address: 127.0.0.1:9002
            tag: hostname-only
            proxy_protocol_from:
              - 192.0.2.0/24
              - 2001:db8::/32
            proxy_protocol: V1

        """

    @Test func everyOptionIsParsed() throws {
        let s = try #require(settings(Self.full))
        #expect(s.listen.count == 5)
        #expect(s.listen[0] == ListenEntry(try ListenTarget(parsing: "127.0.0.1:8888")) && s.listen[0].isPlain)
        let proxied = s.listen[1]
        #expect(proxied.target == (try ListenTarget(parsing: "127.0.0.1:9000")) && proxied.name == "proxied")
        #expect(proxied.proxyProtocol == .v2)
        #expect(proxied.proxyFrom.map(\.description) == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"])
        #expect(proxied.proxyUntrusted == .serve && proxied.proxyTimeout == .milliseconds(1500))
        let template = try TagTemplate(parsing: "{hostname} {instance}")
        #expect(proxied.tag == .banner && proxied.tagText == template)
        #expect(!proxied.isPlain)
        let unix = s.listen[2]
        #expect(unix.target.description == "unix:@tagged" && unix.proxyProtocol == .any && unix.proxyFrom.isEmpty)
        #expect(unix.tag == .prefix && unix.tagText == .hostname)
        #expect(s.listen[3].isPlain && s.listen[3].target.description == "[::1]:9001")
        #expect(s.listen[4].tag == .hostnameOnly && s.listen[4].proxyProtocol == .v1 && s.listen[4].proxyFrom.count == 2)
    }

    /// A mapping without options is the plain string: same entry, same settings, printed as a string.
    @Test func mappingWithoutOptionsIsThePlainString() throws {
        let mapping = try #require(settings("listen:\n  - address: 127.0.0.1:7\n  - {address: 'unix:/run/e.sock'}\n"))
        let plain = try #require(settings("listen: ['127.0.0.1:7', 'unix:/run/e.sock']\n"))
        #expect(mapping == plain)
        #expect(mapping.listen.allSatisfy { $0.isPlain })
        #expect(try load("listen:\n  - address: 127.0.0.1:7\n").render().contains("listen: [\"127.0.0.1:7\"]"))
        // Options set to their defaults are no options either; a name is one.
        #expect(settings("listen:\n  - address: 127.0.0.1:7\n    proxy_protocol: off\n    tag: off\n")?.listen[0].isPlain == true)
        #expect(settings("listen:\n  - address: 127.0.0.1:7\n    name: echo\n")?.listen[0].isPlain == false)
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var yaml: String
        var key: String
        var line: Int
        var reason: String
        var value: String? = nil
        var testDescription: String { key + ": " + reason }
    }

    @Test(arguments: [
        // Unknown keys: the nearest one, else the valid keys; under the item's name, at the key's line.
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocl: v2\n", key: "listen[0].proxy_protocl", line: 3,
            reason: "unknown key (did you mean \"proxy_protocol\"?)"),
        Bad(
            yaml: "listen:\n  - 127.0.0.1:8\n  - address: 127.0.0.1:7\n    colour: red\n", key: "listen[1].colour", line: 4,
            reason:
                "unknown key; valid keys here: address, name, proxy_protocol, proxy_protocol_from, proxy_protocol_untrusted, proxy_protocol_timeout, tag, tag_text"
        ),
        Bad(yaml: "listen:\n  - address: 127.0.0.1:7\n    Tag_Text: x\n", key: "listen[0].Tag_Text", line: 3, reason: "did you mean \"tag_text\"?"),
        // Shapes.
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol: v2\n    proxy_protocol_from: 10.0.0.0/8\n", key: "listen[0].proxy_protocol_from",
            line: 4,
            reason: "wrong type: expected a list of CIDR ranges, e.g. [10.0.0.0/8, \"::1/128\"], got a single value; write [\"10.0.0.0/8\"] for a list of one",
            value: "10.0.0.0/8"),
        Bad(
            yaml: "listen:\n  - address: ['127.0.0.1:7']\n", key: "listen[0].address", line: 2,
            reason: "wrong type: expected HOST:PORT, unix:/PATH or unix:@NAME, got a list"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    tag:\n", key: "listen[0].tag", line: 3, reason: "no value; give off, banner, prefix or hostname-only"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol_from: [[10.0.0.0/8]]\n", key: "listen[0].proxy_protocol_from[0]", line: 3,
            reason: "wrong type: expected a single value, got a list"),
        Bad(yaml: "listen:\n  - name: x\n    tag: banner\n", key: "listen[0]", line: 2, reason: "no address: a mapping entry needs address"),
        Bad(
            yaml: "udp:\n  listen:\n    - address: 127.0.0.1:7\n", key: "udp.listen[0]", line: 3,
            reason: "per-listener options (proxy_protocol, tag) are for TCP and Unix stream listeners, under listen:"),
        // Values.
        Bad(yaml: "listen:\n  - address: 127.0.0.1\n", key: "listen[0].address", line: 2, reason: "missing port", value: "127.0.0.1"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol: v3\n", key: "listen[0].proxy_protocol", line: 3,
            reason: "expected one of off, v1, v2, any"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol: v2\n    proxy_protocol_from:\n      - 10.0.0.0/8\n      - 10.0.0.1/8\n",
            key: "listen[0].proxy_protocol_from[1]", line: 6, reason: "host bits set; did you mean 10.0.0.0/8?", value: "10.0.0.1/8"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol: v1\n    proxy_protocol_from: [10.0.0.0/33]\n",
            key: "listen[0].proxy_protocol_from[0]",
            line: 4, reason: "bad prefix length \"33\""),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol_untrusted: drop\n", key: "listen[0].proxy_protocol_untrusted", line: 3,
            reason: "expected one of refuse, serve"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol_timeout: 500ms\n", key: "listen[0].proxy_protocol_timeout", line: 3,
            reason: "out of range; must be between 1s and 1m"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol_timeout: 61s\n", key: "listen[0].proxy_protocol_timeout", line: 3,
            reason: "out of range; must be between 1s and 1m"),
        Bad(yaml: "listen:\n  - address: 127.0.0.1:7\n    tag: baner\n", key: "listen[0].tag", line: 3, reason: "(did you mean \"banner\"?)"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    tag_text: '{host}'\n", key: "listen[0].tag_text", line: 3,
            reason: "unknown placeholder \"{host}\"; valid placeholders: {hostname}"),
        Bad(yaml: "listen:\n  - address: 127.0.0.1:7\n    tag_text: ''\n", key: "listen[0].tag_text", line: 3, reason: "empty template"),
        Bad(yaml: "listen:\n  - address: 127.0.0.1:7\n    name: 'a:b'\n", key: "listen[0].name", line: 3, reason: "printable ASCII without \":\""),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    name: admin\n", key: "listen[0].name", line: 3,
            reason: "reserved: a socket named \"admin\" is echod's admin endpoint"),
        Bad(yaml: "listen:\n  - address: 127.0.0.1:7\n    name: udp\n", key: "listen[0].name", line: 3, reason: "reserved"),
        // Combinations.
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol: v2\n", key: "listen[0].proxy_protocol", line: 3,
            reason:
                "proxy_protocol_from is required with proxy_protocol v2 on a TCP listener: list your proxies' addresses; [0.0.0.0/0, \"::/0\"] trusts every source"
        ),
        Bad(
            yaml: "listen:\n  - address: '[::]:7'\n    proxy_protocol: any\n    proxy_protocol_from: []\n", key: "listen[0].proxy_protocol_from", line: 4,
            reason: "proxy_protocol_from is required with proxy_protocol any"),
        Bad(
            yaml: "listen:\n  - address: unix:/run/e.sock\n    proxy_protocol: v2\n    proxy_protocol_from: [127.0.0.1/32]\n",
            key: "listen[0].proxy_protocol_from",
            line: 4, reason: "not allowed on a unix: listener: its file mode decides who connects, and every peer is trusted"),
        Bad(
            yaml: "listen:\n  - address: unix:@e\n    proxy_protocol_untrusted: refuse\n", key: "listen[0].proxy_protocol_untrusted", line: 3,
            reason: "not allowed on a unix: listener"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    tag: prefix\n    tag_text: \"{hostname}\\n\"\n", key: "listen[0].tag_text", line: 4,
            reason: "contains a line feed; tag: prefix puts the tag before every line, so it must be one line"),
        Bad(
            yaml: "listen:\n  - address: 127.0.0.1:7\n    name: a\n  - address: 127.0.0.1:8\n    name: a\n", key: "listen[1].name", line: 5,
            reason: "this name is given twice (also item 0)", value: "a"),
        Bad(
            yaml: "listen:\n  - 0.0.0.0:7\n  - address: 127.0.0.1:7\n    tag: banner\n", key: "listen[1].address", line: 3,
            reason: "overlaps item 0 (0.0.0.0:7): a wildcard address already covers every address of its family on that port"),
        Bad(yaml: "listen:\n  - address: unix:@e\n  - unix:@e\n", key: "listen[1]", line: 3, reason: "listed twice (also item 0)"),
        // instance.
        Bad(yaml: "instance: \"web\\n1\"\n", key: "instance", line: 1, reason: "contains a control character"),
        Bad(yaml: "instance: [a]\n", key: "instance", line: 1, reason: "wrong type: expected a name for this echod"),
        Bad(yaml: "instance: \(String(repeating: "x", count: 254))\n", key: "instance", line: 1, reason: "longer than 253 bytes"),
    ])
    func refused(_ bad: Bad) throws {
        let found = try #require(problem(bad.yaml))
        #expect(found.key == bad.key)
        #expect(found.line == bad.line)
        #expect(found.reason.contains(bad.reason), "\(found)")
        if let value = bad.value { #expect(found.value == value) }
    }

    /// Every problem in one go: unknown keys and bad values of several items, each at its line.
    @Test func everyProblemIsReportedAtOnce() {
        let yaml = """
            listen:
              - 127.0.0.1:7
              - address: 127.0.0.1:8
                proxy_protocl: v2
                tag: bannr
              - address: 127.0.0.1:9
                proxy_protocol: v1
              - address: unix:@x
                proxy_protocol_from: [10.0.0.1/8]
              - 127.0.0.1:7
            instance: "a\tb"

            """
        let found = problems(yaml)
        #expect(
            found.map { "\($0.line ?? 0) \($0.key)" } == [
                "4 listen[1].proxy_protocl", "5 listen[1].tag", "7 listen[2].proxy_protocol", "9 listen[3].proxy_protocol_from[0]",
                "10 listen[4]", "11 instance",
            ], "\(found)")
    }

    /// The environment and the command line give plain strings, and `--listen` replaces the file's whole list, mapping
    /// entries included.
    @Test func environmentAndCommandLineGivePlainEntries() throws {
        let fromEnv = try #require(settings(Self.full, env: ["ECHOD_LISTEN": "127.0.0.1:5, unix:@e"]))
        #expect(fromEnv.listen.map(\.description) == ["127.0.0.1:5", "unix:@e"] && fromEnv.listen.allSatisfy { $0.isPlain })
        let loaded = try load(Self.full, overrides: ConfigOverrides(listen: ["127.0.0.1:6"]))
        #expect(loaded.settings.listen == [ListenEntry(try ListenTarget(parsing: "127.0.0.1:6"))])
        #expect(loaded.origins["listen"] == .commandLine("--listen"))
        // The file is still checked on its own.
        #expect(problem("listen:\n  - address: 127.0.0.1:7\n    tag: x\n", overrides: ConfigOverrides(listen: ["127.0.0.1:6"]))?.key == "listen[0].tag")
    }

    /// check-config prints a plain entry as a string and a mapping entry as a flow mapping of the effective values, and
    /// the whole `listen:` line parses back to the same entries.
    @Test func renderedListenLineParsesBack() throws {
        let loaded = try load(Self.full + "instance: web-1\n")
        let text = loaded.render()
        let line = try #require(RenderTests.line(text, "listen"))
        #expect(
            line.hasPrefix(
                "listen: [\"127.0.0.1:8888\", {address: \"127.0.0.1:9000\", name: \"proxied\", proxy_protocol: v2, "
                    + "proxy_protocol_from: [\"10.0.0.0/8\", \"127.0.0.1/32\", \"::1/128\"], proxy_protocol_untrusted: serve, "
                    + "proxy_protocol_timeout: 1s500ms, tag: banner, tag_text: \"{hostname} {instance}\"}, "
                    + "{address: \"unix:@tagged\", proxy_protocol: any, proxy_protocol_timeout: 3s, tag: prefix, tag_text: \"{hostname}\"}, "
                    + "\"[::1]:9001\", "), "\(line)")
        let listenOnly = String(line.prefix { $0 != "#" })
        #expect(settings(listenOnly + "\n")?.listen == loaded.settings.listen)
        #expect(try load(text).settings == loaded.settings)
    }

    @Test func templatesWithBracesQuotesAndNewlinesReadBack() throws {
        let yaml = """
            listen:
              - address: 127.0.0.1:7
                tag: banner
                tag_text: "{{\\"host\\": \\"{hostname}\\"}}\\n# not a comment"

            """
        let s = try #require(settings(yaml))
        #expect(s.listen[0].tagText.render { _ in "h" } == "{\"host\": \"h\"}\n# not a comment")
        #expect(try load(load(yaml).render()).settings == s)
    }

    /// Options that do nothing while their switch is off are kept (so check-config shows them) and warned about.
    @Test func optionsOfAnOffSwitchAreWarnings() throws {
        let yaml = "listen:\n  - address: 127.0.0.1:7\n    proxy_protocol_from: [10.0.0.0/8]\n    tag_text: '{instance}'\n"
        let loaded = try load(yaml)
        #expect(
            loaded.warnings == [
                "listen[0] (127.0.0.1:7): proxy_protocol is off, so its other proxy_protocol_* keys do nothing",
                "listen[0] (127.0.0.1:7): tag is off, so tag_text does nothing",
            ])
        #expect(try load(loaded.render()).settings == loaded.settings)
    }

    @Test func instanceFromEveryLayer() throws {
        let host = currentHostName()
        let byDefault = try load(nil)
        #expect(byDefault.settings.instance == host && byDefault.settings.instanceIsHostName)
        let rendered = try #require(RenderTests.line(byDefault.render(), "instance"))
        #expect(rendered.hasPrefix("instance: null ") && rendered.hasSuffix("# default; null = the host name, \(quoted(host))"), "\(rendered)")

        let file = try load("instance: web-1\n")
        #expect(file.settings.instance == "web-1" && !file.settings.instanceIsHostName)
        #expect(try #require(RenderTests.line(file.render(), "instance")).hasPrefix("instance: \"web-1\" "))
        #expect(try load("instance: null\n").settings.instance == host)
        #expect(try load("instance: ''\n").settings.instanceIsHostName)  // empty is null, as for every optional key
        #expect(try load("instance: b\n", env: ["ECHOD_INSTANCE": "a"]).settings.instance == "a")
        #expect(try load("instance: b\n", env: ["ECHOD_INSTANCE": ""]).settings.instanceIsHostName)
        let cli = try load("instance: b\n", env: ["ECHOD_INSTANCE": "a"], overrides: ConfigOverrides(instance: "pod 7 é"))
        #expect(cli.settings.instance == "pod 7 é" && cli.origins["instance"] == .commandLine("--instance"))
        #expect(try load(nil, overrides: ConfigOverrides(instance: "")).settings.instanceIsHostName)
    }
}
