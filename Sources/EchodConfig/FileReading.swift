#if canImport(Glibc)
import EchodText
import Glibc
#endif

/// Reads the configuration file with plain blocking system calls. Loading is synchronous by design (the
/// daemon calls it on a helper thread), so swift-configuration's async `FileProvider` is not used for I/O.
enum FileReading {
    /// A configuration file is a few KiB; anything this large is the wrong file.
    static let maximumSize = 1 << 20

    /// Whether something exists at `path`. Only "no such file" counts as absent: a file that exists but
    /// cannot be read must be reported, not silently replaced by the embedded defaults.
    static func exists(_ path: String) -> Bool {
        var info = stat()
        if stat(path, &info) == 0 { return true }
        return errno != ENOENT && errno != ENOTDIR
    }

    /// The file's bytes, or why it cannot be read.
    static func read(_ path: String) throws(InvalidValue) -> [UInt8] {
        // O_NONBLOCK: opening a FIFO must not hang a reload; the type check below then refuses it.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw InvalidValue(reason: "cannot open: \(errnoText())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw InvalidValue(reason: "cannot stat: \(errnoText())") }
        let type = info.st_mode & S_IFMT
        guard type != S_IFDIR else { throw InvalidValue(reason: "is a directory, not a configuration file") }
        guard type == S_IFREG else { throw InvalidValue(reason: "is not a regular file") }
        guard Int(info.st_size) <= maximumSize else {
            throw InvalidValue(reason: "is \(info.st_size) bytes; a configuration file is at most \(maximumSize) bytes")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw InvalidValue(reason: "cannot read: \(errnoText())")
            }
            bytes += chunk[..<count]
            guard bytes.count <= maximumSize else {
                throw InvalidValue(reason: "is larger than \(maximumSize) bytes; a configuration file is at most that")
            }
        }
        return bytes
    }

    private static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}
