import Glibc

/// A process the test started with posix_spawn (never fork: the test process has threads), waited for by its pid.
package struct SpawnedProcess {
    package let pid: pid_t
    /// Where the child's stdout and stderr went.
    package let outputPath: String

    /// Spawns `arguments[0]` with `environment`; `descriptors` are passed as 3, 4, ...; `input` is the child's stdin
    /// (a file written for it, else /dev/null); stdout and stderr go to a temporary file read by ``output()``.
    package static func spawn(
        _ arguments: [String], environment: [String] = currentEnvironment(), passing descriptors: [Int32] = [],
        input: [UInt8]? = nil
    ) throws -> SpawnedProcess {
        let outputPath = "/tmp/\(uniqueName("output")).txt"
        let inputPath = "/tmp/\(uniqueName("input")).txt"
        defer { unlink(inputPath) }
        if let input {
            let fd = open(inputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0, writeAll(fd, input) else { throw TestFailure("cannot write \(inputPath): errno \(errno)") }
            close(fd)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (i, fd) in descriptors.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, 3 + Int32(i)) }
        posix_spawn_file_actions_addopen(&actions, 0, input == nil ? "/dev/null" : inputPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var pid: pid_t = 0
        let spawned = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in posix_spawn(&pid, arguments[0], &actions, nil, argv, envp) }
        }
        guard spawned == 0 else { throw TestFailure("posix_spawn \(arguments[0]): errno \(spawned)") }
        return SpawnedProcess(pid: pid, outputPath: outputPath)
    }

    /// Waits up to `seconds` for the child to exit and returns its exit status (128 + the signal when killed by
    /// one); past that kills it (by its pid) and throws with its output.
    package func wait(seconds: Int = 30) throws -> Int32 {
        var status: Int32 = 0
        for _ in 0..<(seconds * 20) {
            if waitpid(pid, &status, WNOHANG) == pid {
                let signal = status & 0x7F
                return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
            }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        throw TestFailure("\(pid) did not exit within \(seconds) s; its output:\n\(output())")
    }

    /// The child's stdout and stderr so far.
    package func output() -> String { (try? readFile(outputPath)) ?? "" }

    /// Removes the output file.
    package func removeOutput() { unlink(outputPath) }

    /// Runs a program to completion: its exit status and its output (stdout and stderr).
    package static func run(_ arguments: [String], input: [UInt8]? = nil) throws -> (status: Int32, output: String) {
        let child = try spawn(arguments, input: input)
        defer { child.removeOutput() }
        let status = try child.wait()
        return (status, child.output())
    }
}

/// This process's environment as `NAME=value` entries.
package func currentEnvironment() -> [String] {
    var result: [String] = []
    var entry = environ
    while let value = entry.pointee {
        result.append(String(cString: value))
        entry += 1
    }
    return result
}

/// The running test binary (to spawn it again).
package func executablePath() throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
    let length = readlink("/proc/self/exe", &buffer, buffer.count)
    guard length > 0 else { throw TestFailure("readlink /proc/self/exe: errno \(errno)") }
    return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// True when `path` is a file this process may execute.
package func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers = strings.map { strdup($0) }
    defer { for pointer in pointers { free(pointer) } }
    pointers.append(nil)
    return body(pointers)
}
