import EchodSystem

/// A named thread (``SystemThread``) running one `EventLoop` until it is stopped.
package final class LoopThread: Sendable {
    private let thread: SystemThread
    package let loop: EventLoop

    /// Starts a thread named `name` that runs `loop` until it is stopped, then calls `onExit` (on that thread) with
    /// the error that ended it, if any.
    package init(loop: EventLoop, name: String, onExit: @escaping @Sendable (IOError?) -> Void) throws(IOError) {
        self.loop = loop
        thread = try SystemThread(name: name) {
            var failure: IOError?
            do throws(IOError) { try loop.run() } catch { failure = error }
            onExit(failure)
        }
    }

    /// Waits for the thread to end.
    package func join() {
        thread.join()
    }
}
