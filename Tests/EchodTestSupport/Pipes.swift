import Glibc

/// A pipe whose ends the test closes explicitly (after whatever writes to it has shut down, so that a recycled
/// descriptor number is never written by a stale writer).
package struct TestPipe: Sendable {
    package let readFD: Int32
    package let writeFD: Int32

    package init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw TestFailure("pipe: \(String(cString: strerror(errno)))") }
        readFD = fds[0]
        writeFD = fds[1]
    }

    package func setNonBlockingWriteEnd() { setNonBlocking(writeFD) }
    package func setNonBlockingReadEnd() { setNonBlocking(readFD) }

    /// With a non-blocking read end: everything readable right now.
    package func readAvailable() -> [UInt8] { readToEnd(readFD) }

    /// Reads (non-blocking read end) while `operation` runs on another thread; returns what was read and whether
    /// the operation finished within `timeout` seconds.
    package func readWhile(timeout: Double = 60, _ operation: @escaping @Sendable () -> Void) -> (bytes: [UInt8], finished: Bool) {
        let thread = TestThread(operation)
        var bytes: [UInt8] = []
        let deadline = monotonicNow() + .milliseconds(Int(timeout * 1000))
        var finished = false
        while monotonicNow() < deadline {
            bytes += readAvailable()
            if thread.isFinished {
                finished = true
                break
            }
            usleep(1000)
        }
        bytes += readAvailable()
        return (bytes, finished)
    }

    package func closeWriteEnd() { _ = close(writeFD) }
    package func closeReadEnd() { _ = close(readFD) }
}

/// Reads a descriptor to end of file on its own thread.
package final class PipeDrain: Sendable {
    private let data = Locked<[UInt8]>([])
    private let thread: TestThread

    package init(fd: Int32) {
        let data = self.data
        thread = TestThread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    data.update { $0.append(contentsOf: buffer[0..<n]) }
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    break
                }
            }
        }
    }

    /// What has been read so far.
    package func snapshot() -> [UInt8] { data.value }

    /// Waits for end of file (the test must have closed every write end); nil if it does not come within the timeout.
    package func result(timeout: Double = 60) -> [UInt8]? {
        guard thread.wait(timeout: timeout) else { return nil }
        return data.value
    }
}

package func setNonBlocking(_ fd: Int32) {
    let flags = fcntl(fd, F_GETFL)
    _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
}
