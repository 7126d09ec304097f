// libsystemd audit: this file and SystemdBus.swift are the ONLY places in EchodSystemd that import libsystemd
// (CSystemd), and these are the only libsystemd functions echod calls outside EchodLog's journal sink (which uses
// sd_journal_sendv):
//
//   sd_listen_fds_with_names(1, &names)   socket activation, and the descriptors of the fd store handed back at
//                                         start. Checks LISTEN_PID against getpid(), parses LISTEN_FDS and
//                                         LISTEN_FDNAMES, sets FD_CLOEXEC on fds 3..3+n-1 and unsets the three
//                                         variables (unset_environment=1) so nothing echod might spawn inherits them.
//                                         It changes no socket option.
//   sd_watchdog_enabled(0, &usec)         watchdog. Parses WATCHDOG_USEC, checks WATCHDOG_PID against getpid().
//   sd_pid_get_unit(0, &unit)             (SystemdBus.swift) the unit echod runs in, read from /proc/self/cgroup.
//   sd_bus_open_system, sd_bus_set_method_call_timeout, sd_bus_path_encode, sd_bus_get_property,
//   sd_bus_message_read (through echod_bus_read_job in shim.h: variadic), sd_bus_get_property_string,
//   sd_bus_get_property_trivial, sd_bus_message_unref, sd_bus_error_free, sd_bus_flush_close_unref
//                                         (SystemdBus.swift) reading three properties of systemd's D-Bus API
//                                         (the unit's Job, the job's JobType, the service's FileDescriptorStoreMax)
//                                         on a connection to the system bus opened and closed per question. Never
//                                         a method that changes anything.
//
// Deliberately NOT used:
//   sd_notify / sd_pid_notify / sd_notifyf  SystemdNotifier speaks the notification protocol itself (one datagram to
//                                         an AF_UNIX address); SystemdNotifier.swift says why. (sd_notifyf is
//                                         variadic and not callable from Swift anyway.)
//   sd_pid_notify_with_fds                FDStoreChannel (FDStore.swift) sends FDSTORE=1/FDSTOREREMOVE=1 itself the
//                                         same way, the descriptor attached with sendmsg(2) as SCM_RIGHTS.
//   sd_is_socket*                         SocketActivation.validateListening reads getsockopt(2) itself, so the
//                                         checks and the error text are ours.
//   everything else (sd-event, the rest of sd-bus and sd-login, sd_booted, ...).
//
// sd_listen_fds_with_names and sd_watchdog_enabled read the process environment (getenv), so the callers run them
// once at start-up, before echod starts threads; sd_listen_fds_with_names(1, ...) also calls unsetenv, which is not
// thread-safe.
import CSystemd
import Glibc

enum Libsystemd {
    /// `sd_listen_fds_with_names(1, &names)`: the passed descriptors (starting at `SD_LISTEN_FDS_START`, 3) and
    /// their names. Empty when nothing was passed to this process; `nil` when libsystemd reports an error (e.g. a
    /// malformed `LISTEN_FDS`, or `LISTEN_FDNAMES` with the wrong number of names).
    static func listenFDsWithNames() -> [(fd: Int32, name: String)]? {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        let count = sd_listen_fds_with_names(1, &names)
        defer {
            if let names {
                for i in 0..<Int(max(count, 0)) { free(names[i]) }
                free(names)
            }
        }
        guard count >= 0 else { return nil }
        return (0..<count).map { i in
            let name = names?[Int(i)].map { String(cString: $0) } ?? ""
            return (fd: Int32(SD_LISTEN_FDS_START) + i, name: name)
        }
    }

    /// `sd_watchdog_enabled(0, &usec)`: the watchdog interval in microseconds when systemd asks this process for
    /// keep-alive pings; `nil` when it does not (unset, `WATCHDOG_PID` names another process) or on a parse error.
    static func watchdogEnabledMicroseconds() -> UInt64? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return usec
    }
}
