import Glibc

/// A POSIX semaphore with a timed wait, used to wake the writer thread and to hand completion back to a
/// thread blocked in `flush`/`shutdown`.
///
/// Why a semaphore and not a condition variable: `post()` is what a log call does to wake an idle writer, and glibc's
/// `sem_post` is an atomic increment plus a futex wake only when someone is actually waiting: no lock to take on the
/// caller's thread, never blocks, no I/O (unlike an eventfd or pipe write).
///
/// Timed waits go through `sem_timedwait`, which takes a CLOCK_REALTIME deadline (`sem_clockwait` is a GNU extension
/// that Swift's Glibc module does not export). To keep a wall-clock step from stretching a wait, a wait is cut into
/// slices of at most `maxSlice` and the real deadline is kept on the monotonic clock.
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
        while sem_wait(sem) != 0 && errno == EINTR {}
    }

    /// Waits at most `timeout`; true when woken by a post, false on timeout.
    func wait(timeout: Duration, maxSlice: Duration = .milliseconds(250)) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if sem_trywait(sem) == 0 { return true }
            let remaining = clock.now.duration(to: deadline)
            if remaining <= .zero { return false }
            let slice = min(remaining, maxSlice)
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let (sliceSeconds, sliceAttoseconds) = slice.components
            var nanoseconds = ts.tv_nsec + Int(sliceAttoseconds / 1_000_000_000)
            ts.tv_sec += Int(sliceSeconds) + nanoseconds / 1_000_000_000
            nanoseconds %= 1_000_000_000
            ts.tv_nsec = nanoseconds
            if sem_timedwait(sem, &ts) == 0 { return true }
            // ETIMEDOUT or EINTR: loop and let the monotonic deadline decide.
        }
    }
}
