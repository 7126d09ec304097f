import Glibc

/// A blocking loopback TCP client with a receive timeout: what arrives is kept in ``buffered`` until taken.
package final class TestClient {
    package let fd: Int32
    package private(set) var buffered: [UInt8] = []
    private var closed = false

    package init(port: UInt16, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        setReceiveTimeout(fd, seconds: timeoutSeconds)
        var address = loopbackAddress(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let failure = TestFailure("connect to 127.0.0.1:\(port): errno \(errno)")
            Glibc.close(fd)
            throw failure
        }
    }

    deinit { close() }

    /// Closes the connection now (a test that needs the server to see the close before it goes on); once.
    package func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    package func send(_ text: String) throws { try send(Array(text.utf8)) }

    package func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw TestFailure("send: errno \(errno)") }
            offset += n
        }
    }

    /// Receives more into ``buffered``; false at end of stream (or on a reset), throws on timeout.
    package func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 {
            buffered.append(contentsOf: chunk[0..<n])
            return true
        }
        if n == 0 { return false }
        if errno == EAGAIN || errno == EWOULDBLOCK { throw TestFailure("receive timed out") }
        return false  // ECONNRESET and the like: the stream is over
    }

    /// Removes and returns the first `count` buffered bytes.
    package func take(_ count: Int) -> [UInt8] {
        defer { buffered.removeFirst(count) }
        return Array(buffered[0..<count])
    }

    /// True when the peer has closed the connection (end of stream or reset) with nothing more sent.
    package func isClosedByPeer() throws -> Bool {
        if !buffered.isEmpty { return false }
        return try !fill() && buffered.isEmpty
    }

    /// Whatever arrives until the peer closes.
    package func readToEnd() throws -> [UInt8] {
        while try fill() {}
        return take(buffered.count)
    }
}
