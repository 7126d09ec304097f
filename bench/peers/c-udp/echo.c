/*
 * echo.c - minimal UDP echo server: the "close to the limit" reference of the
 * UDP workloads of the echod race (bench/run.py). A ceiling, not a copy of
 * echod: no guards, no rate limits, no per-source state, no metrics.
 *
 *   usage: udp-echo PORT [THREADS]   (binds 127.0.0.1:PORT; THREADS default 1)
 *
 * Design (the fastest honest thing for request/response datagrams):
 *   - one blocking UDP socket per thread, all bound to the same port with
 *     SO_REUSEPORT (the kernel spreads sources over them by hash), so the
 *     threads share nothing; the race runs it with 1 thread, per core like
 *     echod --threads 1;
 *   - recvmmsg(MSG_WAITFORONE) of up to 64 datagrams: it sleeps until one
 *     arrives and takes whatever else is queued in the same call, then one
 *     sendmmsg sends every datagram back to its source address, unchanged
 *     (the reply is the request: same buffer, same length);
 *   - blocking rather than epoll: with one socket per thread an epoll_wait
 *     would only add a system call per batch;
 *   - a datagram larger than the 64 KiB slot cannot exist (UDP payloads are
 *     at most 65,507 bytes over IPv4), so nothing is truncated.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 65536

static int open_socket(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { perror("socket"); exit(1); }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) { perror("SO_REUSEPORT"); exit(1); }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); exit(1); }
    return fd;
}

static void *serve(void *arg) {
    int fd = (int)(long)arg;
    static __thread struct mmsghdr msgs[BATCH];
    static __thread struct iovec iov[BATCH];
    static __thread struct sockaddr_storage from[BATCH];
    unsigned char *bufs = malloc((size_t)BATCH * SLOT);
    if (!bufs) { perror("malloc"); exit(1); }
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs + (size_t)i * SLOT;
            iov[i].iov_len = SLOT;
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i],
                                              .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("recvmmsg");
            exit(1);
        }
        for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
        int sent = 0;
        while (sent < n) {
            int m = sendmmsg(fd, msgs + sent, (unsigned)(n - sent), 0);
            if (m < 0) {
                if (errno == EINTR) continue;
                sent++; /* e.g. ECONNREFUSED from an earlier ICMP: that datagram is dropped, as UDP does */
                continue;
            }
            sent += m;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: udp-echo PORT [THREADS]\n"); return 2; }
    int port = atoi(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1) threads = 1;
    int first = open_socket(port);
    if (port == 0) { /* the kernel picked: the other threads join that port */
        struct sockaddr_in a;
        socklen_t len = sizeof a;
        getsockname(first, (struct sockaddr *)&a, &len);
        port = ntohs(a.sin_port);
        printf("%d\n", port);
        fflush(stdout);
    }
    for (int t = 1; t < threads; t++) {
        pthread_t th;
        pthread_create(&th, NULL, serve, (void *)(long)open_socket(port));
    }
    serve((void *)(long)first);
    return 0;
}
