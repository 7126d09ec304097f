import Foundation
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
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        defer {
            close(fd)
            unlink(journalSocketPath)
            if createdJournal { rmdir("/run/systemd/journal") }
            if createdRun { rmdir("/run/systemd") }
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in journalSocketPath.utf8.enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound == 0, "bind \(journalSocketPath): \(String(cString: strerror(errno)))")
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        let backend = try AsyncLogBackend(options: LogOptions(level: .debug, format: .journal))
        let logger = makeLogger(backend, label: "echod.j")
        logger.warning("first\nsecond", metadata: ["conn.id": .stringConvertible(7), "peer": "a b"])
        let reads = backend.makeReadLogger(label: "echod.echo", file: "F.swift", function: "f()", line: 9)
        var v6 = in6_addr()
        #expect(inet_pton(AF_INET6, "fe80::1", &v6) == 1)
        let (high, low) = withUnsafeBytes(of: &v6) {
            ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        Array("ab\n".utf8).withUnsafeBytes {
            reads.log(loop: 1, peerFamily: 1, peerPort: 443, peerHigh: high, peerLow: low, data: $0, totalBytes: 3)
        }
        #expect(backend.shutdown(timeout: .seconds(30)))
        #expect(backend.recordsWritten == 2)

        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        try #require(n > 0, "no datagram: \(String(cString: strerror(errno)))")
        let fields = parseNativeJournal(Array(buffer[0..<n]))
        let m = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        try #require(m > 0, "no second datagram: \(String(cString: strerror(errno)))")
        let read = parseNativeJournal(Array(buffer[0..<m]))
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
