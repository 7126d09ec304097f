import EchodEventLoop
import Glibc

/// Runs blocking work (reading the config file) on a short-lived thread of its own, then hands the result to an
/// event loop through its wakeup queue. Regular files cannot be watched by epoll, so this is how file I/O stays
/// off every event loop thread.
enum BackgroundWork {
    private final class Job {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Runs `work` on a new detached thread and delivers its result to `deliver` on `loop`.
    static func run<T: Sendable>(name: String, _ work: @escaping @Sendable () -> T, deliverOn loop: EventLoop, _ deliver: @escaping @Sendable (T) -> Void) {
        let job = Job {
            let result = work()
            loop.execute { deliver(result) }
        }
        let context = Unmanaged.passRetained(job).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, context)
        pthread_attr_destroy(&attributes)
        if rc != 0 {
            // No thread to be had: do the work here rather than lose it. Only at resource exhaustion.
            Unmanaged<Job>.fromOpaque(context).takeRetainedValue().body()
        }
    }
}
