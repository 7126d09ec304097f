import CEchodLinux
import CEchodUring

/// Receives readiness events for the descriptors it registered with an `EventLoop`.
///
/// A class rather than a protocol so that the loop's fd table can hold one unowned pointer per descriptor and a
/// dispatch is a plain vtable call: no existential box, no reference counting per event. The loop does not retain
/// handlers; whoever registers a descriptor keeps its handler alive until it is deregistered.
///
/// `open`, the one declaration in echod above `package` access: handlers are subclassed in other modules of this
/// package (EchodEcho, EchodAdmin, EchodBench), and Swift has no package-wide "open".
open class EventHandler {
    package init() {}

    /// Called on the loop thread with the `epoll` event bits (`EPOLLIN`, `EPOLLOUT`, `EPOLLERR`, `EPOLLHUP`, …).
    open func handleEvent(fd: Int32, events: UInt32) {}
}

/// An `EventHandler` that also receives completions (io_uring backend) for the requests it submits on descriptors
/// it `attach`ed to the loop. A subclass of its own, so that handlers which only ever watch readiness do not carry
/// (or override) a method they never get.
open class CompletionHandler: EventHandler {
    override package init() {}

    /// Called on the loop thread for each completion of a request the handler submitted on an attached `fd`: its
    /// `operation` code, the kernel's result (bytes, a descriptor, or a negative errno) and the completion flags
    /// (``Completion``).
    open func handleCompletion(fd: Int32, operation: UInt8, result: Int32, flags: UInt32) {}
}

/// Reading a completion's flags.
package enum Completion {
    /// The provided buffer the kernel filled, if it used one.
    @inline(__always)
    package static func buffer(_ flags: UInt32) -> UInt16? {
        flags & ECHOD_CQE_F_BUFFER != 0 ? UInt16(truncatingIfNeeded: flags >> ECHOD_CQE_BUFFER_SHIFT) : nil
    }
}

/// Which readiness a registration asks for.
package struct Interest: OptionSet, Sendable {
    package let rawValue: UInt32
    package init(rawValue: UInt32) { self.rawValue = rawValue }

    package static let read = Interest(rawValue: EPOLLIN.rawValue)
    package static let write = Interest(rawValue: EPOLLOUT.rawValue)
    /// `EPOLLEXCLUSIVE`: of all loops waiting on one shared listening socket only one is woken per connection,
    /// so a shared listener has no thundering herd. Only valid when adding.
    package static let exclusive = Interest(rawValue: EPOLLEXCLUSIVE.rawValue)
}

/// The raw event bits handed to `EventHandler.handleEvent`, named.
package enum EventBits {
    package static let readable: UInt32 = EPOLLIN.rawValue
    package static let writable: UInt32 = EPOLLOUT.rawValue
    package static let error: UInt32 = EPOLLERR.rawValue
    package static let hangup: UInt32 = EPOLLHUP.rawValue
}
