import Glibc

extension Syscall {
    /// `stat(2)` of a path (following symbolic links), EINTR retried.
    package static func fileStatus(path: String) throws(IOError) -> stat {
        var info = stat()
        _ = try retryingInterrupts("stat") { stat(path, &info) }
        return info
    }

    /// The inode number of what `fd` refers to (`fstat(2)` `st_ino`). For a socket: an identity that is unique while
    /// the socket lives and the same in every process holding a descriptor for it.
    package static func inode(of fd: Int32) throws(IOError) -> UInt64 {
        UInt64(try fileStatus(fd).st_ino)
    }

    /// The size in bytes of the file `fd` refers to (`fstat(2)` `st_size`).
    package static func fileSize(_ fd: Int32) throws(IOError) -> Int {
        Int(try fileStatus(fd).st_size)
    }

    /// Reads the whole file `fd` refers to, from offset 0 to its end, with `pread(2)`: the file offset is neither used
    /// nor moved, which matters for a descriptor that shares its open file with another process (a memfd taken back
    /// from systemd's fd store has the offset its writer left at the end). nil when the file holds more than `limit`
    /// bytes. For small files only; EINTR retried.
    package static func readWholeFile(_ fd: Int32, limit: Int) throws(IOError) -> [UInt8]? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: min(16 * 1024, limit + 1))
        while true {
            let offset = bytes.count
            let count = try chunk.withUnsafeMutableBufferPointer { (raw) throws(IOError) -> Int in
                try retryingInterrupts("pread") { pread(fd, raw.baseAddress, raw.count, off_t(offset)) }
            }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
            if bytes.count > limit { return nil }
        }
    }

    /// `fchmod(2)`: sets the mode of an open file whatever the umask took from it at creation.
    package static func changeMode(_ fd: Int32, _ mode: mode_t) throws(IOError) {
        _ = try retryingInterrupts("fchmod") { fchmod(fd, mode) }
    }
}
