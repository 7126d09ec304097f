import EchodConfig
import EchodSystem
import Glibc
import Logging

/// Started as root, echod binds its listeners (ports below 1024 included) and opens its log file, then becomes the
/// configured `user` (`--user`) for good, before its event loops serve a byte and before READY=1.
///
/// The user is looked up first, before anything is bound, so that an unknown name stops the start with a clear
/// message and the drop itself makes no database lookup. The order of the drop is the only safe one: supplementary
/// groups, then the group, then the user (once the user is not root, it may change neither). glibc applies each call
/// to every thread of the process. Afterwards the kernel has cleared every capability (the e2e test reads CapEff and
/// CapPrm of every thread).
enum PrivilegeDrop {
    /// What start-up does about its user, decided before anything is bound.
    enum Plan: Equatable {
        /// No user was asked for. `warnAsRoot`: running as root outside systemd, which deserves a warning.
        case stay(warnAsRoot: Bool)
        /// Started as root: switch to this account after binding.
        case switchTo(UserAccount)
        /// Already running as the named user (the unit's `User=` names the same one): nothing to switch.
        case alreadyThere(UserAccount)
    }

    /// Decides the plan for `user` (nil: none asked for). A user that does not exist, is root itself, or cannot be
    /// switched to because echod is not root is a configuration error (exit status 78, so that systemd does not
    /// restart into the same failure).
    static func plan(user: String?, environment: [String: String]) throws(Daemon.StartError) -> Plan {
        let ids = Syscall.userIDs()
        guard let user else {
            return .stay(warnAsRoot: ids.effective == 0 && !underSystemd(environment))
        }
        let found: UserAccount?
        do {
            found = try Syscall.lookUpUser(user)
        } catch {
            throw Daemon.StartError(description: "user \"\(user)\": cannot look it up: \(error)")
        }
        guard let account = found else {
            throw Daemon.StartError(description: "user \"\(user)\": no such user", status: ExitStatus.config)
        }
        guard account.uid != 0 else {
            throw Daemon.StartError(
                description: "user \"\(user)\" is root itself: name an unprivileged user to switch to", status: ExitStatus.config)
        }
        if ids.effective == 0 { return .switchTo(account) }
        // Not root: switching is impossible. Refused rather than warned about, since the operator asked echod never
        // to run as anyone else; only a process that already is that user (systemd's User=) satisfies the request.
        guard ids.real == account.uid && ids.effective == account.uid else {
            throw Daemon.StartError(
                description:
                    "user \"\(user)\": switching users needs root, and echod runs as uid \(ids.effective); start it as root, or drop --user / user: (under systemd, the unit's User= or DynamicUser= chooses the user)",
                status: ExitStatus.config)
        }
        return .alreadyThere(account)
    }

    /// Becomes `account` for good, then proves it: every user and group ID is the account's, and `setuid(0)` is
    /// refused. Any failure stops the start: echod never serves with privileges it was asked to give up.
    static func drop(to account: UserAccount) throws(Daemon.StartError) {
        do {
            try Syscall.setGroups(account.groups)
            try Syscall.setGroupID(account.gid)
            try Syscall.setUserID(account.uid)
        } catch {
            throw Daemon.StartError(description: "cannot switch to user \"\(account.name)\": \(error)")
        }
        let ids = Syscall.userIDs()
        guard ids.real == account.uid, ids.effective == account.uid, ids.group == account.gid, ids.effectiveGroup == account.gid else {
            throw Daemon.StartError(
                description:
                    "switched to user \"\(account.name)\", but the process has uid \(ids.real)/\(ids.effective), gid \(ids.group)/\(ids.effectiveGroup)")
        }
        // As OpenSSH does after its own drop: if root can be regained, the drop did not happen.
        do {
            try Syscall.setUserID(0)
        } catch {
            guard error.errno == EPERM else {
                throw Daemon.StartError(description: "after switching to user \"\(account.name)\", setuid(0) failed oddly: \(error)")
            }
            return
        }
        throw Daemon.StartError(description: "switched to user \"\(account.name)\", but setuid(0) still succeeds")
    }

    /// systemd started us (a service sets INVOCATION_ID; a Type=notify one also NOTIFY_SOCKET): its unit decides the
    /// user, and the warning about root would only be noise.
    static func underSystemd(_ environment: [String: String]) -> Bool {
        environment["INVOCATION_ID"] != nil || environment["NOTIFY_SOCKET"] != nil
    }

    /// The warning echod gives once at start when it runs as root outside systemd without a user to switch to.
    static let rootWarning =
        "running as root: every connection is served with root's privileges; pass --user NAME (or set user: in the configuration) to switch to an unprivileged user after binding, or run echod under its systemd unit (User=/DynamicUser=)"
}

extension Daemon {
    /// Start-up, first step: looks the user up before anything is bound or opened, so that an unknown user stops the
    /// start before it has had any effect.
    func planPrivileges(_ settings: EchodSettings) throws(StartError) -> PrivilegeDrop.Plan {
        try PrivilegeDrop.plan(user: settings.user, environment: options.environment)
    }

    /// Start-up, once the log is set up: says once that echod runs as root, when it does so outside systemd with no
    /// user to switch to.
    func warnIfRoot(_ plan: PrivilegeDrop.Plan) {
        guard plan == .stay(warnAsRoot: true) else { return }
        logger.warning("\(PrivilegeDrop.rootWarning)")
    }

    /// Start-up, once every listener is bound and the log file open, before any loop serves: switches user.
    func dropPrivileges(_ plan: PrivilegeDrop.Plan) throws(StartError) {
        switch plan {
        case .stay:
            return
        case .alreadyThere(let account):
            logger.info("already running as the configured user", metadata: ["user": .string(account.name), "uid": .stringConvertible(account.uid)])
        case .switchTo(let account):
            try PrivilegeDrop.drop(to: account)
            logger.info(
                "switched to an unprivileged user; root cannot be regained",
                metadata: [
                    "user": .string(account.name), "uid": .stringConvertible(account.uid), "gid": .stringConvertible(account.gid),
                    "groups": .string(account.groups.map { "\($0)" }.joined(separator: ",")),
                ])
        }
    }
}
