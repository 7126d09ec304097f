import EchodTestSupport
import Testing

@testable import EchodConfig

@Suite("io.backend")
struct IOBackendKeyTests {
    @Test func epollByDefault() throws {
        let loaded = try load(nil)
        #expect(loaded.settings.ioBackend == .epoll)
        #expect(loaded.origins["io.backend"] == .defaultValue)
    }

    /// Each name, from each layer, case-insensitively as every other choice key (`log.level`).
    @Test(arguments: [("epoll", IOBackendName.epoll), ("io_uring", .ioUring), ("IO_URING", .ioUring), ("auto", .auto), ("Auto", .auto)])
    func everyLayerTakesEveryName(text: String, expected: IOBackendName) throws {
        #expect(try load("io:\n  backend: \(text)\n").settings.ioBackend == expected)
        #expect(try load(nil, env: ["ECHOD_IO_BACKEND": text]).settings.ioBackend == expected)
        #expect(try load(nil, overrides: ConfigOverrides(ioBackend: text)).settings.ioBackend == expected)
    }

    @Test func theCommandLineWinsOverTheEnvironmentOverTheFile() throws {
        let file = "io:\n  backend: auto\n"
        let env = ["ECHOD_IO_BACKEND": "io_uring"]
        let byEnv = try load(file, env: env)
        #expect(byEnv.settings.ioBackend == .ioUring && byEnv.origins["io.backend"] == .environment("ECHOD_IO_BACKEND"))
        let byFlag = try load(file, env: env, overrides: ConfigOverrides(ioBackend: "epoll"))
        #expect(byFlag.settings.ioBackend == .epoll && byFlag.origins["io.backend"] == .commandLine("--io-backend"))
    }

    @Test func checkConfigShowsItInItsSectionAndReadsItBack() throws {
        let loaded = try load(nil, overrides: ConfigOverrides(ioBackend: "io_uring"))
        let text = loaded.render()
        #expect(text.contains("\nio:\n  backend: io_uring "))
        let line = try #require(RenderTests.line(text, "io.backend"))
        #expect(line.hasSuffix("# command line --io-backend"))
        #expect(try load(text).settings.ioBackend == .ioUring)
    }

    @Test func otherValuesAreRefusedWithTheChoicesAndASuggestion() throws {
        for (yaml, value, reason) in [
            ("io:\n  backend: iouring\n", "iouring", "expected one of epoll, io_uring, auto (did you mean \"io_uring\"?)"),
            ("io:\n  backend: epol\n", "epol", "(did you mean \"epoll\"?)"),
            ("io:\n  backend: kqueue\n", "kqueue", "expected one of epoll, io_uring, auto"),
            ("io:\n  backend: null\n", nil, "no value"),
            ("io:\n  backend: [epoll]\n", "[epoll]", "got a list"),
        ] as [(String, String?, String)] {
            let found = try #require(problem(yaml))
            #expect(found.key == "io.backend" && found.value == value && found.reason.contains(reason), "\(found)")
            #expect(found.line == 2, "\(found)")
        }
        let env = try #require(problem(nil, env: ["ECHOD_IO_BACKEND": "uring"]))
        #expect(env.key == "io.backend" && env.source == "environment ECHOD_IO_BACKEND")
        let flag = try #require(problem(nil, overrides: ConfigOverrides(ioBackend: "")))
        #expect(flag.key == "io.backend" && flag.source == "command line --io-backend")
        let misspelt = try #require(problem("io:\n  backnd: auto\n"))
        #expect(misspelt.reason.contains("backend"), "\(misspelt)")
    }
}
