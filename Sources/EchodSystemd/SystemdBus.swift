import CSystemd
import EchodSystem
import Glibc

/// Why a question to systemd over D-Bus got no answer: the step that failed and its errno, with systemd's own error
/// message when it sent one.
///
/// Printed as `sd_bus_open_system: No such file or directory (errno 2)`, or
/// `get org.freedesktop.systemd1.Unit.Job: Unit echod.service not loaded. (errno 2)`.
package struct BusFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The call or D-Bus property that failed.
    package var operation: String
    /// Its errno (libsystemd returns them negated; this is the positive value).
    package var errno: Int32
    /// The D-Bus error message, or a sentence of ours; nil when the errno says it all.
    package var detail: String?

    package init(_ operation: String, errno: Int32, detail: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.detail = detail
    }

    package var description: String {
        "\(operation): \(detail ?? IOError("sd-bus", errno: errno).message) (errno \(errno))"
    }
}

/// Questions echod asks systemd about its own unit, over the system bus (sd-bus): whether a restart is queued
/// (at SIGTERM: hand over the connections, or drain them) and how many descriptors its fd store may hold.
///
/// Each call opens its own connection to the system bus and closes it before returning: they are rare (start-up,
/// SIGTERM), so nothing is kept open between them, and no sd-bus object is shared between threads (sd-bus objects
/// are not thread-safe). Each method call waits at most `timeout` (`sd_bus_set_method_call_timeout`); the job type
/// takes two of them (the unit's Job, then the job's JobType). As root (`echod stop-hook`), the connection is to
/// systemd's own socket, as `systemctl`'s; otherwise to the D-Bus system bus (dbus-daemon or dbus-broker at
/// /run/dbus/system_bus_socket, or `DBUS_SYSTEM_BUS_ADDRESS`): without one, or outside a unit, every call returns a
/// failure and never crashes.
package enum SystemdBus {
    /// The type of the job queued for this process's own unit (`restart`, `stop`, `start`, ...; systemd's
    /// `JobType` property), nil when none is. During `systemctl restart` it is `restart` for the whole stop phase
    /// (`try-restart` and `reload-or-restart` become `restart` when queued for a running unit that cannot reload);
    /// during `systemctl stop` it is `stop`.
    package static func ownUnitJobType(timeout: Duration) -> Result<String?, BusFailure> {
        withUnit(nil, timeout: timeout, jobType)
    }

    /// `FileDescriptorStoreMax=` of this process's own unit (a service): how many descriptors systemd keeps for it.
    package static func ownUnitFDStoreMax(timeout: Duration) -> Result<UInt32, BusFailure> {
        withUnit(nil, timeout: timeout, fdStoreMax)
    }

    /// ``ownUnitJobType(timeout:)`` for the unit named `unit` (e.g. `echod.service`).
    package static func jobType(ofUnit unit: String, timeout: Duration) -> Result<String?, BusFailure> {
        withUnit(unit, timeout: timeout, jobType)
    }

    private static func jobType(_ bus: OpaquePointer, _ path: UnsafePointer<CChar>) -> Result<String?, BusFailure> {
        var error = sd_bus_error()
        defer { sd_bus_error_free(&error) }
        var reply: OpaquePointer? = nil
        defer { sd_bus_message_unref(reply) }
        let rc = sd_bus_get_property(bus, destination, path, unitInterface, "Job", &error, &reply, "(uo)")
        guard rc >= 0 else { return .failure(failure("get \(unitInterface).Job", rc, error)) }
        var id: UInt32 = 0
        var jobPath: UnsafePointer<CChar>? = nil
        let read = echod_bus_read_job(reply, &id, &jobPath)
        guard read >= 0, let jobPath else {
            return .failure(BusFailure("read \(unitInterface).Job", errno: read < 0 ? -read : EBADMSG))
        }
        if id == 0 { return .success(nil) }
        // The job may end between the two calls; then systemd answers "unknown object" and this is a failure.
        var type: UnsafeMutablePointer<CChar>? = nil
        defer { free(type) }
        let got = sd_bus_get_property_string(bus, destination, jobPath, jobInterface, "JobType", &error, &type)
        guard got >= 0, let type else { return .failure(failure("get \(jobInterface).JobType", got, error)) }
        return .success(String(cString: type))
    }

    /// ``ownUnitFDStoreMax(timeout:)`` for the unit named `unit` (a `.service`).
    package static func fdStoreMax(ofUnit unit: String, timeout: Duration) -> Result<UInt32, BusFailure> {
        withUnit(unit, timeout: timeout, fdStoreMax)
    }

    private static func fdStoreMax(_ bus: OpaquePointer, _ path: UnsafePointer<CChar>) -> Result<UInt32, BusFailure> {
        var error = sd_bus_error()
        defer { sd_bus_error_free(&error) }
        var value: UInt32 = 0
        let rc = withUnsafeMutablePointer(to: &value) {
            sd_bus_get_property_trivial(
                bus, destination, path, serviceInterface, "FileDescriptorStoreMax", &error, CChar(UInt8(ascii: "u")), $0)
        }
        guard rc >= 0 else { return .failure(failure("get \(serviceInterface).FileDescriptorStoreMax", rc, error)) }
        return .success(value)
    }

    private static let destination = "org.freedesktop.systemd1"
    private static let unitInterface = "org.freedesktop.systemd1.Unit"
    private static let jobInterface = "org.freedesktop.systemd1.Job"
    private static let serviceInterface = "org.freedesktop.systemd1.Service"

    /// Opens the system bus with `timeout` for each method call, finds the object path of `unit` (nil: the unit this
    /// process runs in, asked of systemd), runs `body`, and releases both whatever happens.
    private static func withUnit<T>(
        _ unit: String?, timeout: Duration, _ body: (OpaquePointer, UnsafePointer<CChar>) -> Result<T, BusFailure>
    ) -> Result<T, BusFailure> {
        var bus: OpaquePointer? = nil
        defer { sd_bus_flush_close_unref(bus) }
        if geteuid() == 0 { bus = openPrivate() }
        if bus == nil {
            let opened = sd_bus_open_system(&bus)
            guard opened >= 0 else { return .failure(BusFailure("sd_bus_open_system", errno: -opened)) }
        }
        guard let bus else { return .failure(BusFailure("sd_bus_open_system", errno: ENOTCONN)) }
        // 0 would mean sd-bus's default (25 s): the shortest timeout is one microsecond.
        let microseconds = UInt64(max(timeout.nanoseconds / 1_000, 1))
        let set = sd_bus_set_method_call_timeout(bus, microseconds)
        guard set >= 0 else { return .failure(BusFailure("sd_bus_set_method_call_timeout", errno: -set)) }
        var path: UnsafeMutablePointer<CChar>? = nil
        defer { free(path) }
        if let unit {
            let encoded = sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit, &path)
            guard encoded >= 0 else { return .failure(BusFailure("sd_bus_path_encode", errno: -encoded)) }
        } else {
            var error = sd_bus_error()
            defer { sd_bus_error_free(&error) }
            let found = echod_bus_own_unit_path(bus, &error, &path)
            guard found >= 0 else { return .failure(failure("GetUnitByPID (this process's unit)", found, error)) }
        }
        guard let path else { return .failure(BusFailure("unit path", errno: EBADMSG)) }
        return body(bus, path)
    }

    /// As root, systemd's own socket (`/run/systemd/private`), as `systemctl` does: it answers without a D-Bus daemon
    /// (hosts and containers without dbus). Nil when it cannot be used; the caller then tries the system bus.
    private static func openPrivate() -> OpaquePointer? {
        var bus: OpaquePointer? = nil
        guard sd_bus_new(&bus) >= 0, let bus else { return nil }
        guard sd_bus_set_address(bus, "unix:path=/run/systemd/private") >= 0, sd_bus_start(bus) >= 0 else {
            sd_bus_flush_close_unref(bus)
            return nil
        }
        return bus
    }

    /// A failure from a property read: its errno, and systemd's message when the reply was a D-Bus error.
    private static func failure(_ operation: String, _ rc: Int32, _ error: sd_bus_error) -> BusFailure {
        BusFailure(operation, errno: -rc, detail: error.message.map { String(cString: $0) })
    }
}
