import EchodSystem
import Glibc
import Testing

@Suite("Semaphore waits")
struct SemaphoreTests {
    /// A semaphore on the heap for one test.
    final class Semaphore: @unchecked Sendable {
        let raw: UnsafeMutablePointer<sem_t> = .allocate(capacity: 1)
        init(_ value: UInt32 = 0) { sem_init(raw, 0, value) }
        deinit {
            sem_destroy(raw)
            raw.deallocate()
        }
    }

    @Test("a posted semaphore is taken at once, with or without a deadline")
    func posted() {
        let s = Semaphore(2)
        Syscall.semaphoreWait(s.raw)
        #expect(Syscall.semaphoreWait(s.raw, until: Syscall.monotonicNanoseconds()))
        #expect(!Syscall.semaphoreWait(s.raw, until: Syscall.monotonicNanoseconds()), "both taken")
    }

    @Test("a timed wait ends at its monotonic deadline, across several slices")
    func deadline() {
        let s = Semaphore()
        let start = Syscall.monotonicNanoseconds()
        let taken = Syscall.semaphoreWait(s.raw, until: start + 60_000_000, sliceNanoseconds: 10_000_000)
        let waited = Syscall.monotonicNanoseconds() - start
        #expect(!taken)
        #expect(waited >= 60_000_000 && waited < 2_000_000_000, "waited \(waited) ns")
    }

    @Test("a post from another thread ends a timed wait early")
    func postEndsWait() throws {
        let s = Semaphore()
        let poster = try SystemThread(name: "sem-post") {
            usleep(20_000)
            sem_post(s.raw)
        }
        let start = Syscall.monotonicNanoseconds()
        #expect(Syscall.semaphoreWait(s.raw, until: start + 10_000_000_000))
        #expect(Syscall.monotonicNanoseconds() - start < 5_000_000_000)
        poster.join()
    }
}
