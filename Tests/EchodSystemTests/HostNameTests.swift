import EchodSystem
import Glibc
import Testing

@Suite("Host name")
struct HostNameTests {
    /// The UTS name the kernel also shows in /proc/sys/kernel/hostname.
    @Test func hostNameIsTheKernels() throws {
        let name = try Syscall.hostName()
        let file = try #require(fopen("/proc/sys/kernel/hostname", "r"))
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        #expect(fgets(&buffer, Int32(buffer.count), file) != nil)
        let proc = String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #expect(!name.isEmpty && name == proc)
    }
}
