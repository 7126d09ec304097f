import EchodTestSupport
import EchodText
import Foundation
import Testing

@testable import EchodConfig

@Suite("Defaults and file selection")
struct DefaultsTests {
    @Test func embeddedDefaultsHaveTheDocumentedValues() throws {
        let d = EchodSettings.defaults
        #expect(d.listen.map(\.target) == [try ListenTarget(parsing: "127.0.0.1:8888"), try ListenTarget(parsing: "[::1]:8888")])
        #expect(d.listen.allSatisfy { $0.isPlain })
        let host = currentHostName()
        #expect(d.instanceIsHostName && d.instance == host && !host.isEmpty)
        #expect(d.threadsIsAuto && d.threads == onlineCPUCount() && d.threads >= 1)
        #expect(d.maxConnections == 50_000)
        #expect(d.maxConnectionsPerIP == 0)
        #expect(d.idleTimeout == .seconds(300))
        #expect(d.maxPendingBytes == 262_144)
        #expect(d.drainTimeout == .seconds(10))
        #expect(!d.keepConnections)
        #expect(d.logLevel == .info && d.logFormat == .auto && d.logFile == nil && !d.logReads)
        #expect(d.logQueueCapacity == 16_384)
        #expect(d.adminListen == nil)
        #expect(d.user == nil)
    }

    @Test func noFileAndEmptyEnvironmentGiveEmbeddedDefaults() throws {
        let loaded = try load(nil)
        #expect(loaded.settings == .defaults)
        #expect(loaded.filePath == nil)
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.origins.count == SettingKey.all.count)
        #expect(loaded.origins.values.allSatisfy { $0 == .defaultValue })
    }

    /// config/echod.yaml documents the defaults: it must set every key, to exactly the embedded value.
    @Test func shippedConfigFileEqualsEmbeddedDefaults() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = repo.appendingPathComponent("config/echod.yaml").path
        let loaded = try ConfigLoader.load(path: path, environment: [:])
        #expect(loaded.settings == .defaults)
        #expect(loaded.filePath == path)
        for key in SettingKey.all {
            #expect(loaded.origins[key.name] == .file(path), "config/echod.yaml does not set \(key.name)")
        }
    }

    /// The mapping form's example in config/echod.yaml, uncommented, is a valid file with the options it shows.
    @Test func shippedListenExampleIsValid() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: repo.appendingPathComponent("config/echod.yaml"), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex(of: "# listen:"), "no commented listen: example in config/echod.yaml")
        let example = lines[start...].prefix { $0 != "#" }.map { $0.dropFirst(2) }.joined(separator: "\n")
        let s = try #require(settings(example + "\n"))
        #expect(s.listen.count == 2 && s.listen[0].isPlain)
        let entry = s.listen[1]
        #expect(entry.target == (try ListenTarget(parsing: "0.0.0.0:9000")) && entry.name == "proxied")
        #expect(entry.proxyProtocol == .v2 && entry.proxyFrom.map(\.description) == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"])
        #expect(entry.proxyUntrusted == .refuse && entry.proxyTimeout == .seconds(3))
        #expect(entry.tag == .banner && entry.tagText.description == "{hostname} {instance}")
    }

    @Test func emptyOrCommentOnlyFileSetsNothing() throws {
        for text in ["", "# nothing here\n", "---\n", "~\n"] {
            let loaded = try load(text)
            #expect(loaded.settings == .defaults, "\(quoted(text))")
            #expect(loaded.filePath != nil)
            #expect(loaded.origins.values.allSatisfy { $0 == .defaultValue })
        }
    }

    @Test func defaultPathIsReadWhenItExists() throws {
        let dir = TempDir()
        let path = dir.write("default.yaml", "threads: 3\n")
        let loaded = try ConfigLoader.load(path: nil, environment: [:], defaultPath: path)
        #expect(loaded.filePath == path)
        #expect(loaded.settings.threads == 3 && !loaded.settings.threadsIsAuto)
        #expect(loaded.origins["threads"] == .file(path))
    }

    @Test func absentDefaultPathMeansEmbeddedDefaults() throws {
        let dir = TempDir()
        let loaded = try ConfigLoader.load(path: nil, environment: [:], defaultPath: dir.absentDefault)
        #expect(loaded.filePath == nil)
        #expect(loaded.settings == .defaults)
    }

    /// Only a missing default file falls back; one that exists but cannot be read is an error.
    @Test func unreadableDefaultPathIsAnErrorNotAFallback() {
        let dir = TempDir()
        do {
            _ = try ConfigLoader.load(path: nil, environment: [:], defaultPath: dir.path)
            Issue.record("a directory at the default path must be refused")
        } catch {
            #expect(error.problems.count == 1)
            #expect(error.problems.first?.source == dir.path)
            #expect(error.problems.first?.reason.contains("directory") == true)
        }
    }

    @Test func explicitPathThatDoesNotExistIsAnError() {
        let dir = TempDir()
        let missing = dir.path + "/missing.yaml"
        dir.write("absent-default.yaml", "threads: 2\n")  // even with a default file present
        do {
            _ = try ConfigLoader.load(path: missing, environment: [:], defaultPath: dir.path + "/absent-default.yaml")
            Issue.record("a missing explicit file must be refused")
        } catch {
            #expect(error.problems.count == 1)
            #expect(error.problems.first?.source == missing)
            #expect(error.problems.first?.reason == "configuration file not found")
            #expect(error.description == "\(missing): configuration file not found")
        }
    }

    /// A FIFO must be refused, not block the loading thread forever waiting for a writer.
    @Test func fifoIsRefusedWithoutBlocking() {
        let dir = TempDir()
        let path = dir.path + "/fifo.yaml"
        #expect(mkfifo(path, 0o600) == 0)
        do {
            _ = try ConfigLoader.load(path: path, environment: [:])
            Issue.record("a FIFO must be refused")
        } catch {
            #expect(error.problems.map(\.reason) == ["is not a regular file"])
        }
    }

    @Test func repeatedLoadsGiveTheSameResult() throws {
        let dir = TempDir()
        let path = dir.write("echod.yaml", "threads: 2\nlimits:\n  idle_timeout: 5s\n")
        let first = try ConfigLoader.load(path: path, environment: ["ECHOD_LOG_LEVEL": "debug"])
        let second = try ConfigLoader.load(path: path, environment: ["ECHOD_LOG_LEVEL": "debug"])
        #expect(first.settings == second.settings)
        #expect(first.origins == second.origins)
    }
}
