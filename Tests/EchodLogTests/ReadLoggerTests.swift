import EchodSystem
import EchodTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Testing

@testable import EchodLog

/// Labels for formatter tests; kept alive for the whole run (records point at them unretained).
private let echoLabel = ReadLabel(label: "echod.echo", file: "EchodEcho/EchoService.swift", function: "logRead(_:count:)", line: 155)
private let oddLabel = ReadLabel(label: "odd label\n\"x\"", file: "F.swift", function: "f()", line: 1)

/// A read record at a fixed time (2023-11-14T22:13:20.123Z).
private func readRecord(
    _ bytes: [UInt8], total: Int? = nil, loop: Int32 = 0, v6: Bool = false, port: UInt16 = 35638,
    high: UInt64 = UInt64(inAddr("127.0.0.1")), low: UInt64 = 0, label: ReadLabel = echoLabel
) -> ReadRecord {
    var record = ReadRecord(
        seconds: 1_700_000_000, nanoseconds: 123_456_789, loop: loop, label: Unmanaged.passUnretained(label),
        high: high, low: low, totalBytes: total ?? bytes.count, port: port, family: v6 ? 1 : 0)
    bytes.withUnsafeBytes { record.setPreview($0) }
    return record
}

/// What glibc's inet_ntop prints (the reference: `SocketAddress.description` uses it).
private func ntop(family: UInt8, high: UInt64, low: UInt64) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    if family == 0 {
        var a = in_addr(s_addr: UInt32(truncatingIfNeeded: high))
        inet_ntop(AF_INET, &a, &buffer, 64)
    } else {
        var a = in6_addr()
        withUnsafeMutableBytes(of: &a) {
            $0.storeBytes(of: high, toByteOffset: 0, as: UInt64.self)
            $0.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
        }
        inet_ntop(AF_INET6, &a, &buffer, 64)
    }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

@Suite("Read records: formatting")
struct ReadFormatTests {
    @Test("text: IPv4, newline escaped once, keys in generic order")
    func textIPv4() {
        let record = readRecord(Array("line one\n".utf8))
        #expect(
            ReadFormatter.text(record)
                == #"2023-11-14T22:13:20.123Z info echod.echo: read bytes=9 data="line one\n" loop=0 peer=127.0.0.1:35638"#
                + "\n")
    }

    @Test("json: IPv4, numbers for bytes and loop, data is the preview text as a JSON string")
    func jsonIPv4() throws {
        let record = readRecord(Array("line one\n".utf8))
        let line = ReadFormatter.json(record)
        #expect(
            line
                == #"{"ts":"2023-11-14T22:13:20.123Z","level":"info","label":"echod.echo","msg":"read","bytes":9,"data":"line one\\n","loop":0,"peer":"127.0.0.1:35638"}"#
                + "\n")
        let object = try jsonObject(line)
        #expect(object["data"]?.string == #"line one\n"#)
        #expect(object["bytes"]?.int == 9)
    }

    @Test("a Unix-socket peer as SocketAddress names it: uid and pid, one token")
    func unixPeer() {
        let peer = SocketAddress.unixPeer(uid: 1000, gid: 100, pid: 4242)
        var record = ReadRecord(
            seconds: 1_700_000_000, nanoseconds: 123_456_789, loop: 0, label: Unmanaged.passUnretained(echoLabel),
            high: peer.high, low: peer.low, totalBytes: 2, port: peer.port, family: peer.family.rawValue)
        Array("hi".utf8).withUnsafeBytes { record.setPreview($0) }
        #expect(ReadFormatter.text(record).hasSuffix(" peer=unix:uid:1000,pid:4242\n"))
        #expect(ReadFormatter.json(record).hasSuffix(#","peer":"unix:uid:1000,pid:4242"}"# + "\n"))
        #expect(peer.description == "unix:uid:1000,pid:4242")
    }

    @Test("IPv6 peer in brackets; binary bytes, quotes and backslashes; negative loop index")
    func ipv6AndBinary() throws {
        let (high, low) = in6Addr("2001:db8::7:1")
        let bytes: [UInt8] = [0x00, 0x41, 0x22, 0x5C, 0x0D, 0x09, 0x7F, 0x80, 0xC3, 0xA9, 0xFF, 0x20]
        let record = readRecord(bytes, total: 70_000, loop: -1, v6: true, port: 7, high: high, low: low)
        let preview = #"\x00A\"\\\r\t\x7f\x80\xc3\xa9\xff "#
        #expect(
            ReadFormatter.text(record)
                == "2023-11-14T22:13:20.123Z info echod.echo: read bytes=70000 data=\"\(preview)\" loop=-1 peer=[2001:db8::7:1]:7\n"
        )
        let json = ReadFormatter.json(record)
        #expect(
            json
                == #"{"ts":"2023-11-14T22:13:20.123Z","level":"info","label":"echod.echo","msg":"read","bytes":70000,"data":"\\x00A\\\"\\\\\\r\\t\\x7f\\x80\\xc3\\xa9\\xff ","loop":-1,"peer":"[2001:db8::7:1]:7"}"#
                + "\n")
        let object = try jsonObject(json)
        #expect(object["data"]?.string == preview, "JSON data decodes to exactly the text preview")
        #expect(object["loop"]?.int == -1)
        #expect(object["peer"]?.string == "[2001:db8::7:1]:7")
    }

    @Test("more than 32 bytes: the first 32, then … inside the quotes; exactly 32: no …")
    func truncation() throws {
        let long = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)  // 36 bytes
        let cut = readRecord(long)
        #expect(ReadFormatter.text(cut).hasSuffix(#" read bytes=36 data="0123456789abcdefghijklmnopqrstuv…" loop=0 peer=127.0.0.1:35638"# + "\n"))
        let object = try jsonObject(ReadFormatter.json(cut))
        #expect(object["data"]?.string == "0123456789abcdefghijklmnopqrstuv…")
        let exact = readRecord(Array(long.prefix(32)), total: 5000)
        #expect(ReadFormatter.text(exact).contains(#" read bytes=5000 data="0123456789abcdefghijklmnopqrstuv" loop="#))
        let empty = readRecord([])
        #expect(ReadFormatter.text(empty).contains(#" read bytes=0 data="" loop=0 "#))
    }

    @Test("a label needing escapes is escaped as the generic formatter does it")
    func labelEscaping() throws {
        let record = readRecord(Array("x".utf8), label: oddLabel)
        #expect(ReadFormatter.text(record).hasPrefix(#"2023-11-14T22:13:20.123Z info odd label\n"x": read bytes=1 "#))
        let object = try jsonObject(ReadFormatter.json(record))
        #expect(object["label"]?.string == "odd label\n\"x\"")
        let empty = ReadLabel(label: "", file: "", function: "", line: 0)
        withExtendedLifetime(empty) {
            #expect(ReadFormatter.text(readRecord([], label: empty)).hasPrefix("2023-11-14T22:13:20.123Z info: read bytes=0 "))
        }
    }

    @Test("journal fields: the usual ones, then ECHOD_BYTES, ECHOD_DATA, ECHOD_LOOP, ECHOD_PEER")
    func journal() {
        let (high, low) = in6Addr("::1")
        let record = readRecord(Array("hi \"there\"\n".utf8) + [0x01], loop: 3, v6: true, port: 8888, high: high, low: low)
        #expect(
            ReadFormatter.journalFields(record, label: echoLabel) == [
                "MESSAGE=read",
                "PRIORITY=6",
                "SYSLOG_IDENTIFIER=echod",
                "CODE_FILE=EchodEcho/EchoService.swift",
                "CODE_LINE=155",
                "CODE_FUNC=logRead(_:count:)",
                "ECHOD_LABEL=echod.echo",
                "ECHOD_BYTES=12",
                #"ECHOD_DATA=hi \"there\"\n\x01"#,
                "ECHOD_LOOP=3",
                "ECHOD_PEER=[::1]:8888",
            ])
    }

    @Test("the read record is a POD that does not make the queue item bigger")
    func layout() {
        #expect(_isPOD(ReadRecord.self))
        #expect(MemoryLayout<ReadRecord>.size == 88)
        #expect(MemoryLayout<ReadRecord>.offset(of: \ReadRecord.truncated) == 32)
        enum ItemBefore {
            case record(LogRecord)
            case control(WriterControl)
        }
        #expect(MemoryLayout<QueueItem>.size == MemoryLayout<ItemBefore>.size)
        #expect(MemoryLayout<QueueItem>.stride == MemoryLayout<ItemBefore>.stride)
    }

    @Test("peers print exactly as inet_ntop prints them (IPv4, IPv6 zero runs, mapped and compatible IPv4)")
    func addresses() {
        var cases: [(UInt8, UInt64, UInt64)] = []
        for v4 in ["0.0.0.0", "127.0.0.1", "10.20.30.40", "255.255.255.255", "192.168.1.100"] {
            cases.append((0, UInt64(inAddr(v4)), 0))
        }
        for v6 in [
            "::", "::1", "1::", "fe80::1", "2001:db8::", "2001:db8:0:0:1:0:0:1", "2001:0:0:1:0:0:0:1", "1:0:1:0:1:0:1:0",
            "::ffff:10.0.0.1", "::10.0.0.1", "::ffff:0:1", "::1:0:0:0", "1:2:3:4:5:6:7:8", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "0:0:0:0:0:1:0:0", "::0.0.1.0", "::ffff:0.0.0.0", "64:ff9b::1.2.3.4", "abcd:ef01:2345:6789:0:0:0:0",
        ] {
            let (h, l) = in6Addr(v6)
            cases.append((1, h, l))
        }
        // Random ones, biased towards zero groups (where the interesting rules are).
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            var words = (0..<8).map { _ in UInt16.random(in: 0...3, using: &rng) == 0 ? UInt16.random(in: 0...UInt16.max, using: &rng) : 0 }
            if Bool.random(using: &rng) { words[5] = Bool.random(using: &rng) ? 0xFFFF : 0 }
            var bytes: [UInt8] = []
            for w in words { bytes += [UInt8(w >> 8), UInt8(w & 0xFF)] }
            let h = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self) }
            let l = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) }
            cases.append((1, h, l))
            cases.append((0, UInt64.random(in: 0...UInt64(UInt32.max), using: &rng), 0))
        }
        var mismatches: [String] = []
        for (family, high, low) in cases {
            let port = UInt16.random(in: 0...UInt16.max, using: &rng)
            let host = ntop(family: family, high: high, low: low)
            let expected = family == 0 ? "\(host):\(port)" : "[\(host)]:\(port)"
            let got = ReadFormatter.peerText(family: family, port: port, high: high, low: low)
            if got != expected { mismatches.append("\(got) != \(expected)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
    }

    @Test("random previews: the JSON data decodes to the text data; text never has a raw control byte")
    func randomPreviews() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let record = readRecord(bytes)
            let text = ReadFormatter.text(record)
            let body = Array(text.utf8.dropLast())
            #expect(!body.contains { $0 < 0x20 || $0 == 0x7F })
            let start = try #require(text.range(of: #" data=""#)).upperBound
            let end = try #require(text.range(of: #"" loop="#, options: .backwards)).lowerBound
            let textData = String(text[start..<end])
            let object = try jsonObject(ReadFormatter.json(record))
            #expect(object["data"]?.string == textData)
            #expect(unescapePreview(textData) == Array(bytes.prefix(32)))
        }
    }

    /// Inverse of the preview escaping (without the `…`).
    private func unescapePreview(_ text: String) -> [UInt8] {
        var utf8 = Array(text.utf8)
        if utf8.suffix(3) == [0xE2, 0x80, 0xA6] { utf8.removeLast(3) }
        var out: [UInt8] = []
        var i = 0
        while i < utf8.count {
            if utf8[i] == 0x5C {
                switch utf8[i + 1] {
                case UInt8(ascii: "n"):
                    out.append(0x0A)
                    i += 2
                case UInt8(ascii: "r"):
                    out.append(0x0D)
                    i += 2
                case UInt8(ascii: "t"):
                    out.append(0x09)
                    i += 2
                case UInt8(ascii: "x"):
                    out.append(UInt8(String(decoding: utf8[(i + 2)..<(i + 4)], as: UTF8.self), radix: 16)!)
                    i += 4
                default:
                    out.append(utf8[i + 1])
                    i += 2
                }
            } else {
                out.append(utf8[i])
                i += 1
            }
        }
        return out
    }
}

@Suite("Read records: backend")
struct ReadLoggerBackendTests {
    private static func log(_ reads: ReadLogger, _ text: String, loop: Int32 = 0, port: UInt16 = 40000) {
        Array(text.utf8).withUnsafeBytes { raw in
            reads.log(
                loop: loop, peerFamily: 0, peerPort: port, peerHigh: UInt64(inAddr("127.0.0.1")), peerLow: 0,
                data: raw, totalBytes: raw.count)
        }
    }

    @Test("read records keep their place among the generic records of the same thread, across threads")
    func ordering() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("reads.log")
        let backend = try AsyncLogBackend(options: LogOptions(format: .json, filePath: path, queueCapacity: 200_000))
        let threads = 4
        let connections = 50
        let readsPerConnection = 20
        let logged = completes(within: 60) {
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                var logger = makeLogger(backend, label: "echod.echo")
                logger[metadataKey: "loop"] = .stringConvertible(t)
                let reads = backend.makeReadLogger(label: "echod.echo")
                for c in 0..<connections {
                    let port = UInt16(10_000 + t * 1000 + c)
                    logger.info("connection opened", metadata: ["peer": "127.0.0.1:\(port)"])
                    for r in 0..<readsPerConnection { Self.log(reads, "t\(t) c\(c) r\(r)", loop: Int32(t), port: port) }
                    logger.info("connection closed", metadata: ["peer": "127.0.0.1:\(port)"])
                }
            }
        }
        #expect(logged)
        #expect(backend.shutdown(timeout: .seconds(60)))
        let total = threads * connections * (readsPerConnection + 2)
        #expect(backend.recordsDropped == 0)
        #expect(backend.recordsWritten == UInt64(total))

        // Per thread (loop), the exact sequence: opened, r0...r19, closed, for each connection in turn.
        var seen = [[String]](repeating: [], count: threads)
        for line in lines(try readFile(path)) {
            let object = try jsonObject(line)
            let msg = try #require(object["msg"]?.string)
            if msg == "read" {
                let loop = try #require(object["loop"]?.int)
                seen[loop].append(try #require(object["data"]?.string))
                #expect(object["label"]?.string == "echod.echo")
            } else {
                let loop = try #require(Int(object["loop"]?.string ?? ""))
                seen[loop].append("\(msg) \(object["peer"]?.string ?? "")")
            }
        }
        for t in 0..<threads {
            var expected: [String] = []
            for c in 0..<connections {
                let peer = "127.0.0.1:\(10_000 + t * 1000 + c)"
                expected.append("connection opened \(peer)")
                for r in 0..<readsPerConnection { expected.append("t\(t) c\(c) r\(r)") }
                expected.append("connection closed \(peer)")
            }
            #expect(seen[t] == expected, "thread \(t)")
        }
    }

    @Test("text output through the backend, interleaved with a generic record")
    func textThroughBackend() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("reads.txt")
        let backend = try AsyncLogBackend(options: LogOptions(format: .text, filePath: path))
        let reads = backend.makeReadLogger(label: "echod.echo")
        let logger = makeLogger(backend, label: "echod.echo")
        logger.info("connection opened")
        Self.log(reads, "line one\n", loop: 2, port: 35638)
        #expect(backend.shutdown(timeout: .seconds(30)))
        let all = lines(try readFile(path))
        #expect(all.count == 2)
        #expect(all.first?.hasSuffix(" info echod.echo: connection opened") == true)
        #expect(all.last?.hasSuffix(#" info echod.echo: read bytes=9 data="line one\n" loop=2 peer=127.0.0.1:35638"#) == true)
        #expect(all.last?.count == 24 + #" info echod.echo: read bytes=9 data="line one\n" loop=2 peer=127.0.0.1:35638"#.count)
    }

    @Test("a full queue drops read records and counts them; the report adds up")
    func drops() throws {
        let pipe = try TestPipe()
        pipe.setNonBlockingReadEnd()
        let backend = try AsyncLogBackend(options: LogOptions(queueCapacity: 32, stderrFD: pipe.writeFD))
        let reads = backend.makeReadLogger(label: "drop")
        let count = 20_000
        // Nobody reads the pipe: the writer blocks after ~64 KiB, the queue fills, and log() must still return.
        #expect(
            completes(within: 60) {
                for i in 0..<count { Self.log(reads, "read number \(i) padded to fill the pipe", port: 1) }
            })
        #expect(backend.recordsDropped > 0)
        let (bytes, stopped) = pipe.readWhile { #expect(backend.shutdown(timeout: .seconds(60))) }
        #expect(stopped)
        pipe.closeWriteEnd()
        pipe.closeReadEnd()
        let all = lines(bytes)
        let written = all.filter { $0.contains(" info drop: read bytes=") }
        #expect(UInt64(written.count) == backend.recordsWritten)
        #expect(UInt64(written.count) + backend.recordsDropped == UInt64(count))
        #expect(droppedTotal(in: all) == backend.recordsDropped)
        let numbers = written.compactMap { line -> Int? in
            guard let r = line.range(of: "read number ") else { return nil }
            return Int(line[r.upperBound...].prefix { $0.isNumber })
        }
        #expect(numbers == numbers.sorted())
    }

    @Test("a level above info suppresses read records (one atomic load); back at info they are logged")
    func level() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("lvl.log")
        let options = LogOptions(level: .notice, filePath: path)
        let backend = try AsyncLogBackend(options: options)
        let reads = backend.makeReadLogger(label: "lvl")
        #expect(!reads.isEnabled)
        Self.log(reads, "hidden-1")
        var info = options
        info.level = .info
        try backend.apply(info)
        #expect(reads.isEnabled)
        Self.log(reads, "shown-2")
        var warning = options
        warning.level = .warning
        try backend.apply(warning)
        Self.log(reads, "hidden-3")
        var trace = options
        trace.level = .trace
        try backend.apply(trace)
        Self.log(reads, "shown-4")
        #expect(backend.shutdown(timeout: .seconds(30)))
        let text = try readFile(path)
        #expect(text.contains("shown-2") && text.contains("shown-4"))
        #expect(!text.contains("hidden-1") && !text.contains("hidden-3"))
        #expect(backend.recordsWritten == 2)
        #expect(backend.recordsDropped == 0)
    }

    @Test("after shutdown, read records are counted as dropped")
    func afterShutdown() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let backend = try AsyncLogBackend(options: LogOptions(filePath: dir.file("s.log")))
        let reads = backend.makeReadLogger(label: "s")
        #expect(backend.shutdown(timeout: .seconds(30)))
        Self.log(reads, "late")
        #expect(backend.recordsDropped == 1)
    }

    @Test("equal labels are interned once; different ones are not")
    func interning() throws {
        let backend = try AsyncLogBackend(options: LogOptions(stderrFD: -1))
        defer { backend.shutdown(timeout: .seconds(30)) }
        let a = backend.makeReadLogger(label: "x", file: "f", function: "g", line: 1)
        let b = backend.makeReadLogger(label: "x", file: "f", function: "g", line: 1)
        let c = backend.makeReadLogger(label: "y", file: "f", function: "g", line: 1)
        #expect(a.label.toOpaque() == b.label.toOpaque())
        #expect(a.label.toOpaque() != c.label.toOpaque())
        #expect(backend.core.readLabels.withLock { $0.count } == 2)
    }
}

// No allocation test here: counting allocations in-process needs either the Swift runtime's Instruments hook
// (`_swift_allocObject` plus the global swizzling flag, which crashed the test runner in `swift_retain` on Linux)
// or interposing `malloc` in the shared test executable of every target. The benchmark checks it instead, with an
// LD_PRELOAD malloc counter around `ReadLogger.log` (see the report of the change).

@Suite("Writer coalescing")
struct CoalescingTests {
    @Test("a woken writer lingers to gather a batch; half a queue, or a flush, ends the lingering early")
    func lingerEndsEarly() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("linger.log")
        let backend = try AsyncLogBackend(
            options: LogOptions(filePath: path, queueCapacity: 16), dropReportInterval: .seconds(5), coalescing: .seconds(30))
        let reads = backend.makeReadLogger(label: "linger")
        func log(_ i: Int) {
            Array("r\(i)".utf8).withUnsafeBytes {
                reads.log(loop: 0, peerFamily: 0, peerPort: 1, peerHigh: 0, peerLow: 0, data: $0, totalBytes: $0.count)
            }
        }
        func waitForLines(_ count: Int, within seconds: Double) -> Bool {
            waitUntil(seconds) { lines((try? readFile(path)) ?? "").count >= count }
        }
        usleep(100_000)  // let the writer start and go idle
        // The first record wakes the writer, which then waits (30 s here) for more.
        log(0)
        usleep(200_000)
        #expect(lines(try readFile(path)).isEmpty, "written without lingering")
        // The 8th record fills half the queue (capacity 16): the writer stops lingering and writes all eight.
        for i in 1..<8 { log(i) }
        #expect(waitForLines(8, within: 20))
        // A flush does not wait for the lingering either: neither one that started before it (woken by r8)...
        log(8)
        usleep(50_000)
        let start = ContinuousClock.now
        #expect(backend.flush(timeout: .seconds(20)))
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(lines(try readFile(path)).count == 9)
        // ...nor one that its own post would start (the writer idle, woken by the flush itself).
        usleep(50_000)
        let again = ContinuousClock.now
        #expect(backend.flush(timeout: .seconds(20)))
        #expect(ContinuousClock.now - again < .seconds(10))
        #expect(backend.recordsDropped == 0)
        #expect(backend.shutdown(timeout: .seconds(20)))
    }
}
