/*
 * echo.c - the race's reference: the fastest honest single-threaded epoll TCP
 * echo server we could write in plain C (bench/run.py; bench/README.md gives
 * the measurements behind each choice below, against edge-triggering, other
 * read sizes and no TCP_NODELAY).
 *
 *   usage: echo PORT            (binds 127.0.0.1:PORT; PORT 0 = kernel picks,
 *                                the chosen port is printed on stdout)
 *
 * Design:
 *   - one thread, as echod-1 (the race compares it with echod --threads 1);
 *   - level-triggered epoll, non-blocking listener, accept4(SOCK_NONBLOCK),
 *     TCP_NODELAY on every accepted socket;
 *   - one static 256 KiB buffer shared by all connections: on EPOLLIN read
 *     ONCE into it and send the bytes straight back (one send per read: there
 *     is never a second buffer to gather, so writev has nothing to batch; a
 *     socket with more data is reported again by the next epoll_wait, which
 *     also keeps one streaming connection from starving the others);
 *   - a partial write copies the unsent remainder into a per-connection heap
 *     buffer and switches the connection's interest to EPOLLOUT only (so we
 *     stop reading from a peer that does not read: backpressure, bounded
 *     memory, no data loss); when the remainder is flushed, back to EPOLLIN;
 *   - EOF is only ever seen while nothing is pending (we do not read while
 *     pending), so "close on EOF after flushing" falls out of the design;
 *   - per-connection state is one 16-byte slot in a table indexed by fd,
 *     calloc'ed up front to the fd limit (an untouched anonymous mapping)
 *     and written only when a write is partial: an idle connection costs
 *     at most 16 B of user memory, in practice 0 (bench/idle_rss.py);
 *   - EMFILE/ENFILE: the classic reserve-fd trick (close the spare, accept,
 *     close, reopen the spare) so a level-triggered listener cannot spin.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)
#define MAX_EVENTS 256

struct conn {            /* 16 bytes per fd, all zero when idle */
    char *pend;          /* unsent remainder (heap), NULL when none */
    uint32_t len;        /* bytes in pend */
    uint32_t off;        /* bytes of pend already written */
};

static char buf[BUF_SIZE];
static struct conn *conns;
static size_t nconns;
static int epfd, lfd, spare_fd = -1;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static struct conn *slot(int fd) {
    if ((size_t)fd >= nconns) {
        size_t n = nconns ? nconns : 1024;
        while (n <= (size_t)fd) n *= 2;
        struct conn *c = realloc(conns, n * sizeof *c);
        if (!c) return NULL;
        memset(c + nconns, 0, (n - nconns) * sizeof *c);
        conns = c;
        nconns = n;
    }
    return &conns[fd];
}

static void set_interest(int fd, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &e) < 0) die("epoll_ctl MOD");
}

static void drop(int fd) {
    struct conn *c = &conns[fd];
    if (c->pend) { /* slots stay untouched (no RSS) unless a write was ever partial */
        free(c->pend);
        c->pend = NULL;
        c->len = c->off = 0;
    }
    close(fd); /* also removes it from the epoll set */
}

static void on_accept(void) {
    for (int i = 0; i < 64; i++) { /* bounded batch; LT brings us back */
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
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!slot(fd)) { close(fd); continue; }
        struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) { close(fd); continue; }
    }
}

static void on_readable(int fd) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) { drop(fd); return; }                  /* EOF, nothing pending */
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        drop(fd);
        return;
    }
    ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
    if (w == n) return;
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { drop(fd); return; }
        w = 0;
    }
    struct conn *c = &conns[fd];
    c->len = (uint32_t)(n - w);
    c->off = 0;
    c->pend = malloc(c->len);
    if (!c->pend) { drop(fd); return; }
    memcpy(c->pend, buf + w, c->len);
    set_interest(fd, EPOLLOUT);
}

static void on_writable(int fd) {
    struct conn *c = &conns[fd];
    if (!c->pend) { set_interest(fd, EPOLLIN); return; }
    ssize_t w = send(fd, c->pend + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        drop(fd);
        return;
    }
    c->off += (uint32_t)w;
    if (c->off == c->len) {
        free(c->pend);
        c->pend = NULL;
        c->len = c->off = 0;
        set_interest(fd, EPOLLIN);
    }
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
    struct epoll_event e = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &e) < 0) die("epoll_ctl ADD");
    /* Table sized to the fd limit up front: a large calloc is an untouched
     * anonymous mapping, so only slots of fds actually used cost RSS. */
    size_t want = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                   rl.rlim_cur < (1u << 24)) ? (size_t)rl.rlim_cur : 1024;
    if (!(conns = calloc(want, sizeof *conns))) die("calloc");
    nconns = want;

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            uint32_t ev = evs[i].events;
            if (fd == lfd) { on_accept(); continue; }
            if (conns[fd].pend) {
                /* waiting for EPOLLOUT; EPOLLERR/EPOLLHUP make send() fail */
                if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(fd);
            } else if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                on_readable(fd);
            }
        }
    }
}
