// io_uring for echod's event loop, through liburing (Debian liburing-dev): the ring set-up with the kernel's
// fall-backs, a provided buffer ring, the request kinds the loop submits, and completions copied out in batches.
// liburing's API is mostly static inline functions and macros over shared-memory rings; these few out-of-line
// wrappers keep its structs out of Swift (the importer would see struct io_uring's internals) and give each request
// kind one call. Every function returns 0 or a negative errno, as liburing does.
#ifndef ECHOD_CECHODURING_H
#define ECHOD_CECHODURING_H

#include <stdint.h>
#include <stddef.h>

// One ring: opaque to Swift.
typedef struct echod_uring echod_uring;

// A completion as the loop reads it.
typedef struct {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} echod_cqe;

// The completion flags the loop reads (IORING_CQE_F_*), and where a provided buffer's id sits in `flags`.
extern const uint32_t ECHOD_CQE_F_BUFFER;
extern const uint32_t ECHOD_CQE_F_MORE;
extern const uint32_t ECHOD_CQE_BUFFER_SHIFT;

// Sets up a ring with `entries` submission slots and `cq_entries` completion slots: SINGLE_ISSUER | DEFER_TASKRUN
// where the kernel has them (6.1; then created disabled: see echod_uring_enable), else COOP_TASKRUN (5.19), else
// neither; never SQPOLL. Sets *out on success.
int echod_uring_create(unsigned entries, unsigned cq_entries, echod_uring **out);
void echod_uring_destroy(echod_uring *ring);
// Enables a ring created disabled (with SINGLE_ISSUER): the calling thread becomes the only one that may submit
// and wait. Requests prepared before wait in the queue until the first submit.
int echod_uring_enable(echod_uring *ring);

// A provided buffer ring for `count` (a power of two, at most 32768) buffers of `size` bytes at `buffers` (which
// the caller owns), group `group`; buffers 0..<given are given to the kernel, the others when the caller first
// gives them (echod_uring_recycle_buffer).
int echod_uring_register_buffers(echod_uring *ring, unsigned count, unsigned size, void *buffers, uint16_t group,
                                 unsigned given);
// Gives buffer `id` (back) to the kernel; takes effect at the next echod_uring_publish_buffers.
void echod_uring_recycle_buffer(echod_uring *ring, uint16_t id);
void echod_uring_publish_buffers(echod_uring *ring);

// Requests. Each takes a submission slot, submitting the queue to the kernel first when it is full.
// A receive into one buffer of `group` (the kernel picks it; the completion says which).
void echod_uring_recv(echod_uring *ring, int fd, uint16_t group, uint64_t user_data);
void echod_uring_send(echod_uring *ring, int fd, const void *bytes, size_t count, uint64_t user_data);
void echod_uring_cancel(echod_uring *ring, uint64_t target, uint64_t user_data);
void echod_uring_poll_multishot(echod_uring *ring, int fd, uint32_t events, uint64_t user_data);

// Submits what was prepared and waits for `wait` completions; with `timeout_ns` >= 0, at most that long (0: only
// takes in what the kernel has finished). Returns the number submitted (0 as well when the wait was cut short by
// the timeout or a signal) or a negative errno.
int echod_uring_submit_and_wait(echod_uring *ring, unsigned wait, int64_t timeout_ns);
// Copies up to `max` completions into `out` and marks them seen; returns how many.
unsigned echod_uring_take(echod_uring *ring, echod_cqe *out, unsigned max);

// 0 when this kernel and process can run a ring with a receive into a provided buffer ring (tried on a socket
// pair), else the negative errno of the step that failed; *step names it.
int echod_uring_probe(const char **step);

#endif
