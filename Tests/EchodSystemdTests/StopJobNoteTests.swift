import EchodSystemd
import Glibc
import Testing

@Suite struct StopJobNoteTests {
    /// A runtime directory of this test's own.
    private func directory() throws -> String {
        var template = Array("/tmp/echod-stopjob-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: try #require(made))
    }

    @Test func theNoteIsReadBackAndReadableByOthersWhateverTheUmask() throws {
        let dir = try directory()
        let environment = ["RUNTIME_DIRECTORY": dir]
        let old = umask(0o077)
        defer { umask(old) }
        try StopJobNote.write("restart", environment: environment)
        #expect(StopJobNote.read(environment: environment) == "restart")
        var info = stat()
        #expect(stat(dir + "/stop-job", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o644)
        try StopJobNote.write(nil, environment: environment)
        #expect(StopJobNote.read(environment: environment) == "none")
        unlink(dir + "/stop-job")
        rmdir(dir)
    }

    @Test func noRuntimeDirectoryMeansNoNote() {
        #expect(StopJobNote.path(environment: [:]) == nil)
        #expect(StopJobNote.path(environment: ["RUNTIME_DIRECTORY": "relative"]) == nil)
        #expect(StopJobNote.read(environment: [:]) == nil)
        #expect(throws: (any Error).self) { try StopJobNote.write("stop", environment: [:]) }
    }

    @Test func theFirstOfSeveralDirectoriesIsUsed() {
        #expect(StopJobNote.path(environment: ["RUNTIME_DIRECTORY": "/run/echod:/run/other"]) == "/run/echod/stop-job")
    }

    @Test func anAbsentNoteIsNil() throws {
        let dir = try directory()
        #expect(StopJobNote.read(environment: ["RUNTIME_DIRECTORY": dir]) == nil)
        rmdir(dir)
    }
}
