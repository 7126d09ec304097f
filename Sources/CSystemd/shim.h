// libsystemd, as used by echod. Audit surface (see issue on systemd integration):
//   sd_listen_fds_with_names       socket activation (also the fd store's descriptors) (EchodSystemd)
//   sd_watchdog_enabled            watchdog interval                          (EchodSystemd)
//   sd_bus_open_system, sd_bus_set_method_call_timeout, sd_bus_path_encode, sd_bus_call_method (below),
//   sd_bus_get_property, sd_bus_message_read (below), sd_bus_get_property_string, sd_bus_get_property_trivial,
//   sd_bus_message_unref, sd_bus_flush_close_unref, sd_bus_error_free
//                                  the queued job and FileDescriptorStoreMax of
//                                  echod's own unit, read from systemd over D-Bus (EchodSystemd, SystemdBus)
//   sd_journal_sendv               native journal log fields                  (EchodLog)
// Notifications (READY=1, STATUS=, WATCHDOG=1, ...) and the fd store's FDSTORE=1/FDSTOREREMOVE=1 are sent without
// libsystemd: EchodSystemd writes the datagram itself (with the descriptor as SCM_RIGHTS for the fd store), so it can
// take NOTIFY_SOCKET from an explicit environment and never block on it.
#ifndef ECHOD_CSYSTEMD_SHIM_H
#define ECHOD_CSYSTEMD_SHIM_H
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// sd_bus_message_read is variadic, which Swift cannot call: reads a unit's Job property, D-Bus type "(uo)": the job's
// id (0: no job queued) and its object path. `path` points into `message` and lives as long as it does.
static inline int echod_bus_read_job(sd_bus_message *message, uint32_t *id, const char **path) {
    return sd_bus_message_read(message, "(uo)", id, path);
}

// sd_bus_call_method and sd_bus_message_read are variadic: asks systemd (Manager.GetUnitByPID with pid 0, which is
// the caller, as the bus says it is) for the object path of the unit the calling process runs in; *path is a copy for
// the caller to free(). The bus, not /proc/self/cgroup, answers: under ProtectProc=/ProcSubset= sandboxing the cgroup
// file is not always readable (sd_pid_get_unit failed with ESRCH there).
static inline int echod_bus_own_unit_path(sd_bus *bus, sd_bus_error *error, char **path) {
    sd_bus_message *reply = NULL;
    int r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                               "GetUnitByPID", error, &reply, "u", (uint32_t)0);
    if (r < 0) return r;
    const char *p = NULL;
    r = sd_bus_message_read(reply, "o", &p);
    if (r >= 0) {
        *path = strdup(p);
        if (*path == NULL) r = -ENOMEM;
    }
    sd_bus_message_unref(reply);
    return r;
}
#endif
