import EchodSystem
import Glibc

/// The buffers a loop lends the kernel for receives (io_uring's provided buffer ring): room for `count` buffers of
/// `size` bytes in one anonymous mapping, numbered from 0, of which the first `given` have been given to the kernel
/// (``EventLoop/provideMoreBuffers(_:)``). A buffer's pages cost memory only once data has been received into them;
/// which buffer the kernel filled comes with each receive's completion, and it is the kernel's again only when
/// given back (``EventLoop/recycleBuffer(_:)``).
package final class ProvidedBuffers {
    /// The buffer group's id on the loop's ring (one group per loop).
    static let group: UInt16 = 1

    package let count: Int
    package let size: Int
    package internal(set) var given: Int
    /// More were given in this turn (``EventLoop/provideMoreBuffers(_:)``).
    var grewThisTurn = false
    let base: UnsafeMutableRawPointer
    private let byteCount: Int

    init(count: Int, size: Int, given: Int) throws(IOError) {
        precondition(count > 0 && count <= 32768 && count & (count - 1) == 0, "buffer count: a power of two up to 32768")
        self.count = count
        self.size = size
        self.given = given
        byteCount = count * size
        let raw = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let raw, raw != MAP_FAILED else { throw IOError("mmap", errno: errno) }
        base = raw
    }

    /// The start of buffer `id`.
    @inline(__always)
    package subscript(id: UInt16) -> UnsafeMutableRawPointer {
        base + Int(id) * size
    }

    func deallocate() {
        munmap(base, byteCount)
    }
}
