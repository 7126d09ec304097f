import EchodSystem
import Glibc
import Testing

/// The calling thread's allocation count, when Tests/malloc-count/malloc_count.c is preloaded (its header says how).
private let threadAllocations: (@convention(c) () -> UInt)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "echod_thread_allocations") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) () -> UInt).self)
}()

@Suite("AddressRange.contains allocates nothing")
struct AddressRangeAllocationTests {
    /// Once per accepted connection on a PROXY protocol listener: measured in release (`swift test -c release`).
    @Test(
        "IPv4, IPv6, mapped and Unix peers against IPv4 and IPv6 ranges, without a heap allocation",
        .enabled(if: threadAllocations != nil, "needs LD_PRELOAD of Tests/malloc-count/malloc_count.c"))
    func noAllocation() throws {
        let count = try #require(threadAllocations)
        let ranges = try ["10.0.0.0/8", "0.0.0.0/0", "127.0.0.1/32", "::/0", "2001:db8::/33", "::1/128"].map { text in
            try AddressRange(parsing: text)
        }
        let peers =
            ["10.1.2.3", "192.0.2.1", "::1", "2001:db8::7", "::ffff:10.1.2.3"].map { SocketAddress(host: $0, port: 80)! }
            + [SocketAddress.unixPeer(uid: 1, gid: 1, pid: 1)]
        var hits = 0
        let before = count()
        for _ in 0..<1000 {
            for range in ranges {
                for peer in peers where range.contains(peer) { hits += 1 }
            }
        }
        let allocated = count() - before
        #expect(allocated == 0, "\(allocated) allocations in \(1000 * ranges.count * peers.count) checks")
        #expect(hits == 1000 * 9)
    }
}
