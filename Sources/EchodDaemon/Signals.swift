import EchodSystem
import Glibc
import Logging

/// The signals echod handles, and what each does. They are blocked in every thread (the main thread blocks them
/// before it starts any other, and the log writer is given the same list) and arrive only through the control
/// loop's signalfd, so each is handled on the control loop like any other event.
extension Daemon {
    /// The one signal list: blocked in every thread, delivered to ``handleSignal(_:)``. SIGPIPE is not here: it is
    /// ignored process-wide (a write to a peer that reset fails with EPIPE instead).
    static let handledSignals = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGABRT]

    func handleSignal(_ signo: Int32) {
        switch signo {
        case SIGTERM, SIGINT:
            beginShutdown(signal: signo == SIGTERM ? "SIGTERM" : "SIGINT")
        case SIGHUP:
            reload()
        case SIGUSR1:
            logger.info("reopening log file (SIGUSR1)")
            backend.reopen()
        case SIGUSR2:
            #if DEBUG
                stallLoopForTests()
            #else
                logger.debug("SIGUSR2 ignored")
            #endif
        case SIGABRT:
            abortOnRequest()
        default:
            break
        }
    }

    /// SIGABRT sent by another process (systemd's watchdog timeout): log it, then really abort. Taken through the
    /// signalfd because the Swift runtime's backtracer, when it catches an asynchronous SIGABRT directly, prints a
    /// backtrace and returns, and the process would go on running. `abort()` unblocks SIGABRT, raises it (the
    /// backtracer prints every thread, showing where a stalled loop is stuck), then ends the process.
    private func abortOnRequest() {
        let stalled = watchdog?.stalledLoops(now: Syscall.monotonicNanoseconds()) ?? []
        logger.critical("SIGABRT received (systemd watchdog timeout?): aborting", metadata: ["stalled_loops": .string("\(stalled)")])
        backend.flush(timeout: .seconds(1))
        abort()
    }

    #if DEBUG
        /// Test hook, compiled into debug builds only (the end-to-end tests run the debug binary; the release binary
        /// that is packaged has no such switch): with ECHOD_TEST_HOOKS=1, wedge event loop 0 forever, as a handler stuck
        /// in an endless loop would, so tests can prove the watchdog and health checks notice. Ignored otherwise.
        private func stallLoopForTests() {
            guard options.environment["ECHOD_TEST_HOOKS"] == "1", let first = workers.first else {
                logger.debug("SIGUSR2 ignored (test hooks are off)")
                return
            }
            logger.warning("test hook: stalling event loop 0 (SIGUSR2 with ECHOD_TEST_HOOKS=1)")
            first.loop.execute { while true { sleep(1000) } }
        }
    #endif
}
