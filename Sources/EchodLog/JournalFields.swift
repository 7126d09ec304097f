import CSystemd
import Glibc
import Logging

/// The `journal` format: a record as native journald fields.
enum JournalFields {
    /// The fields for one record, each `NAME=value`. Pure, so it is unit-tested without a journald.
    ///
    /// `MESSAGE`, `PRIORITY` (syslog number), `SYSLOG_IDENTIFIER=echod`, `CODE_FILE`, `CODE_LINE`, `CODE_FUNC`,
    /// `ECHOD_LABEL` (the logger's label), then each metadata key as `ECHOD_<KEY>` (see ``fieldName(forMetadataKey:)``).
    /// Values are not escaped: journald fields are binary-safe, and `sd_journal_sendv` switches to its length-prefixed
    /// encoding for values with newlines. Metadata keys that sanitise to the same name (or to `ECHOD_LABEL`) yield
    /// repeated fields, which journald keeps as multiple values.
    static func fields(for record: LogRecord) -> [String] {
        let entries = record.renderedMetadataEntries()
        var fields: [String] = []
        fields.reserveCapacity(7 + entries.count)
        fields.append("MESSAGE=" + record.event.message.description)
        fields.append("PRIORITY=\(record.level.syslogPriority)")
        fields.append("SYSLOG_IDENTIFIER=echod")
        fields.append("CODE_FILE=" + record.event.file)
        fields.append("CODE_LINE=\(record.event.line)")
        fields.append("CODE_FUNC=" + record.event.function)
        fields.append("ECHOD_LABEL=" + record.label)
        for (key, value) in entries {
            fields.append(fieldName(forMetadataKey: key) + "=" + LogFormatter.textValue(value))
        }
        return fields
    }

    /// `ECHOD_` + the key upper-cased with every byte outside `[A-Z0-9_]` replaced by `_`, cut to journald's 64-byte
    /// limit. The prefix also keeps names from starting with `_` (reserved for trusted fields) or a digit.
    static func fieldName(forMetadataKey key: String) -> String {
        var name: [UInt8] = Array("ECHOD_".utf8)
        for byte in key.utf8 {
            guard name.count < 64 else { break }
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
                name.append(byte)
            case UInt8(ascii: "a")...UInt8(ascii: "z"):
                name.append(byte - 0x20)
            default:
                name.append(UInt8(ascii: "_"))
            }
        }
        return String(decoding: name, as: UTF8.self)
    }

    /// Sends the fields with `sd_journal_sendv` (one iovec per field). Returns 0 or a negative errno.
    ///
    /// Note: libsystemd returns 0 when no journald is listening (the datagram is silently lost).
    static func send(_ fields: [String]) -> Int32 {
        // One contiguous buffer, so that a single withUnsafeBufferPointer gives stable addresses for all iovecs.
        var buffer: [UInt8] = []
        var ranges: [(offset: Int, count: Int)] = []
        ranges.reserveCapacity(fields.count)
        for field in fields {
            let start = buffer.count
            buffer.append(contentsOf: field.utf8)
            ranges.append((start, buffer.count - start))
        }
        return buffer.withUnsafeMutableBufferPointer { bytes -> Int32 in
            guard let base = bytes.baseAddress else { return -EINVAL }
            var iovecs = ranges.map { iovec(iov_base: UnsafeMutableRawPointer(base + $0.offset), iov_len: $0.count) }
            return iovecs.withUnsafeMutableBufferPointer { iov in
                sd_journal_sendv(iov.baseAddress, Int32(iov.count))
            }
        }
    }
}
