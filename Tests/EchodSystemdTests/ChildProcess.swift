import EchodSystemd
import Glibc
import Testing

/// What `SocketActivation.takePassedSockets()` and `SystemdWatchdog.interval()` saw in a fresh process.
///
/// Both read the process environment (and socket activation wants its sockets at fds 3, 4, ...). They are not run in
/// the test process: there fds 3.. already belong to the runtime (fd 3 is Dispatch's epoll instance), so dup2 onto
/// them would break it, and setenv races with every other thread's getenv, tests of other modules included. Instead
/// this test binary is spawned again (posix_spawn, no fork of a threaded process) through /bin/sh, so that
/// `LISTEN_PID=$$`/`WATCHDOG_PID=$$` name the very pid that then execs the binary, with the sockets dup2'd to 3, 4,
/// ... by the spawn's file actions. In the child only `childReport` runs; it writes what it saw to a file.
struct ChildProcess {
    /// One line per passed socket: "fd name verdict cloexec|inheritable", verdict "valid" or validateListening's.
    var sockets: [String]
    /// "LISTEN_PID=... LISTEN_FDS=... LISTEN_FDNAMES=..." as left in the child's environment afterwards.
    var listenVariables: String
    /// `SystemdWatchdog.interval()` in microseconds, or "nil".
    var watchdog: String

    /// - Parameters:
    ///   - exports: shell assignments evaluated in the child's shell, e.g. `LISTEN_PID=$$`.
    ///   - environment: further `NAME=value` entries.
    ///   - fds: descriptors to pass as 3, 4, ...
    static func report(exports: [String] = [], environment: [String] = [], passing fds: [Int32] = []) throws -> ChildProcess {
        let reportPath = "/tmp/\(uniqueName("report")).txt"
        let logPath = reportPath + ".log"
        defer { unlink(reportPath); unlink(logPath) }

        let script = exports.map { "export \($0); " }.joined() + "exec \"$0\" \"$@\""
        let arguments = ["/bin/sh", "-c", script, try executablePath(),
                         "--testing-library", "swift-testing", "--filter", "childReport"]
        let inherited = currentEnvironment().filter {
            !["LISTEN_", "WATCHDOG_", "NOTIFY_SOCKET="].contains(where: $0.hasPrefix)
        }
        let childEnvironment = inherited + environment + ["\(reportVariable)=\(reportPath)"]

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (i, fd) in fds.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, 3 + Int32(i)) }
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var pid: pid_t = 0
        let spawned = withCStrings(arguments) { argv in
            withCStrings(childEnvironment) { envp in posix_spawn(&pid, "/bin/sh", &actions, nil, argv, envp) }
        }
        guard spawned == 0 else { throw Failure("posix_spawn /bin/sh: errno \(spawned)") }
        try waitForExit(pid, log: logPath)
        guard let text = readText(reportPath) else {
            throw Failure("the child wrote no report; its output:\n\(readText(logPath) ?? "")")
        }
        var lines = text.split(separator: "\n").map(String.init)
        guard lines.count >= 2 else { throw Failure("short report: \(text)") }
        let watchdog = lines.removeLast()
        let listenVariables = lines.removeLast()
        return ChildProcess(sockets: lines, listenVariables: listenVariables, watchdog: watchdog)
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

private let reportVariable = "ECHOD_SYSTEMD_TEST_REPORT"

/// Runs only in the spawned child (`ECHOD_SYSTEMD_TEST_REPORT` set); skipped in the ordinary run.
@Test(.enabled(if: getenv(reportVariable) != nil, "runs only in the child process ChildProcess.report spawns"))
func childReport() throws {
    var lines = SocketActivation.takePassedSockets().map { socket in
        let verdict = SocketActivation.validateListening(socket) ?? "valid"
        let cloexec = fcntl(socket.fd, F_GETFD) & FD_CLOEXEC != 0 ? "cloexec" : "inheritable"
        return "\(socket.fd) \(socket.name) \(verdict) \(cloexec)"
    }
    lines.append(["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
        .map { "\($0)=\(getenv($0).map { String(cString: $0) } ?? "unset")" }
        .joined(separator: " "))
    let interval = SystemdWatchdog.interval().map { d in d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000 }
    lines.append(interval.map(String.init) ?? "nil")
    let file = try #require(fopen(getenv(reportVariable), "w"))
    fputs(lines.joined(separator: "\n") + "\n", file)
    fclose(file)
}

private func executablePath() throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard readlink("/proc/self/exe", &buffer, Int(PATH_MAX)) > 0 else { throw ChildProcess.Failure("readlink /proc/self/exe") }
    return String(cString: buffer)
}

/// Waits up to 30 s for our child; past that kills it (by its pid) and fails.
private func waitForExit(_ pid: pid_t, log: String) throws {
    var status: Int32 = 0
    for _ in 0..<600 {
        if waitpid(pid, &status, WNOHANG) == pid { return }
        usleep(50_000)
    }
    kill(pid, SIGKILL)
    waitpid(pid, &status, 0)
    throw ChildProcess.Failure("the child did not exit within 30 s; its output:\n\(readText(log) ?? "")")
}

private func currentEnvironment() -> [String] {
    var result: [String] = []
    var entry = environ
    while let value = entry.pointee {
        result.append(String(cString: value))
        entry += 1
    }
    return result
}

private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers = strings.map { strdup($0) }
    defer { pointers.forEach { free($0) } }
    pointers.append(nil)
    return body(pointers)
}

private func readText(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var text = ""
    var buffer = [CChar](repeating: 0, count: 4096)
    while fgets(&buffer, Int32(buffer.count), file) != nil { text += String(cString: buffer) }
    return text
}
