import Glibc

/// Echo data read from a peer but not yet written back to it: what a connection holds while its peer does not
/// read fast enough. Absent (a nil pointer, no allocation) for every connection whose peer keeps up, which is
/// nearly all of them: an idle or well-behaved connection holds no buffer.
///
/// A linear buffer with a head and a tail; free space at the front is reclaimed by one `memmove` when the tail
/// reaches the end. Plain value type with manual memory: the owner (`BufferPool`) allocates and frees it.
package struct PendingBuffer {
    var base: UnsafeMutableRawPointer?
    var capacity: Int32 = 0
    var head: Int32 = 0
    var tail: Int32 = 0

    /// Bytes waiting to be written.
    package var count: Int { Int(tail - head) }
    package var isEmpty: Bool { tail == head }
    package var hasStorage: Bool { base != nil }

    /// Where the next unwritten byte is.
    var readable: UnsafeRawPointer { UnsafeRawPointer(base!) + Int(head) }

    /// Free space after the tail, after moving the data to the front if that makes room.
    mutating func writableSpace() -> (UnsafeMutableRawPointer, Int) {
        if tail == capacity && head > 0 {
            memmove(base!, base! + Int(head), Int(tail - head))
            tail -= head
            head = 0
        }
        return (base! + Int(tail), Int(capacity - tail))
    }

    /// Free space after the tail, at least `needed` bytes if the buffer has that much free in all (the data is moved
    /// to the front when the space after it is shorter).
    mutating func writableSpace(atLeast needed: Int) -> (UnsafeMutableRawPointer, Int) {
        if Int(capacity - tail) < needed && head > 0 {
            memmove(base!, base! + Int(head), Int(tail - head))
            tail -= head
            head = 0
        }
        return (base! + Int(tail), Int(capacity - tail))
    }

    mutating func appended(_ n: Int) { tail += Int32(n) }

    mutating func consumed(_ n: Int) {
        head += Int32(n)
        if head == tail {
            head = 0
            tail = 0
        }
    }
}

/// A loop's cache of pending buffers, so that a connection streaming into a full socket buffer (a partial write
/// every few reads) reuses memory instead of calling `malloc`/`free` — and, for buffers this size, `mmap` — each time.
package struct BufferPool {
    private var free: [UnsafeMutableRawPointer] = []
    /// Every buffer has exactly this many bytes: the per-connection bound on pending data.
    package private(set) var bufferSize: Int
    private let keep: Int

    package init(bufferSize: Int, keep: Int = 8) {
        self.bufferSize = bufferSize
        self.keep = keep
        free.reserveCapacity(keep)
    }

    /// Gives `buffer` storage of `bufferSize` bytes.
    mutating func attach(_ buffer: inout PendingBuffer) {
        precondition(!buffer.hasStorage)
        buffer.base = free.popLast() ?? UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)
        buffer.capacity = Int32(bufferSize)
        buffer.head = 0
        buffer.tail = 0
    }

    /// Takes back `buffer`'s storage (which must be empty or abandoned).
    mutating func detach(_ buffer: inout PendingBuffer) {
        guard let base = buffer.base else { return }
        if Int(buffer.capacity) == bufferSize && free.count < keep {
            free.append(base)
        } else {
            base.deallocate()
        }
        buffer = PendingBuffer()
    }

    /// Changes the size of future buffers (a reload changed `max_pending_bytes`); cached ones of the old size go.
    mutating func resize(_ newSize: Int) {
        guard newSize != bufferSize else { return }
        bufferSize = newSize
        for b in free { b.deallocate() }
        free.removeAll(keepingCapacity: true)
    }

    /// Frees every cached buffer.
    mutating func drain() {
        for b in free { b.deallocate() }
        free.removeAll()
    }
}
