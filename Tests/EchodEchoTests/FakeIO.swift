import EchodEcho
import EchodEventLoop
import EchodSystem

/// A scripted `EchoIO`: the peer's bytes to deliver, how much each write may take, and a record of everything
/// the machine did — so the echo state machine can be tested without sockets.
struct FakeIO: EchoIO {
    /// Bytes the peer sent, not yet read by the machine.
    var inbound: [UInt8] = []
    /// The peer half-closed after `inbound`.
    var peerEOF = false
    /// How many bytes the next writes may take (nil: everything); 0 means would-block.
    var writeAllowance: Int? = nil
    var failWrites = false
    /// The loop refuses to change what it watches (epoll_ctl failing).
    var failInterest = false
    /// What was written back, in order.
    var echoed: [UInt8] = []
    var interest: Interest = .read
    var interestChanges = 0
    var reads = 0

    mutating func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> IOOutcome {
        reads += 1
        if inbound.isEmpty { return peerEOF ? .endOfFile : .wouldBlock }
        let n = min(count, inbound.count)
        inbound.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
        inbound.removeFirst(n)
        return .bytes(n)
    }

    mutating func peek(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> IOOutcome {
        if inbound.isEmpty { return peerEOF ? .endOfFile : .wouldBlock }
        let n = min(count, inbound.count)
        inbound.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
        return .bytes(n)
    }

    /// The machine ended its sending direction.
    var writeShut = false
    mutating func shutdownWrite(_ fd: Int32) { writeShut = true }

    mutating func write(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int) -> IOOutcome {
        if failWrites { return .failed(IOError("write", errno: 104)) }
        var n = count
        if let allowance = writeAllowance {
            n = min(count, allowance)
            writeAllowance = allowance - n
        }
        if n == 0 { return .wouldBlock }
        echoed.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: n))
        return .bytes(n)
    }

    mutating func setInterest(_ fd: Int32, _ interest: Interest) -> Bool {
        if failInterest { return false }
        self.interest = interest
        interestChanges += 1
        return true
    }

}
