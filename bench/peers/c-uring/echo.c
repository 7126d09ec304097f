/*
 * echo.c - the race's io_uring reference: a minimal single-threaded C echo
 * server on liburing, completion-based (io_uring is not used as a poller),
 * to show what the kernel allows next to the epoll reference (c-epoll).
 *
 *   usage: uring-echo PORT       (binds 127.0.0.1:PORT; 0 = kernel picks,
 *                                 the chosen port is printed on stdout)
 *          uring-echo --probe    (exit 0 when io_uring can run this server
 *                                 here, else say why on stderr and exit 3)
 *
 * Design:
 *   - one ring, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN when
 *     the kernel has them (else COOP_TASKRUN, else none), no SQPOLL (it would
 *     burn a core the client needs);
 *   - a multishot accept on the listener, re-armed when the kernel ends it;
 *   - per connection one multishot receive that picks buffers from a provided
 *     buffer ring (NBUF x BUF_SIZE, shared by every connection): a received
 *     buffer is sent back as it is and given back to the ring only when its
 *     send has completed (no copy);
 *   - sends on one connection are serialized: one send in flight, the other
 *     received buffers wait in a per-connection FIFO (concurrent sends could
 *     reorder bytes); a short send is resumed from where it stopped;
 *   - backpressure: a connection with MAX_QUEUED buffers waiting (its peer
 *     does not read) has its receive cancelled, and re-armed when its queue
 *     is empty, so one slow reader holds at most MAX_QUEUED buffers;
 *   - ENOBUFS (the ring is empty: other connections hold every buffer) ends
 *     a multishot receive: the connection is re-armed in a later loop turn in
 *     which buffers came back (or when its own queue empties);
 *   - a multishot receive the kernel ended for any other reason (no
 *     IORING_CQE_F_MORE) is re-armed the same way;
 *   - EOF: the queued buffers are sent, then the socket is closed (the end of
 *     a half-close); an error drops the queue and closes; an fd is closed only
 *     when no request on it is in flight, so a reused fd cannot meet a stale
 *     completion;
 *   - one io_uring_submit_and_wait per loop turn: it submits what the turn
 *     prepared and waits for the completions of the turn's sends and one
 *     more (with a 1 ms timeout when there are sends): one io_uring_enter per
 *     round trip at one connection, where waiting for one completion took
 *     two; returned buffers are published to the ring once per turn;
 *   - TCP_NODELAY on every accepted socket (as c-epoll);
 *   - per-connection state is one 16-byte slot in a table indexed by fd,
 *     calloc'ed up front to the fd limit; buffers are touched only by data.
 * When io_uring is unavailable (kernel.io_uring_disabled, a seccomp filter, an
 * old kernel without multishot receive or buffer rings) it exits 3 with the
 * reason; the race then skips it and says why.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef BUF_SIZE
#define BUF_SIZE (64 * 1024)
#endif
#ifndef NBUF
#define NBUF 1024 /* a power of two, at most 32768; one per connection of pp64-c1000 */
#endif
#define BGID 1
#ifndef MAX_QUEUED
#define MAX_QUEUED 8
#endif
#define NO_BUF 0xffff

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_CANCEL, OP_PROBE };
enum { F_RECV = 1, F_SENDING = 2, F_EOF = 4, F_DEAD = 8, F_CANCELLING = 16, F_STARVED = 32 };

struct conn {        /* 16 bytes per fd, all zero when the fd is not a connection */
    uint16_t head;   /* first queued buffer id (sent first), NO_BUF when none */
    uint16_t tail;   /* last queued buffer id */
    uint16_t queued; /* buffers in the queue, the one being sent included */
    uint8_t flags;
    uint8_t unused;
    uint32_t sent;   /* bytes of the head buffer already sent */
    uint32_t unused2;
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static uint32_t buflen[NBUF];
static uint16_t bufnext[NBUF];
static struct conn *conns;
static size_t nconns;
static int *starved;
static size_t nstarved;
static int lfd, spare_fd = -1, recycled;
static unsigned sends_prepared; /* in this loop turn */

static uint64_t ud(int op, int fd) { return (uint64_t)op << 32 | (uint32_t)fd; }

static struct io_uring_sqe *sqe_get(void) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    while (!sqe) { /* the submission queue is full: hand it to the kernel now */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void recycle(uint16_t bid) {
    io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid, io_uring_buf_ring_mask(NBUF), recycled++);
}

static void arm_accept(void) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, lfd));
}

static void arm_recv(int fd) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ud(OP_RECV, fd));
    conns[fd].flags |= F_RECV;
}

static void cancel_recv(int fd) {
    struct conn *c = &conns[fd];
    if (!(c->flags & F_RECV) || (c->flags & F_CANCELLING)) return;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_cancel64(sqe, ud(OP_RECV, fd), 0);
    io_uring_sqe_set_data64(sqe, ud(OP_CANCEL, fd));
    c->flags |= F_CANCELLING;
}

static void send_head(int fd) {
    struct conn *c = &conns[fd];
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_send(sqe, fd, bufs + (size_t)c->head * BUF_SIZE + c->sent, buflen[c->head] - c->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(OP_SEND, fd));
    c->flags |= F_SENDING;
    sends_prepared++;
}

static void drop_queue(struct conn *c) {
    while (c->queued) {
        uint16_t bid = c->head;
        c->head = bufnext[bid];
        c->queued--;
        recycle(bid);
    }
    c->sent = 0;
}

/* What a connection needs after a completion: closing once nothing is in flight, or a new receive. */
static void settle(int fd) {
    struct conn *c = &conns[fd];
    if (c->flags & F_DEAD) {
        if (c->flags & F_SENDING) return;
        drop_queue(c);
        if (c->flags & F_RECV) { cancel_recv(fd); return; }
    }
    if (c->flags & (F_DEAD | F_EOF)) {
        if (c->flags & (F_SENDING | F_RECV)) return;
        memset(c, 0, sizeof *c);
        close(fd); /* nothing in flight on it: a reused fd meets no stale completion */
        return;
    }
    if (c->flags & F_RECV || c->queued) return; /* receiving, or re-armed when the queue is sent */
    if (c->flags & F_STARVED) {
        starved[nstarved++] = fd; /* re-armed in a turn in which buffers came back */
        return;
    }
    arm_recv(fd);
}

static void on_accept(struct io_uring_cqe *cqe) {
    if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept();
    int fd = cqe->res;
    if (fd < 0) {
        if ((fd == -EMFILE || fd == -ENFILE) && spare_fd >= 0) { /* refuse one rather than leave it queued */
            close(spare_fd);
            int f = accept(lfd, NULL, NULL);
            if (f >= 0) close(f);
            spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        return;
    }
    if ((size_t)fd >= nconns) { close(fd); return; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&conns[fd], 0, sizeof conns[fd]);
    arm_recv(fd);
}

static void on_recv(int fd, struct io_uring_cqe *cqe) {
    struct conn *c = &conns[fd];
    if (!(cqe->flags & IORING_CQE_F_MORE)) c->flags &= ~(F_RECV | F_CANCELLING);
    int res = cqe->res;
    if (res > 0) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (c->flags & F_DEAD) {
            recycle(bid);
        } else {
            buflen[bid] = (uint32_t)res;
            bufnext[bid] = NO_BUF;
            if (c->queued++) bufnext[c->tail] = bid;
            else c->head = bid;
            c->tail = bid;
            if (!(c->flags & F_SENDING)) send_head(fd);
            if (c->queued >= MAX_QUEUED) cancel_recv(fd); /* the peer does not read: stop receiving */
        }
    } else if (res == 0) {
        c->flags |= F_EOF;
    } else if (res == -ENOBUFS) {
        c->flags |= F_STARVED;
    } else if (res != -ECANCELED) {
        c->flags |= F_DEAD;
    }
    if (cqe->flags & IORING_CQE_F_BUFFER && res <= 0) recycle((uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
    settle(fd);
}

static void on_send(int fd, struct io_uring_cqe *cqe) {
    struct conn *c = &conns[fd];
    c->flags &= ~F_SENDING;
    if (cqe->res < 0) {
        c->flags |= F_DEAD;
    } else {
        c->sent += (uint32_t)cqe->res;
        if (c->sent == buflen[c->head]) { /* else a short send: the rest goes next */
            uint16_t bid = c->head;
            c->head = bufnext[bid];
            c->queued--;
            c->sent = 0;
            recycle(bid);
        }
        if (c->queued && !(c->flags & F_DEAD)) send_head(fd);
    }
    settle(fd);
}

static int setup_ring(void) {
    static const unsigned variants[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        struct io_uring_params p = {.flags = variants[i] | IORING_SETUP_CQSIZE, .cq_entries = 16384};
        ret = io_uring_queue_init_params(4096, &ring, &p);
        if (ret != -EINVAL) break; /* EINVAL: a flag this kernel does not know; anything else is final */
    }
    return ret;
}

static int setup_buffers(void) {
    size_t ring_bytes = NBUF * sizeof(struct io_uring_buf);
    br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    bufs = mmap(NULL, (size_t)NBUF * BUF_SIZE, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED) return -ENOMEM;
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)br, .ring_entries = NBUF, .bgid = BGID};
    int ret = io_uring_register_buf_ring(&ring, &reg, 0);
    if (ret) return ret;
    io_uring_buf_ring_init(br);
    for (int i = 0; i < NBUF; i++) recycle((uint16_t)i);
    io_uring_buf_ring_advance(br, recycled);
    recycled = 0;
    return 0;
}

/* A multishot receive with a provided buffer on a socket pair: the features this server stands on, tried. */
static int probe_multishot(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ud(OP_PROBE, sv[0]));
    int ret = (int)write(sv[1], "x", 1);
    struct io_uring_cqe *cqe;
    if (ret == 1) ret = io_uring_submit_and_wait(&ring, 1);
    if (ret >= 0) ret = io_uring_peek_cqe(&ring, &cqe);
    if (ret == 0) {
        ret = cqe->res == 1 && (cqe->flags & IORING_CQE_F_MORE) && (cqe->flags & IORING_CQE_F_BUFFER)
                  ? 0
                  : (cqe->res < 0 ? cqe->res : -EOPNOTSUPP);
        if (cqe->flags & IORING_CQE_F_BUFFER) recycle((uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
        io_uring_cqe_seen(&ring, cqe);
    }
    close(sv[1]);
    close(sv[0]);
    /* closing the pair ends the receive: wait for its last completion so that it cannot reach the loop */
    while (ret == 0 && io_uring_wait_cqe(&ring, &cqe) == 0) {
        int more = cqe->flags & IORING_CQE_F_MORE;
        if (cqe->flags & IORING_CQE_F_BUFFER) recycle((uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
        io_uring_cqe_seen(&ring, cqe);
        if (!more) break;
    }
    io_uring_buf_ring_advance(br, recycled);
    recycled = 0;
    return ret;
}

static void unavailable(const char *what, int err) {
    char sysctl[16] = "?";
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    if (f) {
        if (!fgets(sysctl, sizeof sysctl, f)) strcpy(sysctl, "?");
        sysctl[strcspn(sysctl, "\n")] = 0;
        fclose(f);
    }
    fprintf(stderr, "c-uring: io_uring unavailable: %s: %s (kernel.io_uring_disabled=%s)\n", what, strerror(-err),
            sysctl);
    exit(3);
}

static void setup_uring(void) {
    int ret = setup_ring();
    if (ret < 0) unavailable("io_uring_setup", ret);
    if ((ret = setup_buffers()) < 0) unavailable("provided buffer ring (IORING_REGISTER_PBUF_RING)", ret);
    if ((ret = probe_multishot()) < 0) unavailable("multishot receive with a provided buffer", ret);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT | --probe\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    size_t want = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                   rl.rlim_cur < (1u << 24)) ? (size_t)rl.rlim_cur : 1024;
    conns = calloc(want, sizeof *conns);
    starved = calloc(want, sizeof *starved);
    if (!conns || !starved) { perror("calloc"); return 1; }
    nconns = want;
    setup_uring();
    if (strcmp(argv[1], "--probe") == 0) return 0;

    int port = atoi(argv[1]);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* blocking sockets: io_uring polls a socket that is not ready instead of failing the request with EAGAIN */
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) { perror("socket"); return 1; }
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    if (listen(lfd, 4096) < 0) { perror("listen"); return 1; }
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    printf("c-uring echo listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    arm_accept();
    for (;;) {
        /* Wait for the completions of this turn's sends AND one more: a send to a socket with room completes
         * during the submission, so waiting for it alone would cost a second io_uring_enter per round trip. The
         * timeout bounds the wait when a send does not complete at once (its peer does not read). */
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        struct io_uring_cqe *first;
        unsigned want = 1 + sends_prepared;
        sends_prepared = 0;
        int ret = want == 1 ? io_uring_submit_and_wait(&ring, 1)
                            : io_uring_submit_and_wait_timeout(&ring, &first, want, &ts, NULL);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME) {
            fprintf(stderr, "io_uring_submit_and_wait: %s\n", strerror(-ret));
            return 1;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            uint64_t u = io_uring_cqe_get_data64(cqe);
            int fd = (int)(uint32_t)u;
            switch ((int)(u >> 32)) {
            case OP_ACCEPT: on_accept(cqe); break;
            case OP_RECV: on_recv(fd, cqe); break;
            case OP_SEND: on_send(fd, cqe); break;
            default: break; /* OP_CANCEL: the cancelled receive reports itself */
            }
        }
        io_uring_cq_advance(&ring, seen);
        if (recycled) {
            io_uring_buf_ring_advance(br, recycled);
            recycled = 0;
            size_t m = nstarved;
            nstarved = 0;
            for (size_t i = 0; i < m; i++) {
                int fd = starved[i];
                conns[fd].flags &= ~F_STARVED;
                settle(fd);
            }
        }
    }
}
