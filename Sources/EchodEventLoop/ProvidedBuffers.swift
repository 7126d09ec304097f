import EchodSystem
import Glibc

/// The buffers a loop lends the kernel for receives (io_uring's provided buffer ring): room for `count` buffers of
/// `size` bytes in one anonymous mapping, numbered from 0, of which the first `given` have been given to the kernel
/// (``EventLoop/provideMoreBuffers(_:)``). A buffer's pages cost memory only once data has been received into them;
/// which buffer the kernel filled comes with each receive's completion, and it is the kernel's again only when
/// given back (``EventLoop/recycleBuffer(_:)``).
///
/// The mapping is address space only (`PROT_NONE`) until buffers are given: each range becomes writable just before
/// the kernel gets it (``give(upTo:)``). Under strict overcommit (`vm.overcommit_memory=2`, where the kernel
/// ignores `MAP_NORESERVE`) a writable private mapping is charged against the commit limit in full, and 32,768
/// buffers of 64 KiB are 2 GiB per loop: charged that way, a loop could fail to start on a host with memory to
/// spare. Made writable as given, a loop is charged for the buffers it gave, and where the limit refuses more the
/// loop's connections wait for buffers to come back, as at the 32,768 buffers (``EventLoop/provideMoreBuffers(_:)``).
package final class ProvidedBuffers {
    /// The buffer group's id on the loop's ring (one group per loop).
    static let group: UInt16 = 1

    package let count: Int
    package let size: Int
    /// Buffers `0..<given` are readable and writable; the rest of the mapping is `PROT_NONE`.
    package private(set) var given = 0
    /// More were given in this turn, or the kernel refused to back more (``EventLoop/provideMoreBuffers(_:)``).
    var grewThisTurn = false
    var refusedThisTurn = false
    let base: UnsafeMutableRawPointer
    private let byteCount: Int

    init(count: Int, size: Int, given: Int) throws(IOError) {
        precondition(count > 0 && count <= 32768 && count & (count - 1) == 0, "buffer count: a power of two up to 32768")
        self.count = count
        self.size = size
        byteCount = count * size
        let raw = mmap(nil, byteCount, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let raw, raw != MAP_FAILED else { throw IOError("mmap", errno: errno) }
        base = raw
        guard give(upTo: given) else {
            let error = errno
            munmap(raw, byteCount)
            throw IOError("mprotect", errno: error)
        }
    }

    /// Counts buffers `0..<count` as given, making the new ones readable and writable first (whole pages: a buffer
    /// need not start on one); false, with nothing changed and errno set, where the kernel refuses (ENOMEM at the
    /// commit limit under strict overcommit). Handing them to the kernel is the caller's.
    func give(upTo count: Int) -> Bool {
        guard count > given else { return true }
        let page = Syscall.pageSize
        let start = given * size / page * page
        let end = min((count * size + page - 1) / page * page, byteCount)
        guard mprotect(base + start, end - start, PROT_READ | PROT_WRITE) == 0 else { return false }
        given = count
        return true
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
