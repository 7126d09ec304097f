import CEchodLinux

/// Receives readiness events for the descriptors it registered with an `EventLoop`.
///
/// A class rather than a protocol so that the loop's fd table can hold one unowned pointer per descriptor and a
/// dispatch is a plain vtable call: no existential box, no reference counting per event. The loop does not retain
/// handlers; whoever registers a descriptor keeps its handler alive until it is deregistered.
open class EventHandler {
    public init() {}

    /// Called on the loop thread with the `epoll` event bits (`EPOLLIN`, `EPOLLOUT`, `EPOLLERR`, `EPOLLHUP`, …).
    open func handleEvent(fd: Int32, events: UInt32) {}
}

/// Which readiness a registration asks for.
public struct Interest: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let read = Interest(rawValue: EPOLLIN.rawValue)
    public static let write = Interest(rawValue: EPOLLOUT.rawValue)
    /// `EPOLLEXCLUSIVE`: of all loops waiting on one shared listening socket only one is woken per connection,
    /// so a shared listener has no thundering herd. Only valid when adding.
    public static let exclusive = Interest(rawValue: EPOLLEXCLUSIVE.rawValue)
}

/// The raw event bits handed to `EventHandler.handleEvent`, named.
public enum EventBits {
    public static let readable: UInt32 = EPOLLIN.rawValue
    public static let writable: UInt32 = EPOLLOUT.rawValue
    public static let error: UInt32 = EPOLLERR.rawValue
    public static let hangup: UInt32 = EPOLLHUP.rawValue
}
