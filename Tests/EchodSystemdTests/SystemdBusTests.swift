import EchodSystemd
import Glibc
import Testing

/// SystemdBus where systemd is not the service manager (the machine these tests usually run on): every question
/// comes back as a failure that says what failed, and nothing crashes or hangs. The answers themselves (`restart`
/// during `systemctl restart`, `stop` during `systemctl stop`) need a real systemd: checked by hand in a booted
/// container (see the branch's report), not here.
@Suite struct SystemdBusTests {
    @Test(.enabled(if: !systemdIsRunning(), "systemd runs this machine: this process may well be in a unit"))
    func outsideAUnitBothQuestionsFailWithTheSameReason() {
        let job = SystemdBus.ownUnitJobType(timeout: .seconds(1))
        let limit = SystemdBus.ownUnitFDStoreMax(timeout: .seconds(1))
        guard case .failure(let jobFailure) = job, case .failure(let limitFailure) = limit else {
            Issue.record("expected failures, got \(job) and \(limit)")
            return
        }
        // Without a bus socket, opening the bus fails; with one but no systemd, asking for this process's unit does.
        #expect(jobFailure.operation == (systemBusExists() ? "GetUnitByPID (this process's unit)" : "sd_bus_open_system"))
        #expect(limitFailure == jobFailure)
    }

    @Test(.enabled(if: !systemBusExists(), "a system bus socket exists here"))
    func withoutASystemBusTheUnitsPropertiesAreAFailure() {
        let job = SystemdBus.jobType(ofUnit: "echod.service", timeout: .seconds(1))
        let limit = SystemdBus.fdStoreMax(ofUnit: "echod.service", timeout: .seconds(1))
        guard case .failure(let jobFailure) = job, case .failure(let limitFailure) = limit else {
            Issue.record("expected failures, got \(job) and \(limit)")
            return
        }
        #expect(jobFailure.operation == "sd_bus_open_system")
        #expect(jobFailure.description == "sd_bus_open_system: No such file or directory (errno 2)")
        #expect(limitFailure == jobFailure)
    }

    @Test func descriptionPrefersSystemdsMessage() {
        let failure = BusFailure("get org.freedesktop.systemd1.Unit.Job", errno: ENOENT, detail: "Unit x.service not loaded.")
        #expect(failure.description == "get org.freedesktop.systemd1.Unit.Job: Unit x.service not loaded. (errno 2)")
        #expect(BusFailure("sd_bus_open_system", errno: EACCES).description == "sd_bus_open_system: Permission denied (errno 13)")
    }
}

/// What `sd_booted()` checks: systemd is PID 1 here.
private func systemdIsRunning() -> Bool {
    access("/run/systemd/system", F_OK) == 0
}

/// Whether the D-Bus system bus socket (the default address of `sd_bus_open_system`) exists.
private func systemBusExists() -> Bool {
    access("/run/dbus/system_bus_socket", F_OK) == 0 || getenv("DBUS_SYSTEM_BUS_ADDRESS") != nil
}
