import EchodSystem
import Glibc

/// A POSIX semaphore with a timed wait, used to wake the writer thread and to hand completion back to a
/// thread blocked in `flush`/`shutdown`.
///
/// Why a semaphore and not a condition variable: `post()` is what a log call does to wake an idle writer, and glibc's
/// `sem_post` is an atomic increment plus a futex wake only when someone is actually waiting: no lock to take on the
/// caller's thread, never blocks, no I/O (unlike an eventfd or pipe write). The waits go through `Syscall`, which
/// retries EINTR and keeps timed waits on the monotonic clock.
final class WakeSemaphore: @unchecked Sendable {
    // @unchecked: the sem_t lives at a fixed heap address and is only touched through the thread-safe sem_* calls.
    private let sem: UnsafeMutablePointer<sem_t>

    init() {
        sem = .allocate(capacity: 1)
        sem_init(sem, 0, 0)
    }

    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }

    /// Wakes one waiter (or lets the next wait return at once). Lock-free and non-blocking.
    func post() {
        sem_post(sem)
    }

    /// Waits without a deadline.
    func wait() {
        Syscall.semaphoreWait(sem)
    }

    /// Waits at most `timeout`; true when woken by a post, false on timeout.
    func wait(timeout: Duration) -> Bool {
        let now = Syscall.monotonicNanoseconds()
        let (deadline, overflow) = now.addingReportingOverflow(timeout.nanoseconds)
        return Syscall.semaphoreWait(sem, until: overflow ? .max : deadline)
    }

    /// Waits until `deadline` (``Syscall/monotonicNanoseconds()``); true when woken by a post, false once it passed.
    func wait(until deadline: Int64) -> Bool {
        Syscall.semaphoreWait(sem, until: deadline)
    }
}
