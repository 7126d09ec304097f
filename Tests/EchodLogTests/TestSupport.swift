import Foundation
import Glibc
import Logging
import Synchronization

@testable import EchodLog

/// A pipe whose ends the test closes explicitly (after the backend using it has shut down, so that a recycled
/// descriptor number is never written by a stale writer).
struct TestPipe {
    let readFD: Int32
    let writeFD: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw TestError("pipe: \(String(cString: strerror(errno)))") }
        readFD = fds[0]
        writeFD = fds[1]
    }

    func setNonBlockingWriteEnd() {
        let flags = fcntl(writeFD, F_GETFL)
        _ = fcntl(writeFD, F_SETFL, flags | O_NONBLOCK)
    }

    func setNonBlockingReadEnd() {
        let flags = fcntl(readFD, F_GETFL)
        _ = fcntl(readFD, F_SETFL, flags | O_NONBLOCK)
    }

    /// With a non-blocking read end: everything readable right now.
    func readAvailable() -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
            if n > 0 {
                result.append(contentsOf: buffer[0..<n])
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return result
            }
        }
    }

    /// Reads (non-blocking read end) while `operation` runs on another thread; returns what was read and whether
    /// the operation finished within `timeout`.
    func readWhile(timeout: TimeInterval = 60, _ operation: @escaping @Sendable () -> Void) -> (bytes: [UInt8], finished: Bool) {
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            operation()
            done.signal()
        }
        var bytes: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var finished = false
        while Date() < deadline {
            bytes += readAvailable()
            if done.wait(timeout: .now() + 0.001) == .success {
                finished = true
                break
            }
        }
        bytes += readAvailable()
        return (bytes, finished)
    }

    func closeWriteEnd() { _ = close(writeFD) }
    func closeReadEnd() { _ = close(readFD) }
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads a descriptor to EOF on its own thread.
final class PipeDrain: Sendable {
    private let data = Mutex<[UInt8]>([])
    private let done = DispatchSemaphore(value: 0)

    init(fd: Int32) {
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    data.withLock { $0.append(contentsOf: buffer[0..<n]) }
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    break
                }
            }
            done.signal()
        }
    }

    /// What has been read so far.
    func snapshot() -> [UInt8] {
        data.withLock { $0 }
    }

    /// Waits for EOF (the test must have closed every write end); nil if it does not come within the timeout.
    func result(timeout: TimeInterval = 60) -> [UInt8]? {
        guard done.wait(timeout: .now() + timeout) == .success else { return nil }
        return data.withLock { $0 }
    }
}

/// Runs `body` on a fresh thread; false if it did not return within `timeout` (the thread is then left behind).
/// Used to turn a regression that blocks a log call into a failure rather than a hung test run.
func completes(within timeout: TimeInterval, _ body: @escaping @Sendable () -> Void) -> Bool {
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        body()
        done.signal()
    }
    return done.wait(timeout: .now() + timeout) == .success
}

/// A fresh temporary directory, removed by `remove()`.
struct TempDir {
    let path: String

    init() throws {
        var template = Array("/tmp/echodlog-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
            return String(cString: base)
        }
        guard let made else { throw TestError("mkdtemp failed") }
        path = made
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

func readFile(_ path: String) -> String {
    (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}

func lines(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
}

func lines(_ bytes: [UInt8]) -> [String] {
    lines(String(decoding: bytes, as: UTF8.self))
}

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

/// Records which threads its `description` ran on.
final class ThreadProbe: CustomStringConvertible, Sendable {
    let threads = Mutex<[UInt]>([])

    var description: String {
        threads.withLock { $0.append(UInt(bitPattern: Int(bitPattern: pthread_self()))) }
        return "probed"
    }
}

func currentThreadID() -> UInt {
    UInt(bitPattern: Int(bitPattern: pthread_self()))
}
