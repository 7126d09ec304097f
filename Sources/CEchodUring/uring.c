#define _GNU_SOURCE
#include "CEchodUring.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

const uint32_t ECHOD_CQE_F_BUFFER = IORING_CQE_F_BUFFER;
const uint32_t ECHOD_CQE_F_MORE = IORING_CQE_F_MORE;
const uint32_t ECHOD_CQE_BUFFER_SHIFT = IORING_CQE_BUFFER_SHIFT;

struct echod_uring {
    struct io_uring ring;
    unsigned flags;
    // The provided buffer ring, when registered.
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    char *buffers;
    unsigned buffer_size;
    unsigned buffer_count;
    uint16_t group;
    int recycled;
};

int echod_uring_create(unsigned entries, unsigned cq_entries, echod_uring **out) {
    // SINGLE_ISSUER binds the ring to the thread that enables it: created disabled, so that the thread setting the
    // loop up may register buffers, and enabled by the loop's own thread (echod_uring_enable).
    static const unsigned variants[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    echod_uring *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = variants[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
        ret = io_uring_queue_init_params(entries, &r->ring, &p);
        if (ret == 0) {
            r->flags = variants[i];
            break;
        }
        if (ret != -EINVAL) break;  // EINVAL: a flag this kernel does not know; anything else is final
    }
    if (ret < 0) {
        free(r);
        return ret;
    }
    *out = r;
    return 0;
}

void echod_uring_destroy(echod_uring *r) {
    if (r->br) {
        io_uring_unregister_buf_ring(&r->ring, r->group);
        munmap(r->br, r->br_bytes);
    }
    io_uring_queue_exit(&r->ring);
    free(r);
}

int echod_uring_enable(echod_uring *r) {
    if (!(r->flags & IORING_SETUP_R_DISABLED)) return 0;
    // liburing 2.3 declares io_uring_enable_rings but does not export it: the system call itself.
    int ret = (int)syscall(__NR_io_uring_register, r->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (ret < 0) ret = -errno;
    if (ret == 0) r->flags &= ~IORING_SETUP_R_DISABLED;
    return ret;
}

int echod_uring_register_buffers(echod_uring *r, unsigned count, unsigned size, void *buffers, uint16_t group,
                                 unsigned given) {
    // liburing 2.3 (Debian 12) has no io_uring_setup_buf_ring: the ring's memory is mapped here, page-aligned
    // as the kernel requires.
    size_t bytes = count * sizeof(struct io_uring_buf);
    struct io_uring_buf_ring *br = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED) return -errno;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uintptr_t)br;
    reg.ring_entries = count;
    reg.bgid = group;
    int ret = io_uring_register_buf_ring(&r->ring, &reg, 0);
    if (ret) {
        munmap(br, bytes);
        return ret;
    }
    io_uring_buf_ring_init(br);
    r->br = br;
    r->br_bytes = bytes;
    r->buffers = buffers;
    r->buffer_size = size;
    r->buffer_count = count;
    r->group = group;
    for (unsigned i = 0; i < given; i++) echod_uring_recycle_buffer(r, (uint16_t)i);
    echod_uring_publish_buffers(r);
    return 0;
}

void echod_uring_recycle_buffer(echod_uring *r, uint16_t id) {
    io_uring_buf_ring_add(r->br, r->buffers + (size_t)id * r->buffer_size, r->buffer_size, id,
                          io_uring_buf_ring_mask(r->buffer_count), r->recycled++);
}

void echod_uring_publish_buffers(echod_uring *r) {
    if (r->recycled) {
        io_uring_buf_ring_advance(r->br, r->recycled);
        r->recycled = 0;
    }
}

static struct io_uring_sqe *sqe(echod_uring *r) {
    struct io_uring_sqe *s = io_uring_get_sqe(&r->ring);
    while (!s) {  // the submission queue is full: hand it to the kernel now
        io_uring_submit(&r->ring);
        s = io_uring_get_sqe(&r->ring);
    }
    return s;
}

void echod_uring_recv(echod_uring *r, int fd, uint16_t group, uint64_t user_data) {
    struct io_uring_sqe *s = sqe(r);
    io_uring_prep_recv(s, fd, NULL, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = group;
    io_uring_sqe_set_data64(s, user_data);
}

void echod_uring_send(echod_uring *r, int fd, const void *bytes, size_t count, uint64_t user_data) {
    struct io_uring_sqe *s = sqe(r);
    io_uring_prep_send(s, fd, bytes, count, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, user_data);
}

void echod_uring_cancel(echod_uring *r, uint64_t target, uint64_t user_data) {
    struct io_uring_sqe *s = sqe(r);
    io_uring_prep_cancel64(s, target, 0);
    io_uring_sqe_set_data64(s, user_data);
}

void echod_uring_poll_multishot(echod_uring *r, int fd, uint32_t events, uint64_t user_data) {
    struct io_uring_sqe *s = sqe(r);
    io_uring_prep_poll_multishot(s, fd, events);
    io_uring_sqe_set_data64(s, user_data);
}

int echod_uring_submit_and_wait(echod_uring *r, unsigned wait, int64_t timeout_ns) {
    int ret;
    if (timeout_ns < 0) {
        ret = io_uring_submit_and_wait(&r->ring, wait);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
        struct io_uring_cqe *first;
        ret = io_uring_submit_and_wait_timeout(&r->ring, &first, wait, &ts, NULL);
    }
    // Not failures: the timeout passed, a signal came, or the kernel asks to reap completions before more are
    // submitted (the caller reaps them next).
    if (ret == -ETIME || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) return 0;
    return ret;
}

unsigned echod_uring_take(echod_uring *r, echod_cqe *out, unsigned max) {
    struct io_uring_cqe *c;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&r->ring, head, c) {
        if (n == max) break;
        out[n].user_data = c->user_data;
        out[n].res = c->res;
        out[n].flags = c->flags;
        n++;
    }
    io_uring_cq_advance(&r->ring, n);
    return n;
}

int echod_uring_probe(const char **step) {
    echod_uring *r;
    *step = "io_uring_setup";
    int ret = echod_uring_create(8, 16, &r);
    if (ret < 0) return ret;
    *step = "io_uring_register (IORING_REGISTER_ENABLE_RINGS)";
    if ((ret = echod_uring_enable(r)) < 0) {
        echod_uring_destroy(r);
        return ret;
    }
    enum { COUNT = 2, SIZE = 64 };
    static char buffers[COUNT * SIZE];
    *step = "provided buffer ring (IORING_REGISTER_PBUF_RING)";
    ret = echod_uring_register_buffers(r, COUNT, SIZE, buffers, 0, COUNT);
    int sv[2] = {-1, -1};
    if (ret == 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) ret = -errno;
    if (ret == 0) {
        *step = "receive into a provided buffer";
        echod_uring_recv(r, sv[0], 0, 1);
        ret = write(sv[1], "x", 1) == 1 ? echod_uring_submit_and_wait(r, 1, 1000000000) : -errno;
        echod_cqe c;
        if (ret >= 0) {
            if (echod_uring_take(r, &c, 1) != 1) ret = -ETIME;
            else if (c.res < 0) ret = c.res;
            else if (c.res != 1 || !(c.flags & IORING_CQE_F_BUFFER)) ret = -EOPNOTSUPP;
            else ret = 0;
        }
    }
    if (sv[0] >= 0) close(sv[0]);
    if (sv[1] >= 0) close(sv[1]);
    echod_uring_destroy(r);  // tears down whatever is still in flight
    if (ret == 0) *step = NULL;
    return ret;
}
