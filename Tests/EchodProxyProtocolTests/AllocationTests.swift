import EchodProxyProtocol
import Glibc
import Testing

/// The calling thread's allocation count, when Tests/malloc-count/malloc_count.c is preloaded (its header says how).
let threadAllocations: (@convention(c) () -> UInt)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "echod_thread_allocations") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) () -> UInt).self)
}()

@Suite("The parser allocates nothing")
struct AllocationTests {
    /// Measured in release (`swift test -c release`), the hot path's build; a debug build allocates on every parse.
    @Test(
        "IPv4 and IPv6 headers, v1 and v2, with TLVs, whole, cut or refused, parse without a heap allocation",
        .enabled(if: threadAllocations != nil, "needs LD_PRELOAD of Tests/malloc-count/malloc_count.c"))
    func noAllocation() throws {
        let count = try #require(threadAllocations)
        let headers = ["v1-tcp4", "v1-tcp6", "v1-mapped", "v2-tcp4", "v2-tcp6", "v2-tlvs", "v2-ssl", "v2-local"].map(HAProxyCaptureTests.bytes)
        let refused = [Array("PROXY TCP4 1.2.3.4 ::1 1 2\r\n".utf8), Array("hello".utf8), V2Header(familyTransport: 0x12).bytes]
        for bytes in headers {
            bytes.withUnsafeBytes { _ = ProxyHeaderParser.parse($0, mode: .any) }  // the CRC32C table, once per process
        }
        for bytes in headers + refused {
            let (allocated, parses) = bytes.withUnsafeBytes { buffer in
                let before = count()
                var parses = 0
                for _ in 0..<100 {
                    for cut in [buffer.count / 3, buffer.count - 1, buffer.count] {
                        _ = ProxyHeaderParser.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<cut]), mode: .any)
                        parses += 1
                    }
                }
                return (count() - before, parses)
            }
            #expect(allocated == 0, "\(allocated) allocations in \(parses) parses of \(bytes.count) bytes cut and whole")
        }
    }

    @Test("the counter counts", .enabled(if: threadAllocations != nil, "needs LD_PRELOAD of Tests/malloc-count/malloc_count.c"))
    func counterSeesAnAllocation() throws {
        let count = try #require(threadAllocations)
        let before = count()
        let array = [UInt8](repeating: 1, count: Int.random(in: 100...200))
        #expect(count() > before, "an array of \(array.count) bytes was not counted")
    }
}
