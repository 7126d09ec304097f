import EchodConfig
import EchodSystem
import Glibc
import Testing

@testable import EchodDaemon

/// Started as root with a user to switch to: the plan (decided before anything is bound) and the drop itself. The drop
/// changes the whole process for good, so it runs in a forked child; these tests need root (the tests run as root here)
/// and say so when they are skipped.
@Suite("Privilege drop")
struct PrivilegeDropTests {
    static let isRoot = geteuid() == 0
    /// ThreadSanitizer's runtime is linked in (make sanitize-tsan-unit): a child forked from this many-threaded
    /// process hangs in TSan's own locks before it runs a line, so the fork test cannot run there. The e2e test
    /// test_privileges.py checks the same drop through the real binary.
    static let underThreadSanitizer = dlsym(nil, "__tsan_init") != nil

    @Test(.enabled(if: isRoot, "needs root: the plan differs for other users, and only root can switch users"))
    func asRootTheNamedUserIsLookedUpToSwitchTo() throws {
        let plan = try PrivilegeDrop.plan(user: "nobody", environment: [:])
        guard case .switchTo(let account) = plan else {
            Issue.record("expected a switch, got \(plan)")
            return
        }
        #expect(account.name == "nobody" && account.uid == 65534 && account.gid == 65534)
    }

    @Test func unknownUserIsAConfigurationError() {
        do {
            _ = try PrivilegeDrop.plan(user: "echod-no-such-user", environment: [:])
            Issue.record("planned a switch to a user that does not exist")
        } catch {
            #expect(error.status == ExitStatus.config)
            #expect(error.description == "user \"echod-no-such-user\": no such user")
        }
    }

    @Test func rootIsNoUserToSwitchTo() {
        #expect(throws: Daemon.StartError.self) { try PrivilegeDrop.plan(user: "root", environment: [:]) }
    }

    @Test(.enabled(if: isRoot, "needs root: the warning is about running as root"))
    func asRootWithoutAUserTheWarningIsDueOnlyOutsideSystemd() throws {
        #expect(try PrivilegeDrop.plan(user: nil, environment: [:]) == .stay(warnAsRoot: true))
        #expect(try PrivilegeDrop.plan(user: nil, environment: ["NOTIFY_SOCKET": "/run/systemd/notify"]) == .stay(warnAsRoot: false))
        #expect(try PrivilegeDrop.plan(user: nil, environment: ["INVOCATION_ID": "0123456789abcdef"]) == .stay(warnAsRoot: false))
    }

    /// In a child: the drop, then a setuid(0) of the test's own that must fail with EPERM, then the IDs. The child's
    /// exit status says which step failed.
    @Test(
        .enabled(if: isRoot, "needs root: only root can switch users"),
        .disabled(if: underThreadSanitizer, "fork of a threaded process hangs under ThreadSanitizer"))
    func afterTheDropRootCannotBeRegained() throws {
        let account = try #require(try Syscall.lookUpUser("nobody"))
        let status = try Self.inChild {
            do { try PrivilegeDrop.drop(to: account) } catch { return 1 }
            if Glibc.setuid(0) == 0 { return 2 }
            if errno != EPERM { return 3 }
            if Glibc.seteuid(0) == 0 || Glibc.setgid(0) == 0 || Glibc.setegid(0) == 0 { return 4 }
            if getuid() != 65534 || geteuid() != 65534 || getgid() != 65534 || getegid() != 65534 { return 5 }
            var groups = [gid_t](repeating: 0, count: 64)
            let count = getgroups(Int32(groups.count), &groups)
            if count != Int32(account.groups.count) || Set(groups.prefix(Int(count))) != Set(account.groups) { return 6 }
            return 0
        }
        #expect(status == 0, "child exit status \(status): 1 drop failed, 2 setuid(0) succeeded, 3 odd errno, 4 root regained, 5 ids, 6 groups")
    }

    /// Runs `body` in a forked child and returns its exit status; the child is killed if it takes over 10 s (the
    /// test process has other threads, and a child of a threaded process must not wait for their locks forever).
    static func inChild(_ body: () -> Int32) throws -> Int32 {
        let pid = fork()
        if pid == 0 { _exit(body()) }
        try #require(pid > 0, "fork failed: errno \(errno)")
        var status: Int32 = 0
        for _ in 0..<1000 {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        Issue.record("the child did not finish within 10 s")
        return -1
    }
}
