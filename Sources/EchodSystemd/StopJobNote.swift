import EchodSystem
import Glibc

/// What systemd is doing to the unit when its stop begins (`restart` or `stop`), written by `echod stop-hook` (the
/// unit's `ExecStop=+`, which systemd runs just before it sends SIGTERM) for echod to read at that SIGTERM.
///
/// Why a note and not only ``SystemdBus``: echod under the shipped unit cannot ask the system bus itself. A
/// `DynamicUser=yes` service is dropped by dbus-daemon on systemd 252 (dbus-daemon resolves users with
/// `SYSTEMD_NSS_DYNAMIC_BYPASS=1`, which does not see dynamic users: systemd/systemd#22737). The hook runs as root
/// (the `+` prefix), asks, and leaves one word in the unit's runtime directory (`RuntimeDirectory=`, created afresh
/// at each start, so a note is always this stop's).
package enum StopJobNote {
    /// `$RUNTIME_DIRECTORY/stop-job` (the first directory when the unit has several); nil without one.
    package static func path(environment: [String: String]) -> String? {
        guard let directories = environment["RUNTIME_DIRECTORY"], let first = directories.split(separator: ":").first,
            first.hasPrefix("/")
        else { return nil }
        return first + "/stop-job"
    }

    /// Writes the job type (`none` when no job is queued), readable by the service's own user.
    package static func write(_ job: String?, environment: [String: String]) throws(IOError) {
        guard let path = path(environment: environment) else { throw IOError("RUNTIME_DIRECTORY", errno: ENOENT) }
        let fd = try Syscall.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { Syscall.close(fd) }
        // The hook runs as root under the unit's UMask=0077: without this, the service's own user could not read it.
        try Syscall.changeMode(fd, 0o644)
        let text = Array(((job ?? "none") + "\n").utf8)
        if case .failed(let error) = text.withUnsafeBytes({ Syscall.writeAll(fd, $0) }) { throw error }
    }

    /// The job type the hook wrote for this stop (`none`: no job), or nil when there is no note.
    package static func read(environment: [String: String]) -> String? {
        guard let path = path(environment: environment), let fd = try? Syscall.open(path, O_RDONLY) else { return nil }
        defer { Syscall.close(fd) }
        guard let bytes = try? Syscall.readToEnd(fd, limit: 64) else { return nil }
        let word = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isWhitespace).first.map(String.init)
        return word?.isEmpty == false ? word : nil
    }
}
