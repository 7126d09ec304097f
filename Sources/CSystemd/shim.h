// libsystemd, as used by echod. Audit surface (see issue on systemd integration):
//   sd_listen_fds_with_names       socket activation                          (EchodSystemd)
//   sd_watchdog_enabled            watchdog interval                          (EchodSystemd)
//   sd_journal_sendv               native journal log fields                  (EchodLog)
// Notifications (READY=1, STATUS=, WATCHDOG=1, ...) are sent without libsystemd: EchodSystemd writes the
// datagram itself, so it can take NOTIFY_SOCKET from an explicit environment and cap the send time.
#ifndef ECHOD_CSYSTEMD_SHIM_H
#define ECHOD_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif
