import Glibc

extension Syscall {
    /// The kernel's host name (the UTS namespace's: a container's or pod's own name), e.g. `web-1`.
    /// The corresponding C function is `gethostname`.
    package static func hostName() throws(IOError) -> String {
        // Linux allows 64 bytes (HOST_NAME_MAX); the rest is room for the NUL, and a truncated name fails with
        // ENAMETOOLONG rather than coming back cut.
        var buffer = [CChar](repeating: 0, count: 256)
        _ = try retryingInterrupts("gethostname") { gethostname(&buffer, buffer.count - 1) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
