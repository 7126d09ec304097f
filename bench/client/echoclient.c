/*
 * echoclient.c - independent load client for TCP and UDP echo servers (the echod race).
 *
 *   echoclient HOST:PORT [--connections N] [--size BYTES] [--duration SECS]
 *              [--mode pingpong|stream|connect] [--threads T] [--window BYTES]
 *              [--warmup SECS] [--max-ops N] [--drain-timeout SECS] [--json]
 *              [--udp [--loss-timeout SECS]] [--marks]
 *
 * Modes
 *   pingpong  each connection sends SIZE bytes, waits for the full echo,
 *             verifies every byte, records the round-trip latency, repeats.
 *   stream    each connection keeps up to WINDOW bytes (default 4*SIZE, at
 *             least SIZE) in flight, written in SIZE-byte messages; every echoed
 *             byte is verified; latency = last byte of a message sent -> last
 *             byte of its echo received.
 *   connect   N connectors, each: connect, send SIZE bytes, read the full echo,
 *             verify, close, repeat; latency = connect() start -> echo verified.
 *   --udp     pingpong over N connected UDP sockets, one SIZE-byte datagram in
 *             flight each. A datagram carries its sequence number in its first
 *             min(8, SIZE) bytes (little-endian), then the pattern: a reply is
 *             verified whole, and a late one (its datagram already counted
 *             lost) or a second copy (an error: mismatch) is told from a
 *             corrupt one. A datagram not echoed within --loss-timeout (0.5 s)
 *             counts as "lost" and the socket sends the next one; "late"
 *             counts the replies that came after that.
 *
 * Every byte sent follows a per-connection pattern (a function of the stream
 * offset), so every byte received is checked against what must come back.
 *
 * Bounds: the measurement stops at --duration (after --warmup) or after
 * --max-ops operations, whichever first.  Then a drain phase (bounded by
 * --drain-timeout) stops sending, waits for every in-flight byte to come back
 * and verifies it, half-closes and expects the server to close (EOF) — so a
 * server that loses or withholds data is caught ("lost" / "no_eof" errors).
 *
 * --marks (one thread only) writes the line "measuring" to stderr when the
 * measured interval starts and "draining" when it ends, as they happen: a
 * counter outside (the race's `perf stat` of the server) can then count over
 * the interval whose operations "ops" reports, without the connection set-up,
 * warm-up and drain around it.
 *
 * Output: a human summary, or with --json a single JSON object:
 *   ops, ops_per_sec, ops_all (every op completed, warm-up and drain included:
 *   the divisor for server CPU per message), bytes, mb_per_sec (10^6 bytes/s of echoed payload, one
 *   direction), latency_us {p50,p90,p99,p999,max,mean}, errors {...}.
 * Exit status: 0 ok, 1 errors were seen, 2 usage / setup failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_PINGPONG, M_STREAM, M_CONNECT };

/* ---------- configuration ---------- */
static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static int g_conns = 1, g_size = 64, g_threads = 1, g_json = 0;
static long g_window = 0;
static double g_duration = 10.0, g_warmup = 0.0, g_drain = 3.0;
static long long g_max_ops = 1000000000LL;
static int g_marks = 0;
static enum mode g_mode = M_PINGPONG;
static int g_udp = 0;
static double g_loss = 0.5;

/* ---------- verification pattern ---------- */
/* byte at stream offset o of connection c is pat[(o + c*37) % 251];
 * pat is long enough that any chunk up to PAT_SPAN can be compared in place. */
#define PAT_PERIOD 251
static unsigned char *pat;
static size_t pat_len;

static void pat_init(size_t span) {
    pat_len = span + PAT_PERIOD;
    pat = malloc(pat_len);
    if (!pat) { perror("malloc"); exit(2); }
    for (size_t i = 0; i < pat_len; i++) pat[i] = (unsigned char)((i % PAT_PERIOD) * 97 + 13);
}
static inline const unsigned char *pat_at(uint64_t off, int c) {
    return pat + (size_t)((off + (uint64_t)c * 37) % PAT_PERIOD);
}

/* ---------- time ---------- */
static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------- latency histogram (log-linear, <1% error) ---------- */
#define H_SUB 128 /* values < 128 ns exact; then 64 sub-buckets per power of two */
#define H_BUCKETS (H_SUB + 58 * 64)
struct hist {
    uint64_t n[H_BUCKETS];
    uint64_t count, max, sum;
};
static inline int h_index(uint64_t v) {
    if (v < H_SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6;              /* top 7 bits kept: [64,127] */
    int top = (int)(v >> shift);
    return H_SUB + (shift - 1) * 64 + (top - 64);
}
static inline uint64_t h_value(int i) { /* midpoint of bucket */
    if (i < H_SUB) return (uint64_t)i;
    int shift = (i - H_SUB) / 64 + 1;
    uint64_t top = (uint64_t)((i - H_SUB) % 64 + 64);
    return (top << shift) + ((1ull << shift) >> 1);
}
static inline void h_add(struct hist *h, uint64_t v) {
    int i = h_index(v);
    if (i >= H_BUCKETS) i = H_BUCKETS - 1;
    h->n[i]++;
    h->count++;
    h->sum += v;
    if (v > h->max) h->max = v;
}
static double h_pct(const struct hist *h, double p) {
    if (!h->count) return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (want < 1) want = 1;
    uint64_t acc = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        acc += h->n[i];
        if (acc >= want) {
            uint64_t v = h_value(i);
            return (double)(v > h->max ? h->max : v);
        }
    }
    return (double)h->max;
}

/* ---------- errors ---------- */
enum { E_MISMATCH, E_EARLY_CLOSE, E_RESET, E_CONNECT, E_LOST, E_NO_EOF, E_OTHER, E_N };
static const char *e_names[E_N] = {"mismatch", "early_close", "reset", "connect", "lost", "no_eof", "other"};

/* ---------- per connection ---------- */
struct conn {
    int fd, id;           /* id: pattern seed */
    int state;            /* see below */
    uint64_t sent, recvd; /* stream offsets */
    uint64_t msg_t0;      /* pingpong/connect: start of the current op */
    uint64_t *ts;         /* stream: send timestamps ring, one per message */
    int ts_cap;
    uint32_t events;      /* current epoll interest */
    int done;             /* drained (or failed) */
    uint64_t seq;         /* udp: newest datagram sent */
    uint64_t answered;    /* udp: bit i = datagram seq-1-i was answered */
};
enum { S_CONNECTING, S_SEND, S_RECV, S_HALF_CLOSED };

struct worker {
    pthread_t th;
    int idx, epfd, nconn, first_id;
    struct conn *c;
    unsigned char *rbuf;
    size_t rbuf_len;
    unsigned char *sbuf; /* udp: the datagram being built */
    uint64_t late;       /* udp: replies after their datagram was counted lost */
    struct hist h;
    uint64_t ops, bytes, err[E_N];
    uint64_t t_start, t_end; /* measured interval */
    int measuring;
    long long ops_total; /* incl. warmup, for --max-ops */
    int setup_failed;
};

static void set_ev(struct worker *w, struct conn *c, uint32_t ev) {
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

static void count_err(struct worker *w, int e) { w->err[e]++; }

static int open_socket(int nonblock_connect, int *in_progress) {
    int fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *in_progress = 0;
    if (connect(fd, (struct sockaddr *)&g_addr, g_addrlen) < 0) {
        if (errno != EINPROGRESS) { close(fd); return -1; }
        *in_progress = 1;
    }
    (void)nonblock_connect;
    return fd;
}

/* blocking-with-timeout connect used for the long-lived modes */
static int connect_wait(int timeout_ms) {
    int inprog;
    int fd = open_socket(1, &inprog);
    if (fd < 0) return -1;
    if (inprog) {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event e = {.events = EPOLLOUT, .data.fd = fd}, out;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        int n = epoll_wait(ep, &out, 1, timeout_ms);
        close(ep);
        int err = 0;
        socklen_t l = sizeof err;
        if (n != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* ---- send helpers: write as much of the pattern as allowed ---- */
/* returns bytes written (>=0), or -1 on hard error, 0 with EAGAIN */
static ssize_t send_pattern(struct conn *c, size_t len) {
    ssize_t w = send(c->fd, pat_at(c->sent, c->id), len, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        return -1;
    }
    c->sent += (uint64_t)w;
    return w;
}

static void fail_conn(struct worker *w, struct conn *c, int e) {
    if (e >= 0) count_err(w, e);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->done = 1;
}

/* read what is available, verify; returns bytes read, 0 on EAGAIN, -1 EOF, -2 error */
static ssize_t recv_verify(struct worker *w, struct conn *c, size_t maxlen) {
    if (maxlen > w->rbuf_len) maxlen = w->rbuf_len;
    ssize_t n = recv(c->fd, w->rbuf, maxlen, 0);
    if (n == 0) return -1;
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        return -2;
    }
    if (memcmp(w->rbuf, pat_at(c->recvd, c->id), (size_t)n) != 0) return -3;
    c->recvd += (uint64_t)n;
    return n;
}

static void op_done(struct worker *w, uint64_t lat, uint64_t bytes) {
    w->ops_total++;
    if (!w->measuring) return;
    w->ops++;
    w->bytes += bytes;
    h_add(&w->h, lat);
}

/* --- pingpong: S_SEND (waiting for EPOLLOUT to finish sending) / S_RECV --- */
static void pp_start(struct worker *w, struct conn *c) {
    c->msg_t0 = now_ns();
    c->state = S_SEND;
    ssize_t r = send_pattern(c, (size_t)g_size);
    if (r < 0) { fail_conn(w, c, errno == ECONNRESET || errno == EPIPE ? E_RESET : E_OTHER); return; }
    if (c->sent % (uint64_t)g_size == 0) { c->state = S_RECV; set_ev(w, c, EPOLLIN); }
    else set_ev(w, c, EPOLLOUT);
}

static void pp_event(struct worker *w, struct conn *c, uint32_t ev, int sending) {
    if (c->state == S_SEND) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        size_t left = (size_t)g_size - (size_t)(c->sent % (uint64_t)g_size);
        ssize_t r = send_pattern(c, left);
        if (r < 0) { fail_conn(w, c, errno == ECONNRESET || errno == EPIPE ? E_RESET : E_OTHER); return; }
        if (c->sent % (uint64_t)g_size == 0) { c->state = S_RECV; set_ev(w, c, EPOLLIN); }
        return;
    }
    if (c->state == S_RECV) {
        size_t want = (size_t)(c->sent - c->recvd);
        ssize_t n = recv_verify(w, c, want);
        if (n == 0) return;
        if (n == -1) { fail_conn(w, c, E_EARLY_CLOSE); return; }
        if (n == -2) { fail_conn(w, c, errno == ECONNRESET ? E_RESET : E_OTHER); return; }
        if (n == -3) { fail_conn(w, c, E_MISMATCH); return; }
        if (c->recvd == c->sent) {
            op_done(w, now_ns() - c->msg_t0, (uint64_t)g_size);
            if (sending) pp_start(w, c);
            else { /* drain: half-close and wait for EOF */
                shutdown(c->fd, SHUT_WR);
                c->state = S_HALF_CLOSED;
                set_ev(w, c, EPOLLIN);
            }
        }
        return;
    }
}

/* --- udp pingpong: S_RECV while a datagram is in flight --- */
static int udp_seq_bytes(void) { return g_size < 8 ? g_size : 8; }

static int udp_body_ok(struct worker *w, struct conn *c, uint64_t seq) {
    int k = udp_seq_bytes();
    return memcmp(w->rbuf + k, pat_at(seq * (uint64_t)g_size + (uint64_t)k, c->id), (size_t)(g_size - k)) == 0;
}

static void udp_send(struct worker *w, struct conn *c) {
    int k = udp_seq_bytes();
    c->seq++;
    uint64_t v = c->seq;
    for (int i = 0; i < k; i++) w->sbuf[i] = (unsigned char)(v >> (8 * i));
    memcpy(w->sbuf + k, pat_at(c->seq * (uint64_t)g_size + (uint64_t)k, c->id), (size_t)(g_size - k));
    c->msg_t0 = now_ns();
    c->state = S_RECV;
    if (send(c->fd, w->sbuf, (size_t)g_size, 0) < 0 && errno != EAGAIN && errno != EINTR)
        fail_conn(w, c, errno == ECONNREFUSED ? E_CONNECT : E_OTHER); /* EAGAIN: dropped, the loss check counts it */
}

static void udp_next(struct worker *w, struct conn *c, int sending) {
    c->state = S_SEND;
    if (sending) udp_send(w, c);
    else c->done = 1;
}

static void udp_event(struct worker *w, struct conn *c, int sending) {
    int k = udp_seq_bytes();
    uint64_t mask = k == 8 ? UINT64_MAX : (((uint64_t)1 << (8 * k)) - 1);
    for (int reads = 0; reads < 8 && !c->done; reads++) {
        ssize_t n = recv(c->fd, w->rbuf, w->rbuf_len, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            fail_conn(w, c, errno == ECONNREFUSED ? E_CONNECT : E_OTHER);
            return;
        }
        uint64_t v = 0;
        for (int i = 0; i < k && i < n; i++) v |= (uint64_t)w->rbuf[i] << (8 * i);
        uint64_t age = (c->seq - v) & mask;
        int in_flight = c->state == S_RECV;
        if (age == 0 && in_flight) {
            c->answered = c->answered << 1 | 1;
            if (n != g_size || !udp_body_ok(w, c, c->seq)) count_err(w, E_MISMATCH);
            else op_done(w, now_ns() - c->msg_t0, (uint64_t)g_size);
            udp_next(w, c, sending);
            continue;
        }
        uint64_t back = in_flight ? age : age + 1; /* 1: the previous datagram, bit 0 of answered */
        if (n != g_size || age >= c->seq || back < 1 || back > 64 || !udp_body_ok(w, c, c->seq - age)) {
            count_err(w, E_MISMATCH);
        } else if (c->answered & ((uint64_t)1 << (back - 1))) {
            count_err(w, E_MISMATCH); /* a second echo of one datagram */
        } else {
            c->answered |= (uint64_t)1 << (back - 1);
            w->late++;
        }
    }
}

static void udp_check_loss(struct worker *w, uint64_t now, int sending) {
    uint64_t limit = (uint64_t)(g_loss * 1e9);
    for (int i = 0; i < w->nconn; i++) {
        struct conn *c = &w->c[i];
        if (c->done || c->fd < 0 || c->state != S_RECV || now - c->msg_t0 < limit) continue;
        count_err(w, E_LOST);
        c->answered <<= 1;
        udp_next(w, c, sending);
    }
}

/* --- stream: EPOLLIN always; EPOLLOUT while we have window and hit EAGAIN --- */
static void st_fill(struct worker *w, struct conn *c) {
    for (;;) {
        uint64_t inflight = c->sent - c->recvd;
        if (inflight >= (uint64_t)g_window) { set_ev(w, c, EPOLLIN); return; }
        size_t room = (size_t)((uint64_t)g_window - inflight);
        size_t msg_left = (size_t)g_size - (size_t)(c->sent % (uint64_t)g_size);
        size_t len = room < msg_left ? room : msg_left;
        ssize_t r = send_pattern(c, len);
        if (r < 0) { fail_conn(w, c, errno == ECONNRESET || errno == EPIPE ? E_RESET : E_OTHER); return; }
        if (r == 0) { set_ev(w, c, EPOLLIN | EPOLLOUT); return; }
        if (c->sent % (uint64_t)g_size == 0) {
            uint64_t m = c->sent / (uint64_t)g_size - 1;
            c->ts[m % (uint64_t)c->ts_cap] = now_ns();
        }
    }
}

static void st_event(struct worker *w, struct conn *c, uint32_t ev, int sending) {
    if (c->state == S_HALF_CLOSED) return;
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        for (int k = 0; k < 4; k++) { /* bounded reads per event */
            size_t want = (size_t)(c->sent - c->recvd);
            if (!want) {
                /* nothing expected: any byte or EOF now is an error */
                ssize_t n = recv(c->fd, w->rbuf, 1, MSG_PEEK);
                if (n == 0) { fail_conn(w, c, E_EARLY_CLOSE); return; }
                if (n > 0) { fail_conn(w, c, E_MISMATCH); return; }
                break;
            }
            uint64_t before = c->recvd;
            ssize_t n = recv_verify(w, c, want);
            if (n == 0) break;
            if (n == -1) { fail_conn(w, c, E_EARLY_CLOSE); return; }
            if (n == -2) { fail_conn(w, c, errno == ECONNRESET ? E_RESET : E_OTHER); return; }
            if (n == -3) { fail_conn(w, c, E_MISMATCH); return; }
            uint64_t m0 = before / (uint64_t)g_size, m1 = c->recvd / (uint64_t)g_size;
            if (m1 > m0) {
                uint64_t t = now_ns();
                for (uint64_t m = m0; m < m1; m++)
                    op_done(w, t - c->ts[m % (uint64_t)c->ts_cap], (uint64_t)g_size);
            }
        }
    }
    if (sending) st_fill(w, c);
    else if (c->sent == c->recvd) {
        shutdown(c->fd, SHUT_WR);
        c->state = S_HALF_CLOSED;
        set_ev(w, c, EPOLLIN);
    } else set_ev(w, c, EPOLLIN);
}

/* --- connect mode --- */
static void cn_start(struct worker *w, struct conn *c) {
    int inprog;
    c->msg_t0 = now_ns();
    c->sent = c->recvd = 0;
    c->fd = open_socket(1, &inprog);
    if (c->fd < 0) { count_err(w, E_CONNECT); c->done = 0; c->fd = -1; c->state = S_CONNECTING; return; }
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    c->events = EPOLLOUT;
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &e);
    c->state = S_CONNECTING;
    if (!inprog) {
        c->state = S_SEND;
    }
}

static void cn_close(struct worker *w, struct conn *c) {
    (void)w;
    close(c->fd);
    c->fd = -1;
}

static void cn_event(struct worker *w, struct conn *c, uint32_t ev, int sending) {
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            count_err(w, E_CONNECT);
            cn_close(w, c);
            if (sending) cn_start(w, c); else c->done = 1;
            return;
        }
        c->state = S_SEND;
    }
    if (c->state == S_SEND) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        ssize_t r = send_pattern(c, (size_t)g_size - (size_t)c->sent);
        if (r < 0) { count_err(w, errno == ECONNRESET || errno == EPIPE ? E_RESET : E_OTHER); goto next; }
        if (c->sent == (uint64_t)g_size) { c->state = S_RECV; set_ev(w, c, EPOLLIN); }
        return;
    }
    if (c->state == S_RECV) {
        ssize_t n = recv_verify(w, c, (size_t)(c->sent - c->recvd));
        if (n == 0) return;
        if (n == -1) { count_err(w, E_EARLY_CLOSE); goto next; }
        if (n == -2) { count_err(w, errno == ECONNRESET ? E_RESET : E_OTHER); goto next; }
        if (n == -3) { count_err(w, E_MISMATCH); goto next; }
        if (c->recvd == c->sent) {
            op_done(w, now_ns() - c->msg_t0, (uint64_t)g_size);
            goto next;
        }
        return;
    }
    return;
next:
    cn_close(w, c);
    if (sending) cn_start(w, c); else c->done = 1;
}

/* --marks: a line on stderr, unbuffered, at the moment the measured interval starts or ends. */
static void mark(const char *line) {
    if (g_marks && write(STDERR_FILENO, line, strlen(line)) < 0) g_marks = 0;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->rbuf_len = 256 * 1024;
    w->rbuf = malloc(w->rbuf_len);
    w->c = calloc((size_t)w->nconn, sizeof *w->c);
    w->sbuf = malloc((size_t)g_size);
    if (w->epfd < 0 || !w->rbuf || !w->c || !w->sbuf) { w->setup_failed = 1; return NULL; }

    for (int i = 0; i < w->nconn; i++) {
        struct conn *c = &w->c[i];
        c->id = w->first_id + i;
        c->fd = -1;
        if (g_mode == M_STREAM) {
            c->ts_cap = (int)(g_window / g_size) + 2;
            c->ts = calloc((size_t)c->ts_cap, sizeof *c->ts);
        }
        if (g_mode == M_CONNECT) continue;
        if (g_udp) {
            c->fd = socket(g_addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (c->fd >= 0 && connect(c->fd, (struct sockaddr *)&g_addr, g_addrlen) < 0) { close(c->fd); c->fd = -1; }
        } else
            c->fd = connect_wait(5000);
        if (c->fd < 0) { count_err(w, E_CONNECT); w->setup_failed = 1; return NULL; }
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        c->events = EPOLLIN;
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &e);
    }

    uint64_t t0 = now_ns();
    uint64_t t_meas = t0 + (uint64_t)(g_warmup * 1e9);
    uint64_t t_stop = t_meas + (uint64_t)(g_duration * 1e9);
    long long max_ops_thread = g_max_ops / g_threads + 1;
    w->measuring = (g_warmup <= 0);
    if (w->measuring) {
        w->t_start = t0;
        mark("measuring\n");
    }

    for (int i = 0; i < w->nconn; i++) {
        struct conn *c = &w->c[i];
        if (g_udp) udp_send(w, c);
        else if (g_mode == M_PINGPONG) pp_start(w, c);
        else if (g_mode == M_STREAM) st_fill(w, c);
        else cn_start(w, c);
    }

    struct epoll_event evs[256];
    int sending = 1;
    uint64_t drain_deadline = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (sending && !w->measuring && t >= t_meas) {
            w->measuring = 1;
            w->t_start = t;
            mark("measuring\n");
        }
        if (sending && (t >= t_stop || w->ops >= (uint64_t)max_ops_thread)) {
            sending = 0;
            w->t_end = t;
            w->measuring = 0;
            mark("draining\n");
            drain_deadline = t + (uint64_t)(g_drain * 1e9);
            /* connections idle between ops start draining now */
            for (int i = 0; i < w->nconn; i++) {
                struct conn *c = &w->c[i];
                if (c->done) continue;
                if (g_mode == M_CONNECT) {
                    if (c->fd < 0) c->done = 1;
                } else if (g_mode == M_STREAM) {
                    if (c->sent == c->recvd) {
                        shutdown(c->fd, SHUT_WR);
                        c->state = S_HALF_CLOSED;
                        set_ev(w, c, EPOLLIN);
                    } else set_ev(w, c, EPOLLIN);
                }
            }
        }
        if (!sending) {
            int left = 0;
            for (int i = 0; i < w->nconn; i++) left += !w->c[i].done;
            if (!left) break;
            if (t >= drain_deadline) {
                for (int i = 0; i < w->nconn; i++) {
                    struct conn *c = &w->c[i];
                    if (c->done) continue;
                    fail_conn(w, c, c->state == S_HALF_CLOSED ? E_NO_EOF : E_LOST);
                }
                break;
            }
        }
        if (g_udp) udp_check_loss(w, t, sending);
        int n = epoll_wait(w->epfd, evs, 256, g_udp ? 5 : 50);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->done || c->fd < 0) continue;
            if (c->state == S_HALF_CLOSED) {
                ssize_t r = recv(c->fd, w->rbuf, w->rbuf_len, 0);
                if (r == 0) { close(c->fd); c->fd = -1; c->done = 1; }
                else if (r > 0) fail_conn(w, c, E_MISMATCH);          /* unexpected extra bytes */
                else if (errno != EAGAIN && errno != EINTR) fail_conn(w, c, errno == ECONNRESET ? E_RESET : E_OTHER);
                continue;
            }
            if (g_udp) udp_event(w, c, sending);
            else if (g_mode == M_PINGPONG) pp_event(w, c, evs[i].events, sending);
            else if (g_mode == M_STREAM) st_event(w, c, evs[i].events, sending);
            else cn_event(w, c, evs[i].events, sending);
        }
        if (g_mode == M_CONNECT && sending) {
            /* connectors whose socket() failed (e.g. EMFILE/EADDRNOTAVAIL) retry here, paced by epoll timeout */
            for (int i = 0; i < w->nconn; i++)
                if (w->c[i].fd < 0 && !w->c[i].done) cn_start(w, &w->c[i]);
        }
    }
    for (int i = 0; i < w->nconn; i++)
        if (w->c[i].fd >= 0) close(w->c[i].fd);
    if (!w->t_end) w->t_end = now_ns();
    return NULL;
}

static double parse_secs(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (*end == 'm' && end[1] == 's') v /= 1000.0;
    else if (*end == 'm') v *= 60.0;
    return v;
}

static long parse_bytes(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (*end == 'k' || *end == 'K') v *= 1024;
    else if (*end == 'm' || *end == 'M') v *= 1024 * 1024;
    return (long)v;
}

static void usage(void) {
    fprintf(stderr,
            "usage: echoclient HOST:PORT [--connections N] [--size BYTES] [--duration SECS]\n"
            "                  [--mode pingpong|stream|connect] [--threads T] [--window BYTES]\n"
            "                  [--warmup SECS] [--max-ops N] [--drain-timeout SECS] [--json]\n"
            "                  [--udp [--loss-timeout SECS]]   (udp: pingpong only, SIZE <= 65507)\n"
            "                  [--marks]   (\"measuring\"/\"draining\" on stderr; one thread only)\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *target = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
        if (!strcmp(a, "--connections") || !strcmp(a, "-c")) g_conns = atoi(NEXT());
        else if (!strcmp(a, "--size") || !strcmp(a, "-s")) g_size = (int)parse_bytes(NEXT());
        else if (!strcmp(a, "--duration") || !strcmp(a, "-d")) g_duration = parse_secs(NEXT());
        else if (!strcmp(a, "--warmup")) g_warmup = parse_secs(NEXT());
        else if (!strcmp(a, "--drain-timeout")) g_drain = parse_secs(NEXT());
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) g_threads = atoi(NEXT());
        else if (!strcmp(a, "--window")) g_window = parse_bytes(NEXT());
        else if (!strcmp(a, "--max-ops")) g_max_ops = atoll(NEXT());
        else if (!strcmp(a, "--json")) g_json = 1;
        else if (!strcmp(a, "--marks")) g_marks = 1;
        else if (!strcmp(a, "--udp")) g_udp = 1;
        else if (!strcmp(a, "--loss-timeout")) g_loss = parse_secs(NEXT());
        else if (!strcmp(a, "--mode") || !strcmp(a, "-m")) {
            const char *m = NEXT();
            if (!strcmp(m, "pingpong")) g_mode = M_PINGPONG;
            else if (!strcmp(m, "stream")) g_mode = M_STREAM;
            else if (!strcmp(m, "connect")) g_mode = M_CONNECT;
            else usage();
        } else if (a[0] == '-') usage();
        else target = a;
    }
    if (!target || g_conns < 1 || g_size < 1 || g_threads < 1 || g_duration <= 0) usage();
    if (g_udp && (g_mode != M_PINGPONG || g_size > 65507 || g_loss <= 0)) usage();
    if (g_threads > g_conns) g_threads = g_conns;
    if (g_marks && g_threads > 1) usage(); /* one measured interval: one thread's */
    if (g_window <= 0) g_window = 4L * g_size;
    if (g_window < g_size) g_window = g_size;

    /* HOST:PORT, [v6]:PORT */
    char host[256];
    const char *colon = strrchr(target, ':');
    if (!colon) usage();
    size_t hl = (size_t)(colon - target);
    if (hl >= sizeof host) usage();
    memcpy(host, target, hl);
    host[hl] = 0;
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    struct addrinfo hints = {.ai_socktype = g_udp ? SOCK_DGRAM : SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) { fprintf(stderr, "bad address %s\n", target); return 2; }
    memcpy(&g_addr, ai->ai_addr, ai->ai_addrlen);
    g_addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }

    size_t span = (size_t)(g_window > 256 * 1024 ? g_window : 256 * 1024);
    pat_init(span);

    struct worker *ws = calloc((size_t)g_threads, sizeof *ws);
    int per = g_conns / g_threads, extra = g_conns % g_threads, id = 0;
    for (int t = 0; t < g_threads; t++) {
        ws[t].idx = t;
        ws[t].nconn = per + (t < extra);
        ws[t].first_id = id;
        id += ws[t].nconn;
        if (pthread_create(&ws[t].th, NULL, worker_main, &ws[t]) != 0) { perror("pthread_create"); return 2; }
    }
    struct hist *h = calloc(1, sizeof *h);
    uint64_t ops = 0, ops_all = 0, bytes = 0, err[E_N] = {0}, t_start = UINT64_MAX, t_end = 0, late = 0;
    int setup_failed = 0;
    for (int t = 0; t < g_threads; t++) {
        pthread_join(ws[t].th, NULL);
        struct worker *w = &ws[t];
        setup_failed |= w->setup_failed;
        ops += w->ops;
        ops_all += (uint64_t)w->ops_total;
        bytes += w->bytes;
        late += w->late;
        for (int e = 0; e < E_N; e++) err[e] += w->err[e];
        for (int i = 0; i < H_BUCKETS; i++) h->n[i] += w->h.n[i];
        h->count += w->h.count;
        h->sum += w->h.sum;
        if (w->h.max > h->max) h->max = w->h.max;
        if (w->t_start && w->t_start < t_start) t_start = w->t_start;
        if (w->t_end > t_end) t_end = w->t_end;
    }
    double secs = (t_start != UINT64_MAX && t_end > t_start) ? (double)(t_end - t_start) / 1e9 : 0;
    uint64_t etot = 0;
    for (int e = 0; e < E_N; e++) etot += err[e];
    const char *mname = g_mode == M_PINGPONG ? "pingpong" : g_mode == M_STREAM ? "stream" : "connect";
    double ops_s = secs > 0 ? (double)ops / secs : 0;
    double mb_s = secs > 0 ? (double)bytes / secs / 1e6 : 0;
    double p50 = h_pct(h, 50) / 1e3, p90 = h_pct(h, 90) / 1e3, p99 = h_pct(h, 99) / 1e3,
           p999 = h_pct(h, 99.9) / 1e3, mx = (double)h->max / 1e3,
           mean = h->count ? (double)h->sum / (double)h->count / 1e3 : 0;
    if (g_json) {
        printf("{\"client\":\"echoclient\",\"target\":\"%s\",\"mode\":\"%s\",\"connections\":%d,\"size\":%d,"
               "\"threads\":%d,\"window\":%ld,\"duration_s\":%.6f,\"ops\":%llu,\"ops_per_sec\":%.1f,"
               "\"ops_all\":%llu,\"bytes\":%llu,\"mb_per_sec\":%.3f,"
               "\"latency_us\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f,\"mean\":%.2f},"
               "\"errors\":{",
               target, mname, g_conns, g_size, g_threads, g_mode == M_STREAM ? g_window : 0L, secs,
               (unsigned long long)ops, ops_s, (unsigned long long)ops_all, (unsigned long long)bytes, mb_s, p50, p90, p99, p999, mx, mean);
        for (int e = 0; e < E_N; e++) printf("%s\"%s\":%llu", e ? "," : "", e_names[e], (unsigned long long)err[e]);
        printf("},\"errors_total\":%llu,\"transport\":\"%s\",\"late\":%llu,\"setup_failed\":%s}\n", (unsigned long long)etot,
               g_udp ? "udp" : "tcp", (unsigned long long)late, setup_failed ? "true" : "false");
    } else {
        printf("%s %s: %d conns, %d B, %.2f s: %llu ops, %.0f ops/s, %.2f MB/s\n", target, mname, g_conns, g_size,
               secs, (unsigned long long)ops, ops_s, mb_s);
        printf("latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n", p50, p90, p99, p999, mx,
               mean);
        printf("errors: %llu (", (unsigned long long)etot);
        for (int e = 0; e < E_N; e++) printf("%s%s %llu", e ? ", " : "", e_names[e], (unsigned long long)err[e]);
        printf(")%s\n", setup_failed ? "  SETUP FAILED" : "");
        if (g_udp) printf("udp: %llu datagrams lost, %llu replies late\n", (unsigned long long)err[E_LOST], (unsigned long long)late);
    }
    return setup_failed ? 2 : (etot ? 1 : 0);
}
