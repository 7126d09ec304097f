import EchodSystemd
import EchodTestSupport
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
        defer { unlink(reportPath) }

        let script = exports.map { "export \($0); " }.joined() + "exec \"$0\" \"$@\""
        let arguments = [
            "/bin/sh", "-c", script, try executablePath(),
            "--testing-library", "swift-testing", "--filter", "childReport",
        ]
        let inherited = currentEnvironment().filter {
            !["LISTEN_", "WATCHDOG_", "NOTIFY_SOCKET="].contains(where: $0.hasPrefix)
        }
        let child = try SpawnedProcess.spawn(
            arguments, environment: inherited + environment + ["\(reportVariable)=\(reportPath)"], passing: fds)
        defer { child.removeOutput() }
        _ = try child.wait(seconds: 30)
        guard let text = try? readFile(reportPath) else {
            throw TestFailure("the child wrote no report; its output:\n\(child.output())")
        }
        var lines = text.split(separator: "\n").map(String.init)
        guard lines.count >= 2 else { throw TestFailure("short report: \(text)") }
        let watchdog = lines.removeLast()
        let listenVariables = lines.removeLast()
        return ChildProcess(sockets: lines, listenVariables: listenVariables, watchdog: watchdog)
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
    lines.append(
        ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
            .map { "\($0)=\(getenv($0).map { String(cString: $0) } ?? "unset")" }
            .joined(separator: " "))
    let interval = SystemdWatchdog.interval().map { d in d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000 }
    lines.append(interval.map(String.init) ?? "nil")
    let file = try #require(fopen(getenv(reportVariable), "w"))
    fputs(lines.joined(separator: "\n") + "\n", file)
    fclose(file)
}
