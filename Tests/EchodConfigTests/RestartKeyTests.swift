import EchodTestSupport
import Testing

@testable import EchodConfig

@Suite("restart.keep_connections")
struct RestartKeyTests {
    @Test func offByDefault() throws {
        let loaded = try load(nil)
        #expect(!loaded.settings.keepConnections)
        #expect(loaded.origins["restart.keep_connections"] == .defaultValue)
    }

    /// The same words as every other switch (`log.reads`), from the file and from the environment.
    @Test(arguments: ["true", "yes", "on", "1", "TRUE", "On", "false", "no", "off", "0", "False", "NO"])
    func takesTheBoolGrammarOfLogReads(word: String) throws {
        let reads = try load("log:\n  reads: \(word)\n").settings.logReads
        let file = try load("restart:\n  keep_connections: \(word)\n").settings
        #expect(file.keepConnections == reads)
        let env = try load(nil, env: ["ECHOD_RESTART_KEEP_CONNECTIONS": word]).settings
        #expect(env.keepConnections == reads)
    }

    @Test func environmentOverridesTheFileAndCheckConfigSaysSo() throws {
        let loaded = try load("restart:\n  keep_connections: false\n", env: ["ECHOD_RESTART_KEEP_CONNECTIONS": "true"])
        #expect(loaded.settings.keepConnections)
        #expect(loaded.origins["restart.keep_connections"] == .environment("ECHOD_RESTART_KEEP_CONNECTIONS"))
        let text = loaded.render()
        #expect(text.contains("\nrestart:\n  keep_connections: true "))
        let line = try #require(RenderTests.line(text, "restart.keep_connections"))
        #expect(line.hasSuffix("# environment ECHOD_RESTART_KEEP_CONNECTIONS"))
        #expect(try load(text).settings.keepConnections)
    }

    @Test func otherValuesAreRefused() throws {
        for (yaml, value, reason) in [
            ("restart:\n  keep_connections: maybe\n", "maybe", "expected true or false"),
            ("restart:\n  keep_connections: null\n", nil, "no value"),
            ("restart:\n  keep_connections: [true]\n", "[true]", "got a list"),
        ] as [(String, String?, String)] {
            let found = try #require(problem(yaml))
            #expect(found.key == "restart.keep_connections" && found.value == value && found.reason.contains(reason), "\(found)")
        }
        let env = try #require(problem(nil, env: ["ECHOD_RESTART_KEEP_CONNECTIONS": "enabled"]))
        #expect(env.key == "restart.keep_connections" && env.source == "environment ECHOD_RESTART_KEEP_CONNECTIONS")
        let misspelt = try #require(problem("restart:\n  keep_conections: true\n"))
        #expect(misspelt.reason.contains("keep_connections"), "\(misspelt)")
    }
}
