import EchodEventLoop
import EchodSystem

/// Runs blocking work (reading the config file) on a short-lived thread of its own, then hands the result to an
/// event loop through its wakeup queue. Regular files cannot be watched by epoll, so this is how reading the
/// configuration stays off the event loop threads, the control loop's included.
enum BackgroundWork {
    /// Runs `work` on a new detached thread named `name` and delivers its result to `deliver` on `loop`.
    static func run<T: Sendable>(name: String, _ work: @escaping @Sendable () -> T, deliverOn loop: EventLoop, _ deliver: @escaping @Sendable (T) -> Void) {
        let job: @Sendable () -> Void = {
            let result = work()
            loop.execute { deliver(result) }
        }
        do throws(IOError) {
            try SystemThread(name: name, job).detach()
        } catch {
            // No thread to be had: do the work here rather than lose it. Only at resource exhaustion.
            job()
        }
    }
}
