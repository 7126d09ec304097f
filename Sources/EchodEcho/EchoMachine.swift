import EchodEventLoop

/// RFC 862 on one connection: every byte received goes back, in order, nothing lost — with bounded memory.
///
/// The fast path costs two system calls and no allocation: read into the loop's shared buffer, write it straight
/// back. Only when the write is partial does the rest go into the connection's `PendingBuffer`; from then on
/// the connection reads into that buffer (at most `maxPending` bytes held) and waits for `EPOLLOUT` to flush it.
/// At the bound, reading stops, the kernel's receive window fills and TCP pushes back on the sender: a slow
/// reader gets backpressure, never a growing heap, and is never closed for being slow.
package struct EchoMachine {
    package enum Outcome: Equatable {
        case keep
        case close(CloseReason)
    }

    let readBuffer: UnsafeMutableRawPointer
    package let readBufferSize: Int
    /// Where `prefix` mode builds a read's output (the read with a tag before each line); as large as `readBuffer`,
    /// allocated with the first prefixing connection (a loop without one never has it).
    var outBuffer: UnsafeMutableRawPointer?
    package internal(set) var pool: BufferPool
    /// Bytes of the most recent successful read, for the optional per-read log (valid until the next call).
    package internal(set) var lastRead: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)

    /// - Parameters:
    ///   - readBufferSize: the loop's shared read buffer (one per loop, not per connection), and so the most
    ///     one read takes and one write sends back (reads are also capped at `maxPending`). 256 KiB, as the race's C
    ///     epoll reference reads: a bulk client's data then costs fewer reads and writes. Measured against that
    ///     reference (`bench/run.py --only c-epoll,echod-1 --workloads st64k-c10 --repeats 16`, three interleaved
    ///     runs per size, quiet machine): server CPU per message 1.04-1.12x the reference's with 256 KiB against
    ///     1.29-1.38x with 64 KiB, throughput 0.80-0.99x against 0.66-0.96x; pingpong at 1, 50 and 1,000 connections
    ///     unchanged. (Against the reference's earlier 64 KiB reads, 256 KiB had streamed slower: the peer then gets
    ///     the echo in 256 KiB gulps, which its own copy-out handled worse; the honest reference now does the same.)
    ///     Untouched pages of the buffer cost no memory, and an idle connection holds none of it.
    ///   - maxPending: the per-connection bound on echo data not yet written back.
    package init(readBufferSize: Int = 256 * 1024, maxPending: Int) {
        self.readBufferSize = readBufferSize
        self.readBuffer = .allocate(byteCount: readBufferSize, alignment: 64)
        self.pool = BufferPool(bufferSize: maxPending)
    }

    /// Frees the read buffer and the pool. Call once, when the loop is done.
    package mutating func destroy() {
        readBuffer.deallocate()
        outBuffer?.deallocate()
        outBuffer = nil
        pool.drain()
    }

    package var maxPending: Int { pool.bufferSize }

    /// Applies a new `max_pending_bytes` (reload). Connections holding a buffer keep theirs until it drains.
    package mutating func setMaxPending(_ bytes: Int) { pool.resize(bytes) }

    /// The connection is readable (or in error: the read reports it).
    @inline(__always)
    package mutating func readable<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO, tick: UInt32) -> Outcome {
        if c.pending.isEmpty && !c.pending.hasStorage {
            return readAndEcho(&c, fd: fd, io: &io, tick: tick)
        }
        return readIntoPending(&c, fd: fd, io: &io, tick: tick)
    }

    /// Fast path: nothing is pending, so what is read can be written straight back.
    @inline(__always)
    private mutating func readAndEcho<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO, tick: UInt32) -> Outcome {
        // Never read more than could be held if none of it could be written back.
        let limit = min(readBufferSize, maxPending)
        let n: Int
        switch io.read(fd, into: readBuffer, count: limit) {
        case .bytes(let count): n = count
        case .wouldBlock: return .keep
        case .endOfFile: return peerFinished(&c, fd: fd, io: &io)
        case .failed: return .close(.reset)
        }
        c.bytesIn &+= UInt64(n)
        c.lastActiveTick = tick
        return echoReadBuffer(&c, fd: fd, io: &io, count: n)
    }

    /// Writes back the first `n` bytes of the read buffer, which the connection has just received (a read, or the
    /// client's bytes that came in the same read as its PROXY header); what the socket does not take waits in the
    /// connection's pending buffer (it fits: `n` is at most `maxPending`, and nothing else is pending).
    @inline(__always)
    package mutating func echoReadBuffer<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO, count n: Int) -> Outcome {
        lastRead = UnsafeRawBufferPointer(start: readBuffer, count: n)
        let written: Int
        switch io.write(fd, from: readBuffer, count: n) {
        case .bytes(let count): written = count
        case .wouldBlock, .endOfFile: written = 0
        case .failed: return .close(.reset)
        }
        c.bytesOut &+= UInt64(written)
        if written < n {
            pool.attach(&c.pending)
            let (space, _) = c.pending.writableSpace()
            space.copyMemory(from: readBuffer + written, byteCount: n - written)
            c.pending.appended(n - written)
            return updateInterest(&c, fd: fd, io: &io)
        }
        return .keep
    }

    /// Data is already waiting: append to it (up to the bound) and let `writable` send it in order.
    private mutating func readIntoPending<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO, tick: UInt32) -> Outcome {
        if !c.pending.hasStorage { pool.attach(&c.pending) }
        let room = maxPending - c.pending.count
        guard room > 0 else {
            return updateInterest(&c, fd: fd, io: &io)
        }
        let (space, available) = c.pending.writableSpace()
        switch io.read(fd, into: space, count: min(room, available)) {
        case .bytes(let n):
            c.bytesIn &+= UInt64(n)
            c.lastActiveTick = tick
            lastRead = UnsafeRawBufferPointer(start: space, count: n)
            c.pending.appended(n)
            return updateInterest(&c, fd: fd, io: &io)
        case .wouldBlock:
            return .keep
        case .endOfFile:
            return peerFinished(&c, fd: fd, io: &io)
        case .failed:
            return .close(.reset)
        }
    }

    /// The connection is writable: flush what is pending.
    package mutating func writable<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO, tick: UInt32) -> Outcome {
        guard !c.pending.isEmpty else {
            releaseIfEmpty(&c)
            if case .close(let reason) = updateInterest(&c, fd: fd, io: &io) { return .close(reason) }
            return c.flags.contains(.readClosed) ? finish(&c, fd: fd, io: &io) : .keep
        }
        switch io.write(fd, from: c.pending.readable, count: c.pending.count) {
        case .bytes(let n):
            c.bytesOut &+= UInt64(n)
            c.lastActiveTick = tick
            c.pending.consumed(n)
        case .wouldBlock, .endOfFile:
            return .keep
        case .failed:
            return .close(.reset)
        }
        if c.pending.isEmpty {
            releaseIfEmpty(&c)
            if c.flags.contains(.readClosed) { return finish(&c, fd: fd, io: &io) }
        }
        return updateInterest(&c, fd: fd, io: &io)
    }

    /// Releases the connection's buffers (closing it, or abandoning pending data on a reset or timeout): the pending
    /// buffer, and in `prefix` mode its prefix.
    package mutating func release(_ c: inout Connection) {
        pool.detach(&c.pending)
        c.prefixBytes?.deallocate()
        c.prefixBytes = nil
    }

    /// EOF from the peer (half-close): echo what is still pending, then close our side too.
    mutating func peerFinished<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO) -> Outcome {
        c.flags.insert(.readClosed)
        if c.pending.isEmpty { return finish(&c, fd: fd, io: &io) }
        return updateInterest(&c, fd: fd, io: &io)
    }

    /// Everything the peer sent has been echoed and it sent EOF: closing now sends our FIN after the data still
    /// in the kernel's send buffer. No separate `shutdown(SHUT_WR)`: with nothing left to read, `close` does the
    /// same, one system call per connection cheaper (what a health probe costs).
    private mutating func finish<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO) -> Outcome {
        .close(.peerClosed)
    }

    mutating func releaseIfEmpty(_ c: inout Connection) {
        if c.pending.isEmpty && c.pending.hasStorage { pool.detach(&c.pending) }
    }

    /// Brings the epoll interest in line with the state, with one `epoll_ctl` only when it changes. When the loop
    /// cannot change it (epoll_ctl failed), the connection is closed: one the loop no longer watches for writing
    /// would hold its pending bytes until the idle timeout.
    ///
    /// Reading pauses when no room is left for one more read (`maxPending` bytes held; in `prefix` mode, less room
    /// than a prefix and a byte) and resumes once at most half of `maxPending` is held; the gap keeps a connection
    /// streaming at the bound from flipping its interest on every write.
    mutating func updateInterest<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO) -> Outcome {
        let held = c.pending.count
        // Room one more read needs: a byte, or in `prefix` mode a byte and a whole prefix (`readablePrefixed`).
        let reserve = c.flags.contains(.prefixing) ? Int(c.prefixCount) + 1 : 1
        if c.flags.contains(.readPaused) {
            if held <= maxPending / 2 { c.flags.remove(.readPaused) }
        } else if held > maxPending - reserve {
            c.flags.insert(.readPaused)
        }
        let wantRead = !c.flags.contains(.readClosed) && !c.flags.contains(.readPaused)
        let wantWrite = held > 0
        let current = (c.flags.contains(.watchingRead), c.flags.contains(.watchingWrite))
        guard current != (wantRead, wantWrite) else { return .keep }
        var interest: Interest = []
        if wantRead {
            interest.insert(.read)
            c.flags.insert(.watchingRead)
        } else {
            c.flags.remove(.watchingRead)
        }
        if wantWrite {
            interest.insert(.write)
            c.flags.insert(.watchingWrite)
        } else {
            c.flags.remove(.watchingWrite)
        }
        return io.setInterest(fd, interest) ? .keep : .close(.reset)
    }
}
