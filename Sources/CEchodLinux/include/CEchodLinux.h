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

// sendmsg(2) of one buffer, with one descriptor as SCM_RIGHTS when `rights` >= 0 (the CMSG_* accessors are macros).
// `address` may be NULL on a connected socket. Returns what sendmsg returns (-1 with errno).
ssize_t echod_send_with_rights(int fd, const void *bytes, size_t count, int rights, int flags,
                               const struct sockaddr *address, socklen_t length);

// memfd_create(2) and fcntl's file seals are declared only under _GNU_SOURCE. The seal bits are the kernel's
// (shim.c checks them against <fcntl.h> at compile time).
enum { ECHOD_SEAL_SEAL = 1, ECHOD_SEAL_SHRINK = 2, ECHOD_SEAL_GROW = 4, ECHOD_SEAL_WRITE = 8 };
// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING): a descriptor, or -1 with errno.
int echod_memfd_create_sealable(const char *name);
// fcntl(fd, F_ADD_SEALS, seals) and fcntl(fd, F_GET_SEALS): -1 with errno on failure.
int echod_fcntl_add_seals(int fd, int seals);
int echod_fcntl_get_seals(int fd);

// UDP datagram batches (recvmmsg/sendmmsg with IP_PKTINFO/IPV6_PKTINFO). struct mmsghdr and struct in6_pktinfo are
// _GNU_SOURCE-only and the CMSG_* accessors are macros, so the batch is laid out and read in shim.c; Swift sees an
// opaque pointer and a plain struct per datagram. Everything is allocated once, by echod_dgram_batch_create.
struct echod_dgram_batch;

// What one received datagram says about itself. Addresses are in network byte order, 16 bytes (IPv4 in the first 4).
struct echod_dgram_info {
    uint32_t length;      // bytes received (the slot size at most)
    int32_t truncated;    // MSG_TRUNC: the datagram was longer than the slot
    int32_t family;       // AF_INET or AF_INET6 of the source, 0 if the kernel gave none
    uint16_t port;        // source port, host byte order
    uint8_t source[16];
    // IP_PKTINFO (IPv4 sockets, and IPv4 traffic on IPv6 sockets when the kernel delivers it): the header destination
    // (ipi_addr) and the local address a reply would come from (ipi_spec_dst).
    int32_t has_v4_pktinfo;
    uint8_t v4_destination[4];
    uint8_t v4_local[4];
    // IPV6_PKTINFO (IPv6 sockets; IPv4 traffic on them as ::ffff:a.b.c.d): the header destination and the interface.
    int32_t has_v6_pktinfo;
    uint8_t v6_destination[16];
    int32_t ifindex;
};

struct echod_dgram_batch *echod_dgram_batch_create(unsigned count, unsigned slot_size);
void echod_dgram_batch_destroy(struct echod_dgram_batch *batch);
// recvmmsg(MSG_DONTWAIT) into every slot: the number of datagrams, or -1 with errno.
int echod_dgram_recv(int fd, struct echod_dgram_batch *batch);
void echod_dgram_info(const struct echod_dgram_batch *batch, unsigned index, struct echod_dgram_info *info);
// The received bytes of slot `index`.
const void *echod_dgram_data(const struct echod_dgram_batch *batch, unsigned index);
// Queues slot `index`'s datagram, unchanged, as reply number `position` to its source, from the local address it
// arrived at (pktinfo control message).
void echod_dgram_queue_reply(struct echod_dgram_batch *batch, unsigned index, unsigned position);
size_t echod_dgram_reply_length(const struct echod_dgram_batch *batch, unsigned position);
// sendmmsg(MSG_DONTWAIT) of the queued replies [first, count): the number sent, or -1 with errno.
int echod_dgram_send(int fd, struct echod_dgram_batch *batch, unsigned first, unsigned count);

#endif
