import CEchodLinux
import Glibc

extension Syscall {
    /// `sem_wait(3)`: waits until the semaphore can be decremented. EINTR is retried; the only other error, EINVAL,
    /// would mean `semaphore` is not an initialised semaphore, a bug that the precondition reports.
    package static func semaphoreWait(_ semaphore: UnsafeMutablePointer<sem_t>) {
        while sem_wait(semaphore) != 0 {
            let code = echod_errno()
            precondition(code == EINTR, "sem_wait: \(IOError("sem_wait", errno: code))")
        }
    }

    /// Waits for the semaphore until `deadline` (``monotonicNanoseconds()``); true when it was decremented, false
    /// when the deadline passed first.
    ///
    /// `sem_timedwait(3)` takes a CLOCK_REALTIME deadline (`sem_clockwait` is a GNU extension that Swift's Glibc
    /// module does not export). To keep a wall-clock step from stretching the wait, it is cut into slices of at most
    /// `sliceNanoseconds` and the real deadline is kept on the monotonic clock: ETIMEDOUT and EINTR end a slice, and
    /// the deadline decides whether another one starts.
    package static func semaphoreWait(
        _ semaphore: UnsafeMutablePointer<sem_t>, until deadline: Int64, sliceNanoseconds: Int64 = 250_000_000
    ) -> Bool {
        while true {
            if sem_trywait(semaphore) == 0 { return true }
            let remaining = deadline - monotonicNanoseconds()
            if remaining <= 0 { return false }
            let slice = min(remaining, sliceNanoseconds)
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let nanoseconds = ts.tv_nsec + Int(slice % 1_000_000_000)
            ts.tv_sec += Int(slice / 1_000_000_000) + nanoseconds / 1_000_000_000
            ts.tv_nsec = nanoseconds % 1_000_000_000
            if sem_timedwait(semaphore, &ts) == 0 { return true }
        }
    }
}
