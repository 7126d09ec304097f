import EchodTestSupport
import Testing

@testable import EchodConfig

@Suite("Unparsable files and many problems at once")
struct FileErrorTests {
    @Test func yamlSyntaxErrorNamesFileAndLine() throws {
        let dir = TempDir()
        do {
            _ = try load("threads: 2\nlimits:\n  max_connections: [1, 2\n  idle_timeout: 5s\n", in: dir)
            Issue.record("accepted broken YAML")
        } catch {
            let found = try #require(error.problems.first)
            #expect(error.problems.count == 1)
            #expect(found.source == dir.path + "/echod.yaml")
            #expect(found.reason.hasPrefix("YAML syntax error: "), "\(found)")
            let line = try #require(found.line)
            #expect((3...5).contains(line), "\(found)")
            #expect(found.description.hasPrefix("\(dir.path)/echod.yaml:\(line): YAML syntax error"))
        }
    }

    @Test func tabIndentationIsASyntaxError() throws {
        let found = try #require(problem("limits:\n\tmax_connections: 5\n"))
        #expect(found.reason.hasPrefix("YAML syntax error") && found.line == 2, "\(found)")
    }

    @Test func duplicateKeyIsAnError() throws {
        let found = try #require(problem("threads: 1\nthreads: 2\n"))
        #expect(found.reason.contains("\"threads\" appears more than once"), "\(found)")
    }

    @Test func topLevelMustBeAMapping() throws {
        let found = try #require(problem("- 127.0.0.1:7\n"))
        #expect(found.key == "" && found.reason.contains("must be a mapping of keys") && found.reason.contains("a list"))
    }

    @Test func fileThatIsNotUTF8IsRefused() throws {
        let dir = TempDir()
        let bytes: [UInt8] = Array("log:\n  file: /tmp/caf".utf8) + [0xE9] + Array(".log\n".utf8)
        let path = dir.write("latin1.yaml", bytes)
        do {
            _ = try ConfigLoader.load(path: path, environment: [:])
            Issue.record("accepted invalid UTF-8")
        } catch {
            #expect(error.problems.map(\.reason) == ["not valid UTF-8 text"])
        }
    }

    /// One run shows everything: file structure, file values, environment and command line together.
    @Test func everyProblemIsReportedTogether() throws {
        let dir = TempDir()
        let yaml = """
            threads: zero
            listen: ['127.0.0.1:7', 'localhost:8', '127.0.0.1:7']
            limits:
              idle_timeout: soon
              max_conections: 1
              max_pending_bytes: [1]
            extra: [[1], {a: b}]
            log:
              level: loud
            """
        do {
            _ = try load(yaml + "\n", env: ["ECHOD_LOG_QUEUE_CAPACITY": "1"], overrides: ConfigOverrides(logFormat: "xml"), in: dir)
            Issue.record("accepted a file full of problems")
        } catch {
            let file = dir.path + "/echod.yaml"
            let got = error.problems.map { "\($0.source)|\($0.line.map(String.init) ?? "-")|\($0.key)" }
            #expect(
                Set(got) == [
                    "\(file)|5|limits.max_conections",
                    "\(file)|6|limits.max_pending_bytes",
                    "\(file)|7|extra",
                    "\(file)|2|listen[1]",
                    "\(file)|2|listen[2]",
                    "\(file)|1|threads",
                    "\(file)|4|limits.idle_timeout",
                    "\(file)|9|log.level",
                    "command line --log-format|-|log.format",
                    "environment ECHOD_LOG_QUEUE_CAPACITY|-|log.queue_capacity",
                ], "\(error)")
            #expect(error.description.split(separator: "\n").count == error.problems.count)
            // The file's problems come first, in line order, as an editor shows the file.
            let fileLines = error.problems.prefix { $0.source == file }.compactMap(\.line)
            #expect(fileLines.count == 8 && fileLines == fileLines.sorted(), "\(fileLines)")
        }
    }
}
