import CEchodLinux
import EchodSystem
import Glibc

/// A flat table indexed by file descriptor, as Redis keeps its events: one entry per possible descriptor, no
/// hashing, no per-entry allocation.
///
/// The table is one anonymous private mapping sized for every descriptor the process may open
/// (`RLIMIT_NOFILE`, capped), so it never grows or moves. The kernel backs a page with (zeroed) memory only when
/// an entry on it is first written: 10,000 connections touch the pages of 10,000 entries, not of a million.
/// Hence the one rule for `Element`: the all-zero bit pattern must be a valid "empty" value.
package struct FDTable<Element> {
    package let capacity: Int
    private let base: UnsafeMutablePointer<Element>
    private let byteCount: Int

    /// Entries beyond this are not reserved even when the descriptor limit is higher (4M descriptors).
    package static var maximumCapacity: Int { 1 << 22 }

    /// Reserves room for descriptors `0..<capacity` (default: the process's current descriptor limit).
    package init(capacity requested: Int? = nil) throws(IOError) {
        let limit = requested ?? Int(Syscall.descriptorLimit())
        capacity = max(1024, min(limit, Self.maximumCapacity))
        let page = Syscall.pageSize
        byteCount = (capacity * MemoryLayout<Element>.stride + page - 1) / page * page
        let raw = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let raw, raw != MAP_FAILED else { throw IOError("mmap", errno: echod_errno()) }
        base = raw.bindMemory(to: Element.self, capacity: capacity)
    }

    /// The entry for `fd`, which must be below `capacity`.
    @inline(__always)
    package subscript(fd: Int32) -> UnsafeMutablePointer<Element> {
        base + Int(fd)
    }

    /// Whether `fd` has an entry.
    @inline(__always)
    package func holds(_ fd: Int32) -> Bool { fd >= 0 && Int(fd) < capacity }

    /// Unmaps the table. Entries must hold nothing that needs releasing.
    package func deallocate() {
        munmap(base, byteCount)
    }
}
