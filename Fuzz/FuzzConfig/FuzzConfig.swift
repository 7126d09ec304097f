// libFuzzer target: the configuration file (Fuzz/README.md). The input is written to a file and loaded the way the
// daemon loads it (`ConfigLoader.load`: libyaml, the key walk, every value parser, the cross-key checks), with an
// empty environment. It must give settings or a ConfigError; a file that loads must render (`check-config`) to a
// file that loads to the same settings.
import EchodConfig
import EchodSystem
import FuzzSupport
import Glibc

/// One file per fuzzing process (libFuzzer's -jobs run several at once), rewritten for every input.
let inputPath: String = {
    let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    return "\(directory)/echod-fuzz-config-\(getpid()).yaml"
}()
let renderedPath = inputPath + ".rendered.yaml"
let absentDefault = inputPath + ".absent"

@main
enum FuzzConfig: FuzzTarget {
    static func fuzz(_ input: UnsafeRawBufferPointer) {
        write(input, to: inputPath)
        let loaded: LoadedConfig
        do throws(ConfigError) {
            loaded = try ConfigLoader.load(path: inputPath, environment: [:], defaultPath: absentDefault)
        } catch {
            check(!error.problems.isEmpty, "ConfigError without a problem")
            return
        }
        let rendered = Array(loaded.render().utf8)
        rendered.withUnsafeBytes { write($0, to: renderedPath) }
        do throws(ConfigError) {
            let again = try ConfigLoader.load(path: renderedPath, environment: [:], defaultPath: absentDefault)
            if again.settings != loaded.settings { fatalError("the rendered configuration loads to other settings:\n\(loaded.render())") }
        } catch {
            fatalError("the rendered configuration does not load: \(error)\n\(loaded.render())")
        }
    }
}

private func write(_ bytes: UnsafeRawBufferPointer, to path: String) {
    do throws(IOError) {
        let fd = try Syscall.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        defer { Syscall.close(fd) }
        if case .failed(let error) = Syscall.writeAll(fd, bytes) { throw error }
    } catch {
        fatalError("cannot write \(path): \(error)")
    }
}
