import EchodSystem
import EchodTestSupport
import Glibc
import Logging
import Synchronization

@testable import EchodLog

/// Sum of N over all `dropped N records` lines.
func droppedTotal(in lines: [String]) -> UInt64 {
    var total: UInt64 = 0
    for line in lines {
        guard let range = line.range(of: "log queue full: dropped ") else { continue }
        let digits = line[range.upperBound...].prefix { $0.isNumber }
        total += UInt64(digits) ?? 0
    }
    return total
}

func makeLogger(_ backend: AsyncLogBackend, label: String) -> Logger {
    Logger(label: label) { backend.makeHandler(label: $0) }
}

/// A record with fixed time and call site, for formatter tests.
func makeRecord(
    message: String,
    level: Logger.Level = .info,
    label: String = "echod.test",
    metadata: Logger.Metadata? = nil,
    error: (any Error)? = nil,
    seconds: Int = 1_700_000_000,
    nanoseconds: Int = 123_456_789
) -> LogRecord {
    LogRecord(
        seconds: seconds, nanoseconds: nanoseconds, label: label,
        event: LogEvent(
            level: level, message: "\(message)", error: error, metadata: metadata, source: "Tests",
            file: "EchodLogTests/Formatting.swift", function: "test()", line: 42))
}

/// Records on which threads its `description` ran: pthread id and the kernel's thread name.
final class ThreadProbe: CustomStringConvertible, Sendable {
    let threads = Mutex<[(id: UInt, name: String)]>([])

    var description: String {
        let name = ((try? readFile("/proc/thread-self/comm")) ?? "").filter { $0 != "\n" }
        threads.withLock { $0.append((currentThreadID(), name)) }
        return "probed"
    }
}

func currentThreadID() -> UInt {
    UInt(bitPattern: Int(bitPattern: pthread_self()))
}

/// `in_addr.s_addr` of a dotted quad (network order in memory), as `SocketAddress` keeps it in `high`.
func inAddr(_ text: String) -> UInt32 {
    var a = in_addr()
    precondition(inet_pton(AF_INET, text, &a) == 1)
    return a.s_addr
}

/// `(high, low)` of an IPv6 address, as `SocketAddress` keeps it.
func in6Addr(_ text: String) -> (UInt64, UInt64) {
    var a = in6_addr()
    precondition(inet_pton(AF_INET6, text, &a) == 1)
    return withUnsafeBytes(of: &a) {
        ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }
}

// What only the tests need from EchodLog, kept here rather than in the module: whole lines as strings, the journal
// fields of a read record as strings, a peer address alone.

extension LogFormatter {
    static func text(_ record: LogRecord) -> String {
        var out: [UInt8] = []
        appendText(record, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func json(_ record: LogRecord) -> String {
        var out: [UInt8] = []
        appendJSON(record, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

extension ReadFormatter {
    static func text(_ record: ReadRecord) -> String {
        var out: [UInt8] = []
        appendText(record, label: record.label.takeUnretainedValue(), to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func json(_ record: ReadRecord) -> String {
        var out: [UInt8] = []
        appendJSON(record, label: record.label.takeUnretainedValue(), to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The journal fields as strings, exactly the iovecs `sendJournal` hands to journald.
    static func journalFields(_ record: ReadRecord, label: ReadLabel) -> [String] {
        withJournalFields(record, label: label) { iov in
            iov.map { String(decoding: UnsafeRawBufferPointer(start: $0.iov_base, count: $0.iov_len), as: UTF8.self) }
        }
    }

    /// The peer as the read formatter writes it.
    static func peerText(family: UInt8, port: UInt16, high: UInt64, low: UInt64) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { buffer in
            var w = RawBytes(buffer.baseAddress!)
            w.peer(family: family, port: port, high: high, low: low)
            return String(
                decoding: UnsafeBufferPointer(rebasing: buffer[0..<w.count(from: buffer.baseAddress!)]), as: UTF8.self)
        }
    }
}

extension AsyncLogBackend {
    /// Records that reached the writer but could not be written.
    var recordsFailed: UInt64 { core.failed.load(ordering: .relaxed) }

    /// The options last given to `init` or `apply`.
    var options: LogOptions { state.withLock { $0.options } }
}
