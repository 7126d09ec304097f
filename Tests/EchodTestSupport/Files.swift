import Glibc

/// A fresh directory per test (Swift Testing runs tests in parallel), removed by ``remove()`` or when the value goes
/// away, whichever comes first.
package final class TempDir: Sendable {
    package let path: String

    package init() {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/echod-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp in \(base): errno \(errno)")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { removeTree(path) }

    /// The path of `name` in this directory (not created).
    package func file(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to `name` in this directory and returns its path.
    @discardableResult
    package func write(_ name: String, _ text: String) -> String { write(name, Array(text.utf8)) }

    /// Writes raw bytes, for files that are not valid text.
    @discardableResult
    package func write(_ name: String, _ bytes: [UInt8]) -> String {
        let file = file(name)
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "cannot create \(file): errno \(errno)")
        defer { close(fd) }
        precondition(writeAll(fd, bytes), "cannot write \(file): errno \(errno)")
        return file
    }

    /// Removes the directory and everything in it; idempotent.
    package func remove() { removeTree(path) }
}

/// The whole content of a file.
package func readBytes(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw TestFailure("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    return readToEnd(fd)
}

/// The whole content of a file as text (invalid UTF-8 repaired).
package func readFile(_ path: String) throws -> String {
    String(decoding: try readBytes(path), as: UTF8.self)
}

/// Non-empty lines, without their newlines.
package func lines(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
}

package func lines(_ bytes: [UInt8]) -> [String] {
    lines(String(decoding: bytes, as: UTF8.self))
}

/// Reads `fd` until end of file (or an error other than EINTR).
package func readToEnd(_ fd: Int32) -> [UInt8] {
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            result.append(contentsOf: buffer[0..<n])
        } else if n < 0 && errno == EINTR {
            continue
        } else {
            return result
        }
    }
}

/// Writes all of `bytes` to a blocking descriptor; false on an error.
package func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n > 0 {
            offset += n
        } else if n < 0 && errno == EINTR {
            continue
        } else {
            return false
        }
    }
    return true
}

/// `rm -rf path` without following symbolic links.
private func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if st.st_mode & S_IFMT == S_IFDIR {
        if let dir = opendir(path) {
            var children: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { children.append(name) }
            }
            closedir(dir)
            for child in children { removeTree(path + "/" + child) }
        }
        rmdir(path)
    } else {
        unlink(path)
    }
}
