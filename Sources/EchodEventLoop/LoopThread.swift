import EchodSystem
import CEchodLinux
import Glibc

/// A POSIX thread running one `EventLoop`. Plain pthreads: the loop needs no Foundation and no Dispatch.
public final class LoopThread: @unchecked Sendable {
    private var thread: pthread_t?
    public let loop: EventLoop

    private final class Start {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts a thread that runs `loop` until it is stopped, then calls `onExit` (on that thread) with the error
    /// that ended it, if any.
    public init(loop: EventLoop, name: String, onExit: @escaping @Sendable (IOError?) -> Void) throws(IOError) {
        self.loop = loop
        let start = Start {
            var failure: IOError?
            do throws(IOError) { try loop.run() } catch { failure = error }
            onExit(failure)
        }
        let context = Unmanaged.passRetained(start).toOpaque()
        var handle = pthread_t()
        let rc = pthread_create(&handle, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.body()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            throw IOError("pthread_create", errno: rc)
        }
        _ = echod_set_thread_name(handle, String(name.prefix(15)))
        thread = handle
    }

    /// Waits for the thread to end.
    public func join() {
        guard let t = thread else { return }
        pthread_join(t, nil)
        thread = nil
    }
}
