import EchodTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Testing

@testable import EchodLog

@Suite("Async backend")
struct BackendTests {
    @Test("per-thread order is preserved across many records from several threads")
    func ordering() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("order.log")
        let backend = try AsyncLogBackend(options: LogOptions(format: .json, filePath: path, queueCapacity: 100_000))
        let threads = 4
        let perThread = 3000
        let logged = completes(within: 60) {
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let logger = makeLogger(backend, label: "order")
                for i in 0..<perThread {
                    logger.info("r", metadata: ["t": "\(t)", "seq": .stringConvertible(i)])
                }
            }
        }
        #expect(logged)
        #expect(backend.shutdown(timeout: .seconds(60)))
        #expect(backend.recordsDropped == 0)
        #expect(backend.recordsWritten == UInt64(threads * perThread))

        var next = [Int](repeating: 0, count: threads)
        for line in lines(try readFile(path)) {
            let object = try jsonObject(line)
            let t = try #require(Int(object["t"]?.string ?? ""))
            let seq = try #require(Int(object["seq"]?.string ?? ""))
            #expect(seq == next[t], "thread \(t) out of order")
            next[t] = seq + 1
        }
        #expect(next == [Int](repeating: perThread, count: threads))
    }

    @Test("a stuck pipe never blocks log calls; drops are counted and reported exactly, per episode")
    func dropsWhenSinkStuck() throws {
        let pipe = try TestPipe()
        pipe.setNonBlockingReadEnd()
        let backend = try AsyncLogBackend(options: LogOptions(queueCapacity: 64, stderrFD: pipe.writeFD))
        let logger = makeLogger(backend, label: "drop")
        let perRound = 5000
        var output: [UInt8] = []
        var droppedBefore: UInt64 = 0
        for round in 0..<2 {
            // Nobody reads the pipe now: after ~64 KiB the writer blocks in write(2). The log calls must still return.
            let returned = completes(within: 60) {
                for i in 0..<perRound {
                    logger.info("record \(round * perRound + i) with some padding to fill the pipe sooner")
                }
            }
            #expect(returned, "log calls blocked while the sink was stuck (round \(round))")
            #expect(backend.recordsDropped > droppedBefore)
            #expect(backend.recordsWritten < UInt64((round + 1) * perRound))
            droppedBefore = backend.recordsDropped
            // Drain until the writer caught up; the flush also writes this episode's drop report.
            let (bytes, flushed) = pipe.readWhile { #expect(backend.flush(timeout: .seconds(60))) }
            #expect(flushed)
            output += bytes
        }
        let (bytes, stopped) = pipe.readWhile { #expect(backend.shutdown(timeout: .seconds(60))) }
        #expect(stopped)
        output += bytes
        pipe.closeWriteEnd()
        pipe.closeReadEnd()

        let all = lines(output)
        let records = all.filter { $0.contains(" info drop: record ") }
        let numbers = records.compactMap { line -> Int? in
            guard let r = line.range(of: "record ") else { return nil }
            return Int(line[r.upperBound...].prefix { $0.isNumber })
        }
        #expect(numbers == numbers.sorted(), "written records stay in order")
        #expect(UInt64(records.count) == backend.recordsWritten)
        let reports = all.filter { $0.contains(" warning echod.log: log queue full: dropped ") }
        #expect(reports.count >= 2, "at least one report per episode")
        #expect(droppedTotal(in: all) == backend.recordsDropped)
        #expect(UInt64(records.count) + backend.recordsDropped == UInt64(2 * perRound))
    }

    @Test("flush(timeout:) returns false while the sink is stuck, true once it drains")
    func flushWhileStuck() throws {
        let pipe = try TestPipe()
        let backend = try AsyncLogBackend(options: LogOptions(queueCapacity: 100_000, stderrFD: pipe.writeFD))
        let logger = makeLogger(backend, label: "flush")
        // 4000 lines of > 64 bytes cannot fit in a 64 KiB pipe nobody reads.
        let returned = completes(within: 60) {
            for i in 0..<4000 { logger.info("flush test record number \(i), padded to be long enough") }
        }
        #expect(returned)
        #expect(backend.flush(timeout: .milliseconds(300)) == false)

        let drain = PipeDrain(fd: pipe.readFD)
        #expect(backend.flush(timeout: .seconds(60)))
        #expect(backend.recordsWritten == 4000)
        #expect(backend.shutdown(timeout: .seconds(60)))
        pipe.closeWriteEnd()
        let output = try #require(drain.result())
        pipe.closeReadEnd()
        #expect(lines(output).count == 4000)
    }

    @Test("a non-blocking stderr at EAGAIN is polled on the writer thread; nothing is lost")
    func nonBlockingSink() throws {
        let pipe = try TestPipe()
        pipe.setNonBlockingWriteEnd()
        let backend = try AsyncLogBackend(options: LogOptions(queueCapacity: 100_000, stderrFD: pipe.writeFD))
        let logger = makeLogger(backend, label: "eagain")
        #expect(
            completes(within: 60) {
                for i in 0..<4000 { logger.info("non-blocking record number \(i), padded to be long enough") }
            })
        // The pipe is full and non-blocking: the writer is waiting in poll, not failing.
        #expect(backend.flush(timeout: .milliseconds(300)) == false)
        #expect(backend.recordsFailed == 0)

        let drain = PipeDrain(fd: pipe.readFD)
        #expect(backend.shutdown(timeout: .seconds(60)))
        pipe.closeWriteEnd()
        let output = try #require(drain.result())
        pipe.closeReadEnd()
        let all = lines(output)
        #expect(all.count == 4000)
        #expect(all.last?.contains("non-blocking record number 3999,") == true)
        #expect(backend.recordsFailed == 0)
        #expect(backend.recordsWritten == 4000)
    }

    @Test("apply() changes the level of existing loggers; a handler's own level overrides it")
    func levelThroughApply() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("level.log")
        let options = LogOptions(level: .info, filePath: path)
        let backend = try AsyncLogBackend(options: options)
        let logger = makeLogger(backend, label: "lvl")
        var pinned = makeLogger(backend, label: "pinned")
        pinned.logLevel = .error

        #expect(logger.logLevel == .info)
        logger.debug("hidden-1")
        var debug = options
        debug.level = .debug
        try backend.apply(debug)
        #expect(logger.logLevel == .debug)
        logger.debug("shown-2")
        #expect(pinned.logLevel == .error)
        pinned.warning("hidden-3")
        pinned.error("shown-4")
        var warning = options
        warning.level = .warning
        try backend.apply(warning)
        logger.info("hidden-5")
        logger.warning("shown-6")
        #expect(backend.shutdown(timeout: .seconds(30)))

        let text = try readFile(path)
        for shown in ["shown-2", "shown-4", "shown-6"] { #expect(text.contains(shown)) }
        for hidden in ["hidden-1", "hidden-3", "hidden-5"] { #expect(!text.contains(hidden)) }
    }

    @Test("file sink: 0640, reopen after a logrotate-style rename puts new records in the new file")
    func reopenAfterRename() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("echod.log")
        let backend = try AsyncLogBackend(options: LogOptions(filePath: path))
        let logger = makeLogger(backend, label: "rot")
        logger.info("before-rotate")
        // No flush: the reopen request is queued behind the record, so it lands in the old file anyway.
        #expect(rename(path, path + ".1") == 0)
        backend.reopen()
        logger.info("after-rotate")
        #expect(backend.flush(timeout: .seconds(30)))

        let old = try readFile(path + ".1")
        let new = try readFile(path)
        #expect(old.contains("before-rotate") && !old.contains("after-rotate"))
        #expect(new.contains("after-rotate") && !new.contains("before-rotate"))
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 & ~0o640 == 0, "no more permissive than 0640")
        #expect(backend.shutdown(timeout: .seconds(30)))
    }

    @Test("a failed reopen is reported on stderr and logging continues on the old file")
    func reopenFailure() throws {
        let dir = TempDir()
        defer { dir.remove() }
        #expect(mkdir(dir.file("sub"), 0o755) == 0)
        let path = dir.file("sub/echod.log")
        let stderrPipe = try TestPipe()
        let drain = PipeDrain(fd: stderrPipe.readFD)
        let backend = try AsyncLogBackend(options: LogOptions(filePath: path, stderrFD: stderrPipe.writeFD))
        let logger = makeLogger(backend, label: "rot")
        logger.info("one")
        #expect(rename(dir.file("sub"), dir.file("moved")) == 0)
        backend.reopen()
        logger.info("two")
        #expect(backend.shutdown(timeout: .seconds(30)))
        stderrPipe.closeWriteEnd()
        let stderrText = String(decoding: try #require(drain.result()), as: UTF8.self)
        stderrPipe.closeReadEnd()

        let kept = try readFile(dir.file("moved/echod.log"))
        #expect(kept.contains("one") && kept.contains("two"))
        #expect(stderrText.contains("cannot open log file '\(path)': No such file or directory"))
        #expect(stderrText.contains("continues to the old file"))
    }

    @Test("init throws for a file that cannot be opened, naming path and errno text")
    func initThrows() {
        let path = "/nonexistent-echod-dir/x.log"
        #expect {
            _ = try AsyncLogBackend(options: LogOptions(filePath: path))
        } throws: { error in
            let text = String(describing: error)
            return text.contains(path) && text.contains("No such file or directory")
        }
        #expect(throws: LogBackendError.self) {
            _ = try AsyncLogBackend(options: LogOptions(queueCapacity: 0))
        }
    }

    @Test("apply() switches format and file in order; a bad path fails and changes nothing")
    func applySwitchesSink() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let first = dir.file("a.log")
        let second = dir.file("b.log")
        let backend = try AsyncLogBackend(options: LogOptions(format: .text, filePath: first))
        let logger = makeLogger(backend, label: "sw")
        logger.info("in-a")
        try backend.apply(LogOptions(format: .json, filePath: second))
        logger.info("in-b")
        #expect(throws: LogBackendError.self) {
            try backend.apply(LogOptions(level: .trace, format: .text, filePath: dir.file("missing/c.log")))
        }
        #expect(backend.options == LogOptions(format: .json, filePath: second))
        #expect(logger.logLevel == .info)
        logger.info("still-b")
        #expect(backend.shutdown(timeout: .seconds(30)))

        let a = lines(try readFile(first))
        #expect(a.count == 1)
        #expect(a.first?.hasSuffix("info sw: in-a") == true)
        let b = lines(try readFile(second))
        #expect(b.count == 2)
        for (line, msg) in zip(b, ["in-b", "still-b"]) {
            let object = try jsonObject(line)
            #expect(object["msg"]?.string == msg)
        }
    }

    @Test(".stringConvertible metadata is rendered on the writer thread, not the caller's")
    func lazyDescription() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let backend = try AsyncLogBackend(options: LogOptions(filePath: dir.file("lazy.log")))
        let logger = makeLogger(backend, label: "lazy")
        let probe = ThreadProbe()
        let caller = currentThreadID()
        logger.info("per-read", metadata: ["bytes": .stringConvertible(probe)])
        #expect(probe.threads.withLock { $0.isEmpty }, "description ran during the log call")
        #expect(backend.flush(timeout: .seconds(30)))
        let seen = probe.threads.withLock { $0 }
        #expect(!seen.isEmpty)
        #expect(!seen.contains { $0.id == caller })
        // One thread, and it is a log writer (LogWriter names its thread); only this backend's writer sees its records.
        #expect(Set(seen.map(\.id)).count == 1)
        #expect(seen.allSatisfy { $0.name == "echod-log" }, "\(seen.map(\.name))")
        #expect(try readFile(dir.file("lazy.log")).contains("bytes=probed"))
        #expect(backend.shutdown(timeout: .seconds(30)))
    }

    @Test("metadata merges handler, provider and call site (later wins)")
    func metadataMerge() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("md.log")
        let backend = try AsyncLogBackend(options: LogOptions(format: .json, filePath: path))
        var handler = backend.makeHandler(label: "md")
        handler.metadataProvider = Logger.MetadataProvider { ["p": "provider", "shared": "provider"] }
        var logger = Logger(label: "md") { _ in handler }
        logger[metadataKey: "h"] = "handler"
        logger[metadataKey: "shared"] = "handler"
        logger.info("m", metadata: ["c": "call", "shared": "call"])
        logger.info("n")
        #expect(backend.shutdown(timeout: .seconds(30)))
        let objects = try lines(readFile(path)).map {
            try jsonObject($0)
        }
        #expect(objects.count == 2)
        #expect(objects[0]["h"]?.string == "handler")
        #expect(objects[0]["p"]?.string == "provider")
        #expect(objects[0]["c"]?.string == "call")
        #expect(objects[0]["shared"]?.string == "call")
        #expect(objects[1]["shared"]?.string == "provider")
    }

    @Test("after shutdown, log calls return and are counted as dropped")
    func afterShutdown() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let backend = try AsyncLogBackend(options: LogOptions(filePath: dir.file("s.log")))
        let logger = makeLogger(backend, label: "s")
        logger.info("before")
        #expect(backend.shutdown(timeout: .seconds(30)))
        #expect(backend.shutdown(timeout: .seconds(1)), "idempotent")
        logger.info("after")
        #expect(backend.recordsDropped == 1)
        #expect(backend.recordsWritten == 1)
        #expect(backend.flush(timeout: .seconds(1)))
        #expect(throws: LogBackendError.self) { try backend.apply(LogOptions()) }
    }

    @Test("drops are reported periodically while running, not only at shutdown")
    func periodicDropReport() throws {
        let pipe = try TestPipe()
        let backend = try AsyncLogBackend(
            options: LogOptions(queueCapacity: 16, stderrFD: pipe.writeFD), dropReportInterval: .milliseconds(50))
        let logger = makeLogger(backend, label: "per")
        #expect(
            completes(within: 60) {
                for i in 0..<4000 { logger.info("periodic record number \(i), padded to be long enough") }
            })
        let dropped = backend.recordsDropped
        #expect(dropped > 0)
        let drain = PipeDrain(fd: pipe.readFD)
        // No flush or shutdown (both also report): wait, bounded, for the writer's own periodic report.
        let reported = waitUntil(60) { droppedTotal(in: lines(drain.snapshot())) == dropped }
        #expect(reported, "reported \(droppedTotal(in: lines(drain.snapshot()))) of \(dropped) drops")
        #expect(backend.shutdown(timeout: .seconds(60)))
        pipe.closeWriteEnd()
        let all = lines(try #require(drain.result()))
        pipe.closeReadEnd()
        #expect(droppedTotal(in: all) == dropped)
    }
}
