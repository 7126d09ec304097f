import EchodProxyProtocol
import Glibc
import Testing

/// The calling thread's allocation count, when Tests/malloc-count/malloc_count.c is preloaded (its header says how).
private let threadAllocations: (@convention(c) () -> UInt)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "echod_thread_allocations") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) () -> UInt).self)
}()

@Suite("The parser allocates nothing")
struct AllocationTests {
    /// Measured in release (`swift test -c release`): the hot path's build. A debug build allocates on every parse.
    /// A v1 parse that stops before the end of its line (`needMore`, `invalid`) was measured at one allocation per call
    /// (the typed error it throws internally is boxed, it seems); a complete one, v1 or v2, at none.
    @Test(
        "IPv4 and IPv6 headers, v1 and v2, with TLVs, parse without a heap allocation",
        .enabled(if: threadAllocations != nil, "needs LD_PRELOAD of Tests/malloc-count/malloc_count.c"))
    func noAllocation() throws {
        let count = try #require(threadAllocations)
        let headers = ["v1-tcp4", "v1-tcp6", "v1-mapped", "v2-tcp4", "v2-tcp6", "v2-tlvs", "v2-ssl", "v2-local"].map(HAProxyCaptureTests.bytes)
        for bytes in headers {
            bytes.withUnsafeBytes { _ = ProxyHeaderParser.parse($0, mode: .any) }  // the CRC32C table, once per process
        }
        for bytes in headers {
            let (allocated, complete) = bytes.withUnsafeBytes { buffer in
                let before = count()
                var complete = 0
                for _ in 0..<1000 {
                    if case .complete = ProxyHeaderParser.parse(buffer, mode: .any) { complete += 1 }
                }
                return (count() - before, complete)
            }
            #expect(allocated == 0, "\(allocated) allocations in 1,000 parses")
            #expect(complete == 1000)
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
