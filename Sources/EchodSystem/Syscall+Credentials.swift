import CEchodLinux
import Glibc

/// A user account as the password and group databases give it: everything a privilege drop needs, looked up in one
/// go so that the drop itself is three system calls and no database lookup (no NSS module, no file read) after the
/// listeners are bound.
package struct UserAccount: Sendable, Equatable {
    /// The login name, as looked up.
    package var name: String
    package var uid: uid_t
    /// The primary group.
    package var gid: gid_t
    /// The supplementary groups: the primary group and every group that lists the user (`getgrouplist`), what
    /// `initgroups` would set.
    package var groups: [gid_t]

    package init(name: String, uid: uid_t, gid: gid_t, groups: [gid_t]) {
        self.name = name
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }
}

extension Syscall {
    /// Looks `name` up in the password database, then its groups. nil when there is no such user; throws when the
    /// lookup itself failed (an unreadable /etc/passwd, an unreachable directory service).
    /// The corresponding C functions are `getpwnam_r` and `getgrouplist`.
    package static func lookUpUser(_ name: String) throws(IOError) -> UserAccount? {
        var entry = passwd()
        let found = try lookingUp("getpwnam_r", sizeHint: _SC_GETPW_R_SIZE_MAX) { buffer, size, found in
            getpwnam_r(name, &entry, buffer, size, found)
        }
        guard found else { return nil }
        return UserAccount(name: name, uid: entry.pw_uid, gid: entry.pw_gid, groups: try groupList(name, entry.pw_gid))
    }

    /// Looks `name` up in the group database: its gid, or nil when there is no such group; throws when the lookup
    /// itself failed. The corresponding C function is `getgrnam_r`.
    package static func lookUpGroup(_ name: String) throws(IOError) -> gid_t? {
        var entry = group()
        let found = try lookingUp("getgrnam_r", sizeHint: _SC_GETGR_R_SIZE_MAX) { buffer, size, found in
            getgrnam_r(name, &entry, buffer, size, found)
        }
        return found ? entry.gr_gid : nil
    }

    /// The one loop of the reentrant NSS lookups (`getpwnam_r`, `getgrnam_r`): `call` fills an entry whose strings
    /// live in `buffer`, grown while it is too small. Whether an entry was found; throws when the lookup failed.
    private static func lookingUp<Entry>(
        _ operation: StaticString, sizeHint: Int,
        _ call: (UnsafeMutablePointer<CChar>, Int, UnsafeMutablePointer<UnsafeMutablePointer<Entry>?>) -> Int32
    ) throws(IOError) -> Bool {
        let suggested = sysconf(Int32(sizeHint))
        var size = suggested > 0 ? suggested : 4096
        while true {
            var found: UnsafeMutablePointer<Entry>?
            var buffer = [CChar](repeating: 0, count: size)
            // These return the error number itself rather than -1 and errno.
            let code = buffer.withUnsafeMutableBufferPointer { call($0.baseAddress!, $0.count, &found) }
            switch code {
            case 0:
                return found != nil
            case EINTR:
                continue
            case ERANGE where size < 1 << 20:
                size *= 2
            // Not found is 0 with no entry, but glibc's NSS modules also report it as ENOENT or ESRCH (getpwnam_r(3)).
            case ENOENT, ESRCH:
                return false
            default:
                throw IOError(operation, errno: code)
            }
        }
    }

    /// Every group `name` belongs to, `primary` first. The corresponding C function is `getgrouplist`.
    private static func groupList(_ name: String, _ primary: gid_t) throws(IOError) -> [gid_t] {
        var count: Int32 = 32
        // getgrouplist says how many it needs when the array is too short; a user whose groups change between two
        // calls is the only reason for a third round.
        for _ in 0..<4 {
            var groups = [gid_t](repeating: 0, count: Int(count))
            let n = groups.withUnsafeMutableBufferPointer { getgrouplist(name, primary, $0.baseAddress, &count) }
            if n >= 0 { return Array(groups.prefix(Int(count))) }
        }
        throw IOError("getgrouplist", errno: ERANGE)
    }

    /// `setgroups(2)`: replaces the supplementary groups. glibc applies it to every thread of the process.
    package static func setGroups(_ groups: [gid_t]) throws(IOError) {
        _ = try groups.withUnsafeBufferPointer { (list) throws(IOError) -> Int32 in
            try retryingInterrupts("setgroups") { Glibc.setgroups(list.count, list.baseAddress) }
        }
    }

    /// `setgid(2)`: as root, sets the real, effective, saved and file-system group IDs; for every thread.
    package static func setGroupID(_ gid: gid_t) throws(IOError) {
        _ = try retryingInterrupts("setgid") { Glibc.setgid(gid) }
    }

    /// `setuid(2)`: as root, sets the real, effective, saved and file-system user IDs and so clears every
    /// capability; for every thread. Called by a user that is not root it can only set the effective ID to the real
    /// or saved one, which is how a drop is checked to be for good.
    package static func setUserID(_ uid: uid_t) throws(IOError) {
        _ = try retryingInterrupts("setuid") { Glibc.setuid(uid) }
    }

    /// The user and group IDs of the process as (real, effective): `getuid`, `geteuid`, `getgid`, `getegid`.
    package static func userIDs() -> (real: uid_t, effective: uid_t, group: gid_t, effectiveGroup: gid_t) {
        (getuid(), geteuid(), getgid(), getegid())
    }
}
