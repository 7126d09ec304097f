import EchodTestSupport
import Glibc
import Logging
import Testing

@testable import EchodLog

@Suite("Journal fields")
struct JournalFieldTests {
    @Test("record to native journald fields")
    func fields() {
        let record = makeRecord(
            message: "two\nlines",
            level: .error,
            label: "echod.echo",
            metadata: ["peer": "10.0.0.1:7", "conn.id": .stringConvertible(17), "weird key-é": "x"])
        let fields = JournalFields.fields(for: record)
        #expect(
            fields == [
                "MESSAGE=two\nlines",
                "PRIORITY=3",
                "SYSLOG_IDENTIFIER=echod",
                "CODE_FILE=EchodLogTests/Formatting.swift",
                "CODE_LINE=42",
                "CODE_FUNC=test()",
                "ECHOD_LABEL=echod.echo",
                "ECHOD_CONN_ID=17",
                "ECHOD_PEER=10.0.0.1:7",
                "ECHOD_WEIRD_KEY___=x",
            ])
    }

    @Test("levels map to syslog priorities")
    func priorities() {
        let expected: [(Logger.Level, String)] = [
            (.trace, "7"), (.debug, "7"), (.info, "6"), (.notice, "5"), (.warning, "4"), (.error, "3"),
            (.critical, "2"),
        ]
        for (level, priority) in expected {
            let fields = JournalFields.fields(for: makeRecord(message: "m", level: level))
            #expect(fields.contains("PRIORITY=" + priority), "\(level)")
        }
    }

    @Test("field names are sanitised to [A-Z0-9_] and at most 64 bytes")
    func fieldNames() {
        #expect(JournalFields.fieldName(forMetadataKey: "request_id") == "ECHOD_REQUEST_ID")
        #expect(JournalFields.fieldName(forMetadataKey: "_x") == "ECHOD__X")
        #expect(JournalFields.fieldName(forMetadataKey: "9lives") == "ECHOD_9LIVES")
        #expect(JournalFields.fieldName(forMetadataKey: "") == "ECHOD_")
        let long = JournalFields.fieldName(forMetadataKey: String(repeating: "a", count: 100))
        #expect(long.utf8.count == 64)
        for name in ["a.b", "ß", "tab\t", "x=y"].map(JournalFields.fieldName(forMetadataKey:)) {
            #expect(name.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }, "\(name)")
        }
    }
}

@Suite("Auto format")
struct AutoFormatTests {
    @Test("journal only when JOURNAL_STREAM names the descriptor")
    func autoFormat() throws {
        let pipe = try TestPipe()
        defer {
            pipe.closeReadEnd()
            pipe.closeWriteEnd()
        }
        var st = stat()
        #expect(fstat(pipe.writeFD, &st) == 0)
        let matching = "\(st.st_dev):\(st.st_ino)"
        #expect(
            LogOptions.resolveAutoFormat(environment: ["JOURNAL_STREAM": matching], fileDescriptor: pipe.writeFD)
                == .journal)
        #expect(
            LogOptions.resolveAutoFormat(
                environment: ["JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino + 1)"], fileDescriptor: pipe.writeFD) == .text)
        #expect(LogOptions.resolveAutoFormat(environment: [:], fileDescriptor: pipe.writeFD) == .text)
        #expect(
            LogOptions.resolveAutoFormat(environment: ["JOURNAL_STREAM": "garbage"], fileDescriptor: pipe.writeFD)
                == .text)
        #expect(
            LogOptions.resolveAutoFormat(environment: ["JOURNAL_STREAM": matching + ":1"], fileDescriptor: pipe.writeFD)
                == .text)
    }
}
