// libsystemd, as used by echod. Audit surface (see issue on systemd integration):
//   sd_listen_fds_with_names       socket activation (also the fd store's descriptors) (EchodSystemd)
//   sd_watchdog_enabled            watchdog interval                          (EchodSystemd)
//   sd_pid_get_unit                the unit this process runs in              (EchodSystemd, SystemdBus)
//   sd_bus_open_system, sd_bus_set_method_call_timeout, sd_bus_path_encode, sd_bus_get_property,
//   sd_bus_message_read (below), sd_bus_get_property_string, sd_bus_get_property_trivial, sd_bus_message_unref,
//   sd_bus_flush_close_unref, sd_bus_error_free
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
#include <systemd/sd-login.h>
#include <stdint.h>

// sd_bus_message_read is variadic, which Swift cannot call: reads a unit's Job property, D-Bus type "(uo)": the job's
// id (0: no job queued) and its object path. `path` points into `message` and lives as long as it does.
static inline int echod_bus_read_job(sd_bus_message *message, uint32_t *id, const char **path) {
    return sd_bus_message_read(message, "(uo)", id, path);
}
#endif
