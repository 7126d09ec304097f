import EchodSystem
import Glibc

/// The process's own resource use, read from /proc/self at scrape time (what Prometheus' `process` collector
/// reports). Any value that cannot be read (e.g. while out of descriptors) is nil and left as it was.
package struct ProcessSample: Sendable, Equatable {
    /// Resident set size, bytes (`/proc/self/statm`, field 2, times the page size).
    package var residentBytes: UInt64?
    /// Virtual memory size, bytes (`/proc/self/statm`, field 1).
    package var virtualBytes: UInt64?
    /// User plus system CPU time, in clock ticks (`/proc/self/stat`, fields 14 and 15).
    package var cpuTicks: UInt64?
    /// Start time, seconds since the Unix epoch (`/proc/self/stat` field 22 plus `btime` of `/proc/stat`).
    package var startTimeSeconds: Double?
    /// Open descriptors (entries of `/proc/self/fd`, without the one used to list it).
    package var openFDs: UInt64?
    /// The soft `RLIMIT_NOFILE`.
    package var maxFDs: UInt64?

    package static let ticksPerSecond: Double = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// Reads the current values.
    package static func read() -> ProcessSample {
        var sample = ProcessSample()
        let page = UInt64(Syscall.pageSize)
        if let statm = readSmallFile("/proc/self/statm") {
            let fields = statm.split(separator: " ")
            if fields.count >= 2, let size = UInt64(fields[0]), let resident = UInt64(fields[1]) {
                sample.virtualBytes = size * page
                sample.residentBytes = resident * page
            }
        }
        if let stat = readSmallFile("/proc/self/stat"), let close = stat.lastIndex(of: ")") {
            // Fields after the command name, which may itself contain spaces and parentheses: state is field 3.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 19, let utime = UInt64(fields[11]), let stime = UInt64(fields[12]), let start = UInt64(fields[19]) {
                sample.cpuTicks = utime + stime
                if let boot = bootTime {
                    sample.startTimeSeconds = Double(boot) + Double(start) / ticksPerSecond
                }
            }
        }
        sample.openFDs = countOpenFDs()
        sample.maxFDs = Syscall.descriptorLimit()
        return sample
    }

    /// Boot time, seconds since the epoch (`btime` in /proc/stat); read once (a static `let` is initialised once,
    /// thread-safely).
    private static let bootTime: UInt64? = {
        guard let text = readSmallFile("/proc/stat") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return UInt64(line.dropFirst(6).trimmingPrefix(" "))
        }
        return nil
    }()

    private static func countOpenFDs() -> UInt64? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        var count: UInt64 = 0
        while let entry = readdir(dir) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in
                name[0] == UInt8(ascii: ".") && (name[1] == 0 || (name[1] == UInt8(ascii: ".") && name[2] == 0))
            }
            if !isDot { count += 1 }
        }
        return count > 0 ? count - 1 : 0  // the directory stream's own descriptor
    }

    /// Reads a /proc file (a few KiB; more than 1 MiB is not one of ours); nil on any failure.
    static func readSmallFile(_ path: String) -> String? {
        guard let fd = try? Syscall.open(path, O_RDONLY) else { return nil }
        defer { Syscall.close(fd) }
        guard let bytes = try? Syscall.readToEnd(fd, limit: 1 << 20) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
