import CEchodLinux
import Glibc

/// The seals of a memfd (`fcntl(2)` `F_ADD_SEALS`/`F_GET_SEALS`): what nobody, this process included, may do to the
/// file any more. A sealed memfd is a snapshot a reader can trust not to change under it.
package struct FileSeals: OptionSet, Sendable, Equatable {
    package let rawValue: Int32
    package init(rawValue: Int32) { self.rawValue = rawValue }

    /// No further seal may be added (`F_SEAL_SEAL`).
    package static let seal = FileSeals(rawValue: Int32(ECHOD_SEAL_SEAL))
    /// The file may not shrink (`F_SEAL_SHRINK`).
    package static let shrink = FileSeals(rawValue: Int32(ECHOD_SEAL_SHRINK))
    /// The file may not grow (`F_SEAL_GROW`).
    package static let grow = FileSeals(rawValue: Int32(ECHOD_SEAL_GROW))
    /// The contents may not be written (`F_SEAL_WRITE`).
    package static let write = FileSeals(rawValue: Int32(ECHOD_SEAL_WRITE))
    /// Everything above: the file is frozen as it is.
    package static let all: FileSeals = [.seal, .shrink, .grow, .write]
}

extension Syscall {
    /// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`: an anonymous file in memory that can be written, then
    /// sealed (``sealAll(_:)``) and handed to another process. `name` is only a label (`/proc/PID/fd` shows
    /// `/memfd:NAME (deleted)`); at most 249 bytes, else EINVAL.
    package static func memfdCreate(name: String) throws(IOError) -> Int32 {
        try retryingInterrupts("memfd_create") { echod_memfd_create_sealable(name) }
    }

    /// Adds every seal (``FileSeals/all``): from now on nobody can write, resize or unseal the file. Fails with EPERM
    /// on a file created without `MFD_ALLOW_SEALING` (or already sealed with `F_SEAL_SEAL`), EINVAL on a file that is
    /// not a memfd, and EBUSY while a writable shared mapping of it exists.
    package static func sealAll(_ fd: Int32) throws(IOError) {
        _ = try retryingInterrupts("fcntl(F_ADD_SEALS)") { echod_fcntl_add_seals(fd, FileSeals.all.rawValue) }
    }

    /// The seals of `fd` (`F_GET_SEALS`). Fails with EINVAL for a descriptor that is not a memfd (or other shmem
    /// file): how a memfd is recognised.
    package static func seals(_ fd: Int32) throws(IOError) -> FileSeals {
        FileSeals(rawValue: try retryingInterrupts("fcntl(F_GET_SEALS)") { echod_fcntl_get_seals(fd) })
    }
}
