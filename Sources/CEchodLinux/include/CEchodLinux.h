// The Linux calls echod needs that Swift's Glibc module does not export: it is built without _GNU_SOURCE and
// does not include these headers. Kept to includes plus a few inline helpers for things Swift cannot express
// (packed struct access, variadic calls).
#ifndef ECHOD_CECHODLINUX_H
#define ECHOD_CECHODLINUX_H

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>
#include <errno.h>
#include <pthread.h>

// epoll_event is packed on x86_64; building it in C avoids any doubt about its layout from Swift.
static inline struct epoll_event echod_epoll_event(uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    return ev;
}

static inline uint64_t echod_epoll_event_data(const struct epoll_event *ev) { return ev->data.u64; }
static inline uint32_t echod_epoll_event_events(const struct epoll_event *ev) { return ev->events; }

// errno as a function: Swift's `errno` works, but reading it through one call keeps the wrappers uniform.
static inline int echod_errno(void) { return errno; }

// fcntl is variadic in C and therefore unavailable in Swift.
static inline int echod_fcntl_getfl(int fd) { return fcntl(fd, F_GETFL); }
static inline int echod_fcntl_setfl(int fd, int flags) { return fcntl(fd, F_SETFL, flags); }

// accept4's address parameter is a transparent union under _GNU_SOURCE, which Swift cannot pass.
// Defined in shim.c, which is compiled with _GNU_SOURCE (the module's header is imported without it).
int echod_accept4(int fd, struct sockaddr_storage *peer, socklen_t *length, int flags);

// SO_PEERCRED's `struct ucred` is declared only under _GNU_SOURCE. Returns 0, or -1 with errno set.
int echod_peer_credentials(int fd, uint32_t *uid, uint32_t *gid, int32_t *pid);

// Names the thread (visible in top -H, /proc/PID/task/TID/comm and perf); Glibc's module lacks it.
int echod_set_thread_name(pthread_t thread, const char *name);

#endif
