import EchodTestSupport
import Testing

@testable import EchodConfig

@Suite("check-config rendering")
struct RenderTests {
    /// The rendered line for a key (`limits.idle_timeout` is the `idle_timeout:` line under `limits:`).
    static func line(_ text: String, _ key: String) -> String? {
        let path = key.split(separator: ".")
        var section: Substring?
        for line in text.split(separator: "\n") {
            if !line.hasPrefix(" ") && !line.hasPrefix("#") { section = line.split(separator: ":").first }
            let indented = path.count == 2 ? "  \(path[1]):" : "\(path[0]):"
            if line.hasPrefix(indented) && (path.count == 1 || section == path[0]) { return String(line) }
        }
        return nil
    }

    @Test func everyKeyWithValueAndOrigin() throws {
        let dir = TempDir()
        let loaded = try load(
            "limits:\n  idle_timeout: 45s\n", env: ["ECHOD_LOG_LEVEL": "debug"],
            overrides: ConfigOverrides(threads: "3"), in: dir)
        let text = loaded.render()
        let file = dir.path + "/echod.yaml"
        #expect(text.hasPrefix("# echod configuration: \(file)\n"))
        for key in SettingKey.all {
            let line = try #require(Self.line(text, key.name), "no line for \(key.name) in\n\(text)")
            #expect(line.contains("# "), "no origin comment on \(line)")
        }
        func line(_ key: String) throws -> String { try #require(Self.line(text, key)) }
        #expect(try line("limits.idle_timeout").hasPrefix("  idle_timeout: 45s "))
        #expect(try line("limits.idle_timeout").hasSuffix("# file \(file)"))
        #expect(try line("threads").hasPrefix("threads: 3 "))
        #expect(try line("threads").hasSuffix("# command line --threads"))
        #expect(try line("log.level").hasPrefix("  level: debug "))
        #expect(try line("log.level").hasSuffix("# environment ECHOD_LOG_LEVEL"))
        #expect(try line("limits.max_pending_bytes").hasPrefix("  max_pending_bytes: 256KiB "))
        #expect(try line("limits.max_pending_bytes").hasSuffix("# default"))
        #expect(try line("listen").hasPrefix("listen: [\"127.0.0.1:8888\", \"[::1]:8888\"] "))
        #expect(try line("admin.listen").hasPrefix("  listen: null "))
    }

    @Test func embeddedDefaultsHeaderAndAutoThreads() throws {
        let text = try load(nil).render()
        #expect(text.hasPrefix("# echod configuration: embedded defaults (no configuration file)\n"))
        let threads = try #require(Self.line(text, "threads"))
        #expect(threads.hasPrefix("threads: auto "))
        #expect(threads.hasSuffix("# default; auto = \(onlineCPUCount()) (online CPUs)"))
    }

    /// What check-config prints is itself a valid file that gives the same settings.
    @Test func renderedTextLoadsBackToTheSameSettings() throws {
        let original = try load(LayeringTests.everyKeyChanged + "\n")
        let dir = TempDir()
        let again = try load(original.render(), in: dir)
        #expect(again.settings == original.settings)
        let defaults = try load(try load(nil).render())
        #expect(defaults.settings == .defaults)
    }

    @Test func awkwardPathIsQuotedSoItReadsBack() throws {
        let s = try #require(settings(nil, env: ["ECHOD_LOG_FILE": "/tmp/a: b#c \"d\".log"]))
        let rendered = try load(nil, env: ["ECHOD_LOG_FILE": "/tmp/a: b#c \"d\".log"]).render()
        #expect(settings(rendered)?.logFile == s.logFile)
    }
}
