import EchodConfig
import EchodSystem
import Glibc
import Logging

extension Daemon {
    /// The owner, group and mode of the socket files echod creates, from `unix.*` and the user echod switches to.
    ///
    /// Left unset, owner and group are the user echod runs as once started: the `--user` it switches to (the files
    /// are bound as root, before the switch, so they are given to that user and its primary group: the files then
    /// look like every other file of the service, and in a sticky directory such as /tmp only their owner may remove
    /// them at exit) or else the user it runs as (nothing to change). A name that is not in the user or group
    /// database is a configuration error (exit status 78), as for `user`.
    func unixFileOptions(_ settings: EchodSettings, switchingTo account: UserAccount?) throws(StartError) -> UnixFileOptions {
        var options = UnixFileOptions(mode: settings.unixMode, uid: account?.uid, gid: account?.gid)
        if let owner = settings.unixOwner {
            if let id = UInt32(owner) {
                options.uid = id
            } else {
                do {
                    guard let found = try Syscall.lookUpUser(owner) else {
                        throw StartError(description: "unix.owner \"\(owner)\": no such user", status: ExitStatus.config)
                    }
                    options.uid = found.uid
                    // The owner's group, unless unix.group or --user says otherwise.
                    if account == nil { options.gid = found.gid }
                } catch let error as StartError {
                    throw error
                } catch {
                    throw StartError(description: "unix.owner \"\(owner)\": cannot look it up: \(error)")
                }
            }
        }
        if let group = settings.unixGroup {
            if let id = UInt32(group) {
                options.gid = id
            } else {
                let found: gid_t?
                do {
                    found = try Syscall.lookUpGroup(group)
                } catch {
                    throw StartError(description: "unix.group \"\(group)\": cannot look it up: \(error)")
                }
                guard let found else {
                    throw StartError(description: "unix.group \"\(group)\": no such group", status: ExitStatus.config)
                }
                options.gid = found
            }
        }
        return options
    }

    /// Closes a listener (``Listeners/close(_:)``: its socket file goes too) and says so when the file could not be
    /// removed.
    func closeListener(_ listener: Listener) {
        releaseListener(listener)
        if let problem = Listeners.close(listener) {
            logger.warning("socket file left behind", metadata: ["problem": .string(problem)])
        }
    }

    /// One info line per stale socket file removed before binding.
    func logRemovedStale(_ paths: [String]) {
        for path in paths {
            logger.info("removed a stale socket file from an earlier run", metadata: ["path": .string(path)])
        }
    }
}
