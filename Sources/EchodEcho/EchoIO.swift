import EchodEventLoop
import EchodSystem
import Glibc

/// The operations the echo state machine performs on a connection. `SocketIO` does them with system calls; the
/// tests use a scripted fake, so that half-close, backpressure and partial writes are tested without sockets.
package protocol EchoIO {
    mutating func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> IOOutcome
    mutating func write(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int) -> IOOutcome
    /// Like `read`, but leaves the bytes waiting: the next read returns them again.
    mutating func peek(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> IOOutcome
    /// Ends the sending direction (FIN) once what was written is sent; reading goes on.
    mutating func shutdownWrite(_ fd: Int32)
    /// False when the loop could not change what it watches (the machine then closes the connection).
    mutating func setInterest(_ fd: Int32, _ interest: Interest) -> Bool
}

/// The result of one read or write, with end-of-file and would-block as outcomes rather than errors.
package enum IOOutcome: Equatable {
    case bytes(Int)
    case endOfFile
    case wouldBlock
    case failed(IOError)
}

/// `EchoIO` on real sockets registered with an event loop.
package struct SocketIO: EchoIO {
    unowned(unsafe) let loop: EventLoop

    package init(loop: EventLoop) { self.loop = loop }

    @inline(__always)
    package mutating func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> IOOutcome {
        do throws(IOError) {
            switch try Syscall.read(fd, buffer, count) {
            case .processed(0): return .endOfFile
            case .processed(let n): return .bytes(n)
            case .wouldBlock: return .wouldBlock
            }
        } catch {
            return .failed(error)
        }
    }

    @inline(__always)
    package mutating func write(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int) -> IOOutcome {
        do throws(IOError) {
            switch try Syscall.write(fd, buffer, count) {
            case .processed(let n): return .bytes(n)
            case .wouldBlock: return .wouldBlock
            }
        } catch {
            return .failed(error)
        }
    }

    package mutating func peek(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> IOOutcome {
        do throws(IOError) {
            switch try Syscall.peek(fd, buffer, count) {
            case .processed(0): return .endOfFile
            case .processed(let n): return .bytes(n)
            case .wouldBlock: return .wouldBlock
            }
        } catch {
            return .failed(error)
        }
    }

    package mutating func shutdownWrite(_ fd: Int32) {
        Syscall.shutdown(fd, Int32(SHUT_WR))
    }

    package mutating func setInterest(_ fd: Int32, _ interest: Interest) -> Bool {
        do throws(IOError) {
            try loop.modify(fd: fd, interest: interest)
            return true
        } catch {
            return false
        }
    }

}
