#if canImport(Glibc)
    import EchodSystem
    import EchodText
    import Glibc
#endif

/// Reads the configuration file with plain blocking system calls (through `Syscall`). Loading is synchronous by
/// design (the daemon calls it on a helper thread), so swift-configuration's async `FileProvider` is not used for I/O.
enum FileReading {
    /// A configuration file is a few KiB; anything this large is the wrong file.
    static let maximumSize = 1 << 20

    /// Whether something exists at `path`. Only "no such file" counts as absent: a file that exists but
    /// cannot be read must be reported, not silently replaced by the embedded defaults.
    static func exists(_ path: String) -> Bool {
        do {
            _ = try Syscall.fileStatus(path: path)
            return true
        } catch {
            return error.errno != ENOENT && error.errno != ENOTDIR
        }
    }

    /// The file's bytes, or why it cannot be read (the reason names the failed step and the errno text).
    static func read(_ path: String) throws(InvalidValue) -> [UInt8] {
        let fd: Int32
        do {
            // O_NONBLOCK: opening a FIFO must not hang a reload; the type check below then refuses it.
            fd = try Syscall.open(path, O_RDONLY | O_NONBLOCK)
        } catch {
            throw InvalidValue(reason: "cannot open: \(error.reason)")
        }
        defer { Syscall.close(fd) }
        let info: stat
        do {
            info = try Syscall.fileStatus(fd)
        } catch {
            throw InvalidValue(reason: "cannot stat: \(error.reason)")
        }
        let type = info.st_mode & S_IFMT
        guard type != S_IFDIR else { throw InvalidValue(reason: "is a directory, not a configuration file") }
        guard type == S_IFREG else { throw InvalidValue(reason: "is not a regular file") }
        guard Int(info.st_size) <= maximumSize else {
            throw InvalidValue(reason: "is \(info.st_size) bytes; a configuration file is at most \(maximumSize) bytes")
        }
        let bytes: [UInt8]?
        do {
            bytes = try Syscall.readToEnd(fd, limit: maximumSize)
        } catch {
            throw InvalidValue(reason: "cannot read: \(error.reason)")
        }
        // The file grew after fstat.
        guard let bytes else {
            throw InvalidValue(reason: "is larger than \(maximumSize) bytes; a configuration file is at most that")
        }
        return bytes
    }
}
