import EchodTestSupport
import Glibc
import Logging
import Testing

@testable import EchodLog

/// End-to-end check of the `sd_journal_sendv` path against a fake journald: a datagram socket bound at journald's
/// well-known path. Runs only where no journald socket exists (containers, CI) and we may create it (root).
private let journalSocketPath = "/run/systemd/journal/socket"
private let canFakeJournald: Bool = {
    guard access(journalSocketPath, F_OK) != 0, getuid() == 0 else { return false }
    return true
}()

@Suite("Journal sink", .enabled(if: canFakeJournald, "needs root and no running journald"))
struct JournalSinkTests {
    @Test("records arrive as native journal fields, newlines included; read records too")
    func sendsNativeFields() throws {
        let createdRun = mkdir("/run/systemd", 0o755) == 0
        let createdJournal = mkdir("/run/systemd/journal", 0o755) == 0
        defer {
            unlink(journalSocketPath)
            if createdJournal { rmdir("/run/systemd/journal") }
            if createdRun { rmdir("/run/systemd") }
        }
        let journald = try TestSocket.unixDatagram(boundTo: journalSocketPath, receiveTimeout: 30)

        let backend = try AsyncLogBackend(options: LogOptions(level: .debug, format: .journal))
        let logger = makeLogger(backend, label: "echod.j")
        logger.warning("first\nsecond", metadata: ["conn.id": .stringConvertible(7), "peer": "a b"])
        let reads = backend.makeReadLogger(label: "echod.echo", file: "F.swift", function: "f()", line: 9)
        let (high, low) = in6Addr("fe80::1")
        Array("ab\n".utf8).withUnsafeBytes {
            reads.log(loop: 1, peerFamily: 1, peerPort: 443, peerHigh: high, peerLow: low, data: $0, totalBytes: 3)
        }
        #expect(backend.shutdown(timeout: .seconds(30)))
        #expect(backend.recordsWritten == 2)

        let first = try #require(journald.receiveDatagram(), "no datagram: \(String(cString: strerror(errno)))")
        let fields = parseNativeJournal(first.bytes)
        let second = try #require(journald.receiveDatagram(), "no second datagram: \(String(cString: strerror(errno)))")
        let read = parseNativeJournal(second.bytes)
        #expect(
            read == [
                "MESSAGE": "read", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "echod", "CODE_FILE": "F.swift", "CODE_LINE": "9",
                "CODE_FUNC": "f()", "ECHOD_LABEL": "echod.echo", "ECHOD_BYTES": "3", "ECHOD_DATA": #"ab\n"#,
                "ECHOD_LOOP": "1", "ECHOD_PEER": "[fe80::1]:443",
            ])
        #expect(fields["MESSAGE"] == "first\nsecond")
        #expect(fields["PRIORITY"] == "4")
        #expect(fields["SYSLOG_IDENTIFIER"] == "echod")
        #expect(fields["CODE_FILE"]?.hasSuffix("JournalSinkTests.swift") == true)
        #expect(fields["CODE_FUNC"] == "sendsNativeFields()")
        #expect(fields["CODE_LINE"].flatMap { Int($0) } != nil)
        #expect(fields["ECHOD_LABEL"] == "echod.j")
        #expect(fields["ECHOD_CONN_ID"] == "7")
        #expect(fields["ECHOD_PEER"] == "a b")
    }

    /// journald's native protocol: `NAME=value\n`, or `NAME\n<u64 LE length><value>\n` for values with newlines.
    private func parseNativeJournal(_ bytes: [UInt8]) -> [String: String] {
        var fields: [String: String] = [:]
        var i = 0
        while i < bytes.count {
            guard let end = bytes[i...].firstIndex(where: { $0 == 0x0A || $0 == 0x3D }) else { break }
            let name = String(decoding: bytes[i..<end], as: UTF8.self)
            if bytes[end] == 0x3D {
                let valueEnd = bytes[(end + 1)...].firstIndex(of: 0x0A) ?? bytes.count
                fields[name] = String(decoding: bytes[(end + 1)..<valueEnd], as: UTF8.self)
                i = valueEnd + 1
            } else {
                guard end + 9 <= bytes.count else { break }
                var length = 0
                for k in 0..<8 { length |= Int(bytes[end + 1 + k]) << (8 * k) }
                let start = end + 9
                guard start + length <= bytes.count else { break }
                fields[name] = String(decoding: bytes[start..<(start + length)], as: UTF8.self)
                i = start + length + 1
            }
        }
        return fields
    }
}
