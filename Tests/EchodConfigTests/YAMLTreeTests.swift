import Foundation
import Testing

@testable import EchodConfig

/// The YAML reader (libyaml events stacked into a tree): what the file walk relies on, and its bounds on
/// hostile input.
@Suite("YAML reader")
struct YAMLTreeTests {
    private func parse(_ text: String) throws(YAMLError) -> YAMLNode? {
        try YAMLTree.parse(Array(text.utf8))
    }

    @Test func emptyAndCommentOnlyFilesHaveNoRoot() throws {
        #expect(try parse("") == nil)
        #expect(try parse("# nothing here\n\n") == nil)
    }

    @Test func nodesCarryTheirLines() throws {
        let root = try #require(try parse("threads: 2\nlisten:\n  - 127.0.0.1:7\n  - '[::1]:7'\n"))
        guard case .mapping(let pairs, let line) = root else {
            Issue.record("not a mapping: \(root)")
            return
        }
        #expect(line == 1)
        #expect(pairs.map { $0.key.scalar?.text } == ["threads", "listen"])
        #expect(pairs[0].value.scalar?.text == "2" && pairs[0].value.line == 1)
        guard case .sequence(let items, _) = pairs[1].value else {
            Issue.record("listen is not a list")
            return
        }
        #expect(items.map(\.line) == [3, 4])
        #expect(items.map { $0.scalar?.text } == ["127.0.0.1:7", "[::1]:7"])
    }

    @Test(arguments: ["", "~", "null", "Null", "NULL"])
    func plainNullSpellings(_ spelling: String) throws {
        let root = try #require(try parse("admin:\n  listen: \(spelling)\n"))
        guard case .mapping(let top, _) = root, case .mapping(let admin, _) = top[0].value else {
            Issue.record("\(root)")
            return
        }
        #expect(admin[0].value.isNull)
    }

    @Test func quotedOrTaggedNullIsAString() throws {
        for text in ["a: 'null'\n", "a: \"~\"\n", "a: !!str null\n"] {
            let root = try #require(try parse(text))
            guard case .mapping(let pairs, _) = root else {
                Issue.record("\(root)")
                continue
            }
            #expect(!pairs[0].value.isNull, "\(text)")
        }
    }

    @Test func aliasesAreExpanded() throws {
        let loaded = try #require(settings("limits:\n  idle_timeout: &t 30s\nshutdown:\n  drain_timeout: *t\n"))
        #expect(loaded.idleTimeout == .seconds(30) && loaded.drainTimeout == .seconds(30))
    }

    @Test func anAliasWithoutAnchorIsAnError() {
        #expect(throws: YAMLError.self) { try parse("listen: [*nowhere]\n") }
    }

    @Test func aliasBombIsRefused() {
        // Each level doubles: 2^30 values once expanded, from a 400-byte file.
        var text = "a0: &a0 [x, x]\n"
        for level in 1...30 { text += "a\(level): &a\(level) [*a\(level - 1), *a\(level - 1)]\n" }
        do {
            _ = try parse(text)
            Issue.record("accepted an alias bomb")
        } catch {
            #expect(error.reason.contains("once aliases are expanded"), "\(error)")
        }
    }

    @Test func deepNestingIsRefused() {
        let text = "a: " + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + "\n"
        do {
            _ = try parse(text)
            Issue.record("accepted 10000 levels of nesting")
        } catch {
            #expect(error.reason.contains("nested deeper than"), "\(error)")
            #expect(error.line == 1)
        }
        // The limit itself is usable.
        let ok = "a: " + String(repeating: "[", count: YAMLTree.maxDepth - 1) + String(repeating: "]", count: YAMLTree.maxDepth - 1)
        #expect(throws: Never.self) { try parse(ok) }
    }

    @Test func aSecondDocumentIsAnError() throws {
        do {
            _ = try parse("threads: 1\n---\nthreads: 2\n")
            Issue.record("accepted two documents")
        } catch {
            #expect(error.line == 2 && error.reason.contains("second document"), "\(error)")
        }
    }

    @Test func duplicateKeyNamesBothLines() throws {
        let found = try #require(problem("threads: 1\nlimits:\n  idle_timeout: 5s\nthreads: 2\n"))
        #expect(found.line == 4 && found.reason.contains("(lines 1 and 4)"), "\(found)")
    }

    /// A poor man's fuzzer until the fuzzing set-up exists: many seeded mutations of the documented default file
    /// and of random bytes must each give a tree or an error, never a crash or a hang.
    @Test func mutatedFilesNeverCrash() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let original = Array(try Data(contentsOf: repo.appendingPathComponent("config/echod.yaml")))
        var random = SplitMix64(seed: 862)
        let alphabet = Array("[]{}:,-?&*!|>'\"#%@` \n\t~.0123456789abcxyz".utf8)
        var parsed = 0
        var refused = 0
        for round in 0..<3000 {
            var bytes = round % 10 == 0 ? [] : original
            let edits = 1 + Int(random.next() % 8)
            for _ in 0..<edits {
                let byte = alphabet[Int(random.next() % UInt64(alphabet.count))]
                if bytes.isEmpty || random.next() % 3 == 0 {
                    bytes.insert(byte, at: bytes.isEmpty ? 0 : Int(random.next() % UInt64(bytes.count)))
                } else {
                    bytes[Int(random.next() % UInt64(bytes.count))] = byte
                }
            }
            do {
                _ = try YAMLTree.parse(bytes)
                parsed += 1
            } catch {
                refused += 1
            }
            _ = FileDocument(path: "fuzz.yaml", bytes: bytes, keys: SettingKey.all)
        }
        #expect(parsed > 0 && refused > 0, "parsed \(parsed), refused \(refused)")
    }
}

/// A small seeded generator, so a failing mutation can be replayed.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
