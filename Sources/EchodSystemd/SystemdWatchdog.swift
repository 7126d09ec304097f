/// The service manager's watchdog (`WatchdogSec=` in the unit).
///
/// When enabled, the daemon must send `WATCHDOG=1` (``SystemdNotifier/watchdogPing()``) more often than
/// ``interval()``; the usual choice is every half interval. Otherwise systemd kills it (SIGABRT, `Result=watchdog`).
package enum SystemdWatchdog {
    /// The watchdog interval, or nil when the watchdog is disabled or `WATCHDOG_PID` names another process.
    ///
    /// Reads `WATCHDOG_USEC`/`WATCHDOG_PID` from the process environment; call it at start-up. The corresponding C
    /// function is `sd_watchdog_enabled(0, &usec)`.
    package static func interval() -> Duration? {
        Libsystemd.watchdogEnabledMicroseconds().map { .microseconds(Int64(clamping: $0)) }
    }
}
