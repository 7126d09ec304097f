import EchodSystem
import EchodText
import Glibc
import Logging
import Synchronization

/// The per-read fast path of an ``AsyncLogBackend``: one `read` record per call, logged at `info`, without building
/// swift-log metadata and without allocating. Made by ``AsyncLogBackend/makeReadLogger(label:file:function:line:)``.
///
/// A read record goes into the backend's one queue, like every other record, so the order of records logged from
/// one thread is kept (`connection opened`, its reads, `connection closed`). The writer thread formats it with a
/// dedicated formatter; the output has the same shape as a generic record with metadata `bytes`, `data`, `loop`,
/// `peer`:
///
/// ```text
/// 2024-05-01T12:00:00.123Z info echod.echo: read bytes=9 data="line one\n" loop=0 peer=127.0.0.1:35638
/// {"ts":"2024-05-01T12:00:00.123Z","level":"info","label":"echod.echo","msg":"read","bytes":9,"data":"line one\\n","loop":0,"peer":"127.0.0.1:35638"}
/// ```
///
/// `data` is a preview of the first ``previewCapacity`` bytes: printable ASCII as is; `\n`, `\r`, `\t`, `\\`, `\"`
/// escaped; any other byte as `\xNN`; `…` at the end when the read was longer. In text it is always quoted; in
/// JSON the same preview text is a JSON string; in the journal it is `ECHOD_DATA`.
///
/// Cheap to copy (one reference). Use one per event loop; it is `Sendable`, so sharing one is correct too.
package struct ReadLogger: Sendable {
    /// Bytes of each read that are kept for the `data` preview.
    package static let previewCapacity = ReadRecord.previewCapacity

    let core: LogCore
    /// Kept alive by `core.readLabels` for as long as `core` lives: no reference counting per call.
    let label: Unmanaged<ReadLabel>

    init(core: LogCore, label: Unmanaged<ReadLabel>) {
        self.core = core
        self.label = label
    }

    /// Whether a call to ``log(loop:peerFamily:peerPort:peerHigh:peerLow:data:totalBytes:)`` would enqueue a
    /// record now (the backend's level is `info` or lower). One relaxed atomic load.
    package var isEnabled: Bool {
        core.level.load(ordering: .relaxed) <= Logger.Level.info.code
    }

    /// Logs one read at `info`: stamps the time, copies the raw fields and up to ``previewCapacity`` bytes of `data`
    /// into a fixed-size record and appends it to the backend's queue. No allocation, no formatting, no I/O; never
    /// blocks beyond the queue's short lock. Below the backend's level it returns after one atomic load; when the
    /// queue is full (or the backend is shut down) the record is dropped and counted, like any other.
    ///
    /// - Parameters:
    ///   - loop: the event loop's index (printed as `loop=`).
    ///   - peerFamily: 0 for IPv4, 1 for IPv6, 2 for a Unix-socket peer (`SocketAddress.Family.rawValue`).
    ///   - peerPort: the peer's port, host byte order.
    ///   - peerHigh, peerLow: the address bytes in network order as `SocketAddress` stores them: bytes 0–7 and
    ///     8–15 of the `in6_addr`; for IPv4, `in_addr.s_addr` in the low 32 bits of `peerHigh`; for a Unix peer,
    ///     its uid in the low 32 bits of `peerHigh` and its pid in those of `peerLow`.
    ///   - data: the bytes read (only the first ``previewCapacity`` are copied; more marks the preview truncated).
    ///   - totalBytes: the byte count to print as `bytes=`.
    package func log(
        loop: Int32, peerFamily: UInt8, peerPort: UInt16, peerHigh: UInt64, peerLow: UInt64,
        data: UnsafeRawBufferPointer, totalBytes: Int
    ) {
        guard isEnabled else { return }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var record = ReadRecord(
            seconds: ts.tv_sec, nanoseconds: Int32(truncatingIfNeeded: ts.tv_nsec), loop: loop, label: label,
            high: peerHigh, low: peerLow, totalBytes: totalBytes, port: peerPort, family: peerFamily)
        record.setPreview(data)
        core.submit(read: record)
    }
}

extension AsyncLogBackend {
    /// A ``ReadLogger`` whose records carry `label` (as a `Logger`'s label would be printed).
    ///
    /// The label and the call site (used for the journal's `CODE_FILE`/`CODE_LINE`/`CODE_FUNC`; pass the place that
    /// actually logs reads if it is not where the logger is made) are interned once: making the same one again
    /// reuses it, so this is cheap to call per event loop or per reload. It follows the backend's level (set by
    /// `init` and `apply`); there is no per-logger level.
    package func makeReadLogger(
        label: String, file: String = #fileID, function: String = #function, line: UInt = #line
    ) -> ReadLogger {
        ReadLogger(core: core, label: core.internReadLabel(label: label, file: file, function: function, line: line))
    }
}

/// What is printed for every record of one ``ReadLogger``, rendered once, when the logger is made.
///
/// Immutable; kept alive by ``LogCore/readLabels``, so records refer to it through `Unmanaged` (a plain pointer:
/// the record stays a POD and copying it costs no reference counting).
final class ReadLabel: Sendable {
    let label: String
    let file: String
    let function: String
    let line: UInt
    /// Text format, after the timestamp: ` info <escaped label>: read bytes=`.
    let textPrefix: [UInt8]
    /// JSON format, after the timestamp: `","level":"info","label":"<label>","msg":"read","bytes":`.
    let jsonPrefix: [UInt8]
    /// The journal fields that do not change from record to record, concatenated, and each one's range.
    let journalFixed: [UInt8]
    let journalFixedRanges: [Range<Int>]

    init(label: String, file: String, function: String, line: UInt) {
        self.label = label
        self.file = file
        self.function = function
        self.line = line

        var text: [UInt8] = []
        text.append(contentsOf: " info".utf8)
        if !label.isEmpty {
            text.append(UInt8(ascii: " "))
            LogFormatter.appendEscaped(label, quote: false, to: &text)
        }
        text.append(contentsOf: ": read bytes=".utf8)
        textPrefix = text

        var json: [UInt8] = []
        json.append(contentsOf: #"","level":"info","label":"#.utf8)
        Escaping.appendJSONString(label, to: &json)
        json.append(contentsOf: #","msg":"read","bytes":"#.utf8)
        jsonPrefix = json

        var fixed: [UInt8] = []
        var ranges: [Range<Int>] = []
        for field in [
            "MESSAGE=read",
            "PRIORITY=\(Logger.Level.info.syslogPriority)",
            "SYSLOG_IDENTIFIER=echod",
            "CODE_FILE=" + file,
            "CODE_LINE=\(line)",
            "CODE_FUNC=" + function,
            "ECHOD_LABEL=" + label,
        ] {
            let start = fixed.count
            fixed.append(contentsOf: field.utf8)
            ranges.append(start..<fixed.count)
        }
        journalFixed = fixed
        journalFixedRanges = ranges
    }

    func matches(label: String, file: String, function: String, line: UInt) -> Bool {
        self.label == label && self.line == line && self.file == file && self.function == function
    }
}

/// One read, as it travels in the queue: a fixed-size POD (no references counted, nothing to release), 88 bytes.
///
/// Field order matters: `truncated` (a Bool) sits at offset 32, where `LogRecord` has its level (an enum with spare
/// bits), so that `QueueItem` can keep its case tag in those spare bits and stay 128 bytes.
struct ReadRecord: Sendable {
    static let previewCapacity = 32

    /// Wall-clock time of the call (CLOCK_REALTIME).
    var seconds: Int
    var nanoseconds: Int32
    var loop: Int32
    var label: Unmanaged<ReadLabel>
    /// The peer's address as `SocketAddress` stores it (network byte order in memory).
    var high: UInt64
    /// The read had more than `previewCapacity` bytes.
    var truncated = false
    /// 0: IPv4, 1: IPv6, 2: Unix-socket peer (anything else is printed as IPv6).
    var family: UInt8
    var previewCount: UInt8 = 0
    var port: UInt16
    var low: UInt64
    var totalBytes: Int
    /// The first `previewCount` bytes of the read.
    var preview: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    init(
        seconds: Int, nanoseconds: Int32, loop: Int32, label: Unmanaged<ReadLabel>, high: UInt64, low: UInt64,
        totalBytes: Int, port: UInt16, family: UInt8
    ) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
        self.loop = loop
        self.label = label
        self.high = high
        self.low = low
        self.totalBytes = totalBytes
        self.port = port
        self.family = family
    }

    /// Copies the first `previewCapacity` bytes of `data`.
    @inline(__always)
    mutating func setPreview(_ data: UnsafeRawBufferPointer) {
        let n = min(data.count, Self.previewCapacity)
        previewCount = UInt8(truncatingIfNeeded: n)
        truncated = data.count > Self.previewCapacity
        if n > 0, let source = data.baseAddress {
            withUnsafeMutableBytes(of: &preview) { $0.baseAddress!.copyMemory(from: source, byteCount: n) }
        }
    }
}

extension LogCore {
    /// Finds or creates the ``ReadLabel`` for these values; it then lives as long as this core.
    func internReadLabel(label: String, file: String, function: String, line: UInt) -> Unmanaged<ReadLabel> {
        readLabels.withLock { labels in
            if let existing = labels.first(where: { $0.matches(label: label, file: file, function: function, line: line) }) {
                return Unmanaged.passUnretained(existing)
            }
            let made = ReadLabel(label: label, file: file, function: function, line: line)
            labels.append(made)
            return Unmanaged.passUnretained(made)
        }
    }

    /// The caller's side of a read record: enqueue or count the drop.
    @inline(__always)
    func submit(read record: ReadRecord) {
        if !queue.enqueue(read: record) {
            dropped.add(1, ordering: .relaxed)
        }
    }
}
