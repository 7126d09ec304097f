import Testing

/// `SystemdWatchdog.interval()` reads WATCHDOG_USEC/WATCHDOG_PID from the process environment: each case runs in a
/// fresh child process (ChildProcess.swift says why).
@Suite struct SystemdWatchdogTests {
    @Test func enabledForThisProcess() throws {
        let report = try ChildProcess.report(exports: ["WATCHDOG_PID=$$"], environment: ["WATCHDOG_USEC=3000000"])
        #expect(report.watchdog == "3000000")
    }

    @Test func enabledWithoutPID() throws {
        #expect(try ChildProcess.report(environment: ["WATCHDOG_USEC=10000000"]).watchdog == "10000000")
    }

    @Test func disabledWhenMeantForAnotherProcess() throws {
        #expect(try ChildProcess.report(environment: ["WATCHDOG_USEC=3000000", "WATCHDOG_PID=1"]).watchdog == "nil")
    }

    @Test func disabledWhenUnsetOrMalformed() throws {
        #expect(try ChildProcess.report().watchdog == "nil")
        #expect(try ChildProcess.report(environment: ["WATCHDOG_USEC=soon"]).watchdog == "nil")
    }
}
