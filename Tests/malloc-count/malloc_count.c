// Counts the calling thread's heap allocations, for tests that promise none (EchodProxyProtocolTests.AllocationTests).
// Preloaded, it sits in front of glibc's allocator and forwards to it; a test finds `echod_thread_allocations` with
// dlsym and compares it before and after the code under test. Per thread, so that tests running in parallel on other
// threads do not count. Not part of any build: build it and run the tests with it by hand,
//
//   cc -O2 -shared -fPIC -o /tmp/libmalloc_count.so Tests/malloc-count/malloc_count.c
//   LD_PRELOAD=/tmp/libmalloc_count.so swift test -c release --filter AllocationTests
//
// and without the preload the test says it was skipped.
#include <stddef.h>
#include <errno.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static __thread unsigned long allocations;

unsigned long echod_thread_allocations(void) { return allocations; }

void *malloc(size_t size) { allocations++; return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { allocations++; return __libc_calloc(count, size); }
void *realloc(void *pointer, size_t size) { allocations++; return __libc_realloc(pointer, size); }
void *memalign(size_t alignment, size_t size) { allocations++; return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { allocations++; return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    allocations++;
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *out = pointer;
    return 0;
}
