import EchodProxyProtocol
import Glibc

/// The machine's paths off the plain echo: a PROXY protocol header before the echo, and the tagging modes. None of
/// them is on the plain path: a connection takes them only on a listener configured for them.
extension EchoMachine {
    /// The most a connection holds of an incomplete PROXY header, and the most one header read takes: the longest v2
    /// header echod accepts (a v1 line is at most 107 bytes). It fits in every pending buffer (`max_pending_bytes` is
    /// at least 4 KiB).
    package static let headerLimit = ProxyHeaderParser.defaultV2Limit

    /// Where reading a PROXY header stands.
    package enum HeaderStep: Equatable {
        /// Incomplete: the bytes so far are held in the connection's pending buffer.
        case waiting
        /// The header is complete; `leftover` bytes the client sent after it came in the same read and are at the
        /// start of the read buffer, to be served by ``echoReadBuffer(_:fd:io:count:)`` or the tagging path.
        case complete(ProxyHeader, leftover: Int)
        /// Not a valid header (nil: the peer closed before it was complete).
        case refused(ProxyHeaderError?)
        /// The read failed (reset).
        case failed
    }

    /// Reads what has arrived of a PROXY protocol header.
    ///
    /// With `exact` false, a read takes up to ``headerLimit`` bytes, so a header and the client's first bytes sent with
    /// it (HAProxy sends them in one segment when the client spoke before the backend connection was up) cost one
    /// read; the client's bytes come back as `leftover`. With `exact` true, the bytes are peeked first and only the
    /// header is taken, one more system call per connection, so that the client's bytes are read later by the path
    /// that serves them: the tagging modes need that, because their output for a read is bounded by the read's size
    /// (see ``readablePrefixed(_:fd:io:tick:)``) and a banner must go out before any echo.
    ///
    /// An incomplete header is held in the pending buffer (at most ``headerLimit`` bytes) and parsed again, whole,
    /// with each read: the parser keeps no state. Nothing read in this phase counts as the client's bytes.
    package mutating func readHeader<IO: EchoIO>(
        _ c: inout Connection, fd: Int32, io: inout IO, mode: ProxyProtocolMode, exact: Bool
    ) -> HeaderStep {
        let held = c.pending.count
        let start: UnsafeMutableRawPointer
        let room: Int
        if held == 0 {
            start = readBuffer
            room = min(Self.headerLimit, readBufferSize)
        } else {
            let (space, available) = c.pending.writableSpace()
            start = space
            room = min(available, Self.headerLimit - held)
        }
        // Cannot happen: the parser decides within `headerLimit` bytes. Refusing beats reading 0 bytes (EOF).
        guard room > 0 else { return .refused(nil) }
        let n: Int
        switch exact ? io.peek(fd, into: start, count: room) : io.read(fd, into: start, count: room) {
        case .bytes(let count): n = count
        case .wouldBlock: return .waiting
        case .endOfFile: return .refused(nil)
        case .failed: return .failed
        }
        let whole =
            held == 0
            ? UnsafeRawBufferPointer(start: readBuffer, count: n)
            : UnsafeRawBufferPointer(start: c.pending.readable, count: held + n)
        switch ProxyHeaderParser.parse(whole, mode: mode, v2Limit: Self.headerLimit) {
        case .invalid(let error):
            return .refused(error)
        case .needMore:
            // Peeked bytes are taken now, so that the socket is not readable again for the same bytes.
            if exact && !take(fd, into: start, count: n, io: &io) { return .failed }
            if held == 0 {
                pool.attach(&c.pending)
                let (space, _) = c.pending.writableSpace()
                space.copyMemory(from: readBuffer, byteCount: n)
            }
            c.pending.appended(n)
            return .waiting
        case .complete(let header, let consumed):
            if exact {
                if consumed > held && !take(fd, into: start, count: consumed - held, io: &io) { return .failed }
                if held > 0 { pool.detach(&c.pending) }
                return .complete(header, leftover: 0)
            }
            let leftover = held + n - consumed
            if held > 0 {
                if leftover > 0 { readBuffer.copyMemory(from: c.pending.readable + consumed, byteCount: leftover) }
                pool.detach(&c.pending)
            } else if leftover > 0 {
                memmove(readBuffer, readBuffer + consumed, leftover)
            }
            return .complete(header, leftover: leftover)
        }
    }

    /// Takes `count` bytes that a peek showed waiting.
    private func take<IO: EchoIO>(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int, io: inout IO) -> Bool {
        if case .bytes(count) = io.read(fd, into: buffer, count: count) { return true }
        return false
    }

    /// Sends bytes the connection originates (a tag line, a prefixed read): written now if nothing is pending,
    /// otherwise, and for what the socket does not take, queued after what is pending. Callers bound what they send
    /// to what the pending buffer has room for.
    package mutating func send<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO, _ bytes: UnsafeRawPointer, count: Int) -> Outcome {
        var written = 0
        if c.pending.isEmpty {
            switch io.write(fd, from: bytes, count: count) {
            case .bytes(let n): written = n
            case .wouldBlock, .endOfFile: written = 0
            case .failed: return .close(.reset)
            }
            c.bytesOut &+= UInt64(written)
        }
        guard written < count else { return .keep }
        if !c.pending.hasStorage { pool.attach(&c.pending) }
        let (space, available) = c.pending.writableSpace(atLeast: count - written)
        // Cannot happen (the callers' bound); closing beats overrunning the buffer or dropping bytes silently.
        guard available >= count - written else { return .close(.reset) }
        space.copyMemory(from: bytes + written, byteCount: count - written)
        c.pending.appended(count - written)
        return updateInterest(&c, fd: fd, io: &io)
    }

    /// Puts the connection in `prefix` mode with its rendered prefix (the tag and a space; at most
    /// ``ListenerPolicy/maximumTagBytes``). The copy is the connection's until ``release(_:)``.
    package mutating func beginPrefixing(_ c: inout Connection, prefix: [UInt8]) {
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: max(prefix.count, 1), alignment: 1)
        prefix.withUnsafeBytes { if let base = $0.baseAddress { bytes.copyMemory(from: base, byteCount: prefix.count) } }
        c.prefixBytes = bytes
        c.prefixCount = UInt16(prefix.count)
        c.flags.insert(.prefixing)
    }

    /// `prefix` mode, readable: reads at most what can be sent back with a prefix before every line, even if every
    /// byte is a newline (`n` bytes give at most `n * (prefix + 1)`), and at most what the pending buffer has room
    /// for; so a client cannot make the connection hold more than `maxPending` bytes, and nothing waits for a
    /// newline: bytes go back as they come, the prefix before the first byte of each line.
    package mutating func readablePrefixed<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO, tick: UInt32) -> Outcome {
        let prefix = Int(c.prefixCount)
        let room = maxPending - c.pending.count
        let want = min(room, readBufferSize) / (prefix + 1)
        guard want > 0 else {
            return updateInterest(&c, fd: fd, io: &io)
        }
        let n: Int
        switch io.read(fd, into: readBuffer, count: want) {
        case .bytes(let count): n = count
        case .wouldBlock: return .keep
        case .endOfFile: return peerFinished(&c, fd: fd, io: &io)
        case .failed: return .close(.reset)
        }
        c.bytesIn &+= UInt64(n)
        c.lastActiveTick = tick
        lastRead = UnsafeRawBufferPointer(start: readBuffer, count: n)
        let produced = prefixLines(&c, count: n)
        return send(&c, fd: fd, io: &io, outBuffer!, count: produced)
    }

    /// Copies the first `n` bytes of the read buffer to the output buffer with the connection's prefix before the
    /// first byte of each line; returns the output's length.
    package mutating func prefixLines(_ c: inout Connection, count n: Int) -> Int {
        if outBuffer == nil { outBuffer = .allocate(byteCount: readBufferSize, alignment: 64) }
        let out = outBuffer!
        let prefix = Int(c.prefixCount)
        var produced = 0
        var i = 0
        while i < n {
            if !c.flags.contains(.midLine), let p = c.prefixBytes {
                (out + produced).copyMemory(from: p, byteCount: prefix)
                produced += prefix
            }
            let rest = n - i
            let end: Int
            if let nl = memchr(readBuffer + i, 0x0A, rest) {
                end = readBuffer.distance(to: nl) + 1
                c.flags.remove(.midLine)
            } else {
                end = n
                c.flags.insert(.midLine)
            }
            (out + produced).copyMemory(from: readBuffer + i, byteCount: end - i)
            produced += end - i
            i = end
        }
        return produced
    }

    /// `hostname-only` mode, readable: what the client sends is read and dropped; its close ends the connection
    /// once the tag line is out.
    package mutating func readableDiscarding<IO: EchoIO>(_ c: inout Connection, fd: Int32, io: inout IO, tick: UInt32) -> Outcome {
        switch io.read(fd, into: readBuffer, count: readBufferSize) {
        case .bytes(let n):
            c.bytesIn &+= UInt64(n)
            c.lastActiveTick = tick
            lastRead = UnsafeRawBufferPointer(start: readBuffer, count: n)
            return .keep
        case .wouldBlock: return .keep
        case .endOfFile: return peerFinished(&c, fd: fd, io: &io)
        case .failed: return .close(.reset)
        }
    }
}
