// libsystemd, as used by echod. Audit surface (see issue on systemd integration):
//   sd_notify / sd_pid_notify      readiness, status, reload, stop, watchdog  (EchodSystemd)
//   sd_listen_fds_with_names       socket activation                          (EchodSystemd)
//   sd_watchdog_enabled            watchdog interval                          (EchodSystemd)
//   sd_journal_sendv               native journal log fields                  (EchodLog)
#ifndef ECHOD_CSYSTEMD_SHIM_H
#define ECHOD_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif
