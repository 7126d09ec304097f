/*
 * echo.c - the race's reference: the fastest honest single-threaded epoll TCP
 * echo server we could write in plain C (bench/run.py; bench/README.md gives
 * the measurements behind each choice below).
 *
 *   usage: echo PORT            (binds 127.0.0.1:PORT; PORT 0 = kernel picks,
 *                                the chosen port is printed on stdout)
 *
 * Design:
 *   - one thread, as echod-1 (the race compares it with echod --threads 1);
 *   - every connection registered ONCE, edge-triggered, for EPOLLIN | EPOLLOUT
 *     | EPOLLRDHUP: backpressure never costs an epoll_ctl (level-triggered
 *     needs two per parked write, to switch to EPOLLOUT and back);
 *   - one static 256 KiB buffer shared by every connection: read, then send
 *     the bytes straight back (one send per read: there is never a second
 *     buffer to gather, so writev has nothing to batch). A read shorter than
 *     the buffer means the socket is drained (TCP copies all it has), so
 *     edge-triggering costs no read ending in EAGAIN; after a full read the
 *     connection goes on a ready list served after the next, non-blocking
 *     epoll_wait: what level-triggering does, without the kernel polling
 *     every returned socket again on each epoll_wait, and one streamer
 *     cannot starve the others (READS_PER_TURN full reads per turn);
 *   - a partial send copies the unsent remainder into a per-connection heap
 *     buffer and stops reading that connection (backpressure: memory bounded
 *     by one read per connection, no loss); the EPOLLOUT edge flushes it and
 *     reading resumes;
 *   - EOF (read returns 0) is only ever read with nothing pending, so every
 *     byte read has been echoed: closing then is the end of a half-close;
 *     EPOLLRDHUP in an event makes the handler read on to the EOF, which a
 *     short read would otherwise leave unread behind its data;
 *   - TCP_NODELAY on every accepted socket; accept4(SOCK_NONBLOCK) in bounded
 *     batches until EAGAIN (edge-triggered listener);
 *   - per-connection state is one 16-byte slot in a table indexed by fd,
 *     calloc'ed up front to the fd limit (an untouched anonymous mapping) and
 *     written only on a partial send, a ready-list entry or a half-close: an idle
 *     connection costs at most 16 B of user memory, in practice 0;
 *   - EMFILE/ENFILE: the reserve-fd trick (close the spare, accept, close,
 *     reopen the spare), so connections over the limit are refused, not left
 *     in the backlog.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef BUF_SIZE
#define BUF_SIZE (256 * 1024)
#endif
#define MAX_EVENTS 256
#ifndef READS_PER_TURN
#define READS_PER_TURN 1
#endif

struct conn {            /* 16 bytes per fd, all zero when idle */
    char *pend;          /* unsent remainder (heap), NULL when none */
    uint32_t len;        /* bytes in pend */
    uint16_t unused;
    uint8_t ready;       /* on the ready list */
    uint8_t rdhup;       /* peer half-closed: read on to EOF */
};

static char buf[BUF_SIZE];
static struct conn *conns;
static size_t nconns;
static uint32_t *pend_off; /* bytes of pend already sent, per fd (touched only with pend) */
static int *readyq;        /* connections whose last read filled the buffer */
static size_t nready;
static int epfd, lfd, spare_fd = -1;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void drop(int fd) {
    struct conn *c = &conns[fd];
    if (c->pend) free(c->pend);
    if (c->pend || c->ready || c->rdhup) memset(c, 0, sizeof *c); /* keep idle slots untouched */
    close(fd); /* also removes it from the epoll set */
}

static void on_accept(void) {
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
                close(spare_fd);
                int f = accept(lfd, NULL, NULL);
                if (f >= 0) close(f);
                spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            perror("accept4");
            return;
        }
        if ((size_t)fd >= nconns) { close(fd); continue; } /* table is sized to the fd limit */
#ifndef NO_NODELAY
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#endif
        struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) { close(fd); continue; }
    }
    /* 64 accepted and maybe more waiting: the edge will not fire again, so come back next turn */
    struct conn *c = &conns[lfd];
    if (!c->ready) { c->ready = 1; readyq[nready++] = lfd; }
}

/* Flush a parked remainder; 1 when nothing is pending any more, 0 when still parked, -1 when dropped. */
static int flush(int fd, struct conn *c) {
    uint32_t off = pend_off[fd];
    while (off < c->len) {
        ssize_t w = send(fd, c->pend + off, c->len - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) { pend_off[fd] = off; return 0; }
            drop(fd);
            return -1;
        }
        off += (uint32_t)w;
    }
    free(c->pend);
    c->pend = NULL;
    c->len = 0;
    pend_off[fd] = 0;
    return 1;
}

/* Echo what the socket holds: flush, then read and send back, at most READS_PER_TURN full reads. */
static void service(int fd) {
    struct conn *c = &conns[fd];
    if (c->pend && flush(fd, c) <= 0) return;
    for (int i = 0; i < READS_PER_TURN; i++) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0) { drop(fd); return; } /* EOF, nothing pending: everything read was echoed */
        if (n < 0) {
            if (errno == EINTR) { i--; continue; }
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            drop(fd);
            return;
        }
        ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
        if (w < n) {
            if (w < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { drop(fd); return; }
                w = 0;
            }
            c->len = (uint32_t)(n - w);
            c->pend = malloc(c->len);
            if (!c->pend) { drop(fd); return; }
            memcpy(c->pend, buf + w, c->len);
            pend_off[fd] = 0;
            return; /* parked: the EPOLLOUT edge resumes */
        }
        if (n < (ssize_t)sizeof buf && !c->rdhup) return; /* short read: drained */
    }
    if (!c->ready) { c->ready = 1; readyq[nready++] = fd; }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    printf("c-epoll echo listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.fd = lfd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &e) < 0) die("epoll_ctl ADD");
    /* Tables sized to the fd limit up front: a large calloc is an untouched anonymous mapping, so only the slots
     * of fds actually used cost RSS. */
    size_t want = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                   rl.rlim_cur < (1u << 24)) ? (size_t)rl.rlim_cur : 1024;
    conns = calloc(want, sizeof *conns);
    pend_off = calloc(want, sizeof *pend_off);
    readyq = calloc(want, sizeof *readyq);
    if (!conns || !pend_off || !readyq) die("calloc");
    nconns = want;

    struct epoll_event evs[MAX_EVENTS];
    int *batch = calloc(want, sizeof *batch);
    if (!batch) die("calloc");
    for (;;) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, nready ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        /* the ready list as the previous turn left it: served after this turn's events */
        size_t m = nready;
        memcpy(batch, readyq, m * sizeof *batch);
        nready = 0;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) { on_accept(); continue; }
            uint32_t ev = evs[i].events;
            if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conns[fd].rdhup = 1;
            if (conns[fd].ready) continue; /* served from the ready list below */
            /* EPOLLOUT alone (the edge at registration, space freed) has nothing to do unless a send is parked */
            if ((ev & ~EPOLLOUT) || conns[fd].pend) service(fd);
        }
        for (size_t i = 0; i < m; i++) {
            int fd = batch[i];
            if (!conns[fd].ready) continue;
            conns[fd].ready = 0;
            if (fd == lfd) on_accept();
            else service(fd);
        }
    }
}
