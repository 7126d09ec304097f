// The few wrappers that need _GNU_SOURCE declarations, which the Swift side of the module import does not see.
#include "CEchodLinux.h"

int echod_accept4(int fd, struct sockaddr_storage *peer, socklen_t *length, int flags) {
    return accept4(fd, (struct sockaddr *)peer, length, flags);
}

int echod_set_thread_name(pthread_t thread, const char *name) {
    return pthread_setname_np(thread, name);
}

#include <string.h>
#include <sys/mman.h>

ssize_t echod_send_with_rights(int fd, const void *bytes, size_t count, int rights, int flags,
                               const struct sockaddr *address, socklen_t length) {
    struct iovec iov = {.iov_base = (void *)bytes, .iov_len = count};
    struct msghdr message = {
        .msg_name = (void *)address,
        .msg_namelen = address ? length : 0,
        .msg_iov = &iov,
        .msg_iovlen = 1,
    };
    // Aligned as a cmsghdr must be; room for exactly one descriptor.
    union {
        struct cmsghdr header;
        unsigned char bytes[CMSG_SPACE(sizeof(int))];
    } control;
    if (rights >= 0) {
        memset(&control, 0, sizeof control);
        message.msg_control = control.bytes;
        message.msg_controllen = sizeof control.bytes;
        struct cmsghdr *c = CMSG_FIRSTHDR(&message);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &rights, sizeof(int));
    }
    return sendmsg(fd, &message, flags);
}

_Static_assert(ECHOD_SEAL_SEAL == F_SEAL_SEAL && ECHOD_SEAL_SHRINK == F_SEAL_SHRINK &&
                   ECHOD_SEAL_GROW == F_SEAL_GROW && ECHOD_SEAL_WRITE == F_SEAL_WRITE,
               "the seal bits in CEchodLinux.h are the kernel's");

int echod_memfd_create_sealable(const char *name) { return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING); }

int echod_fcntl_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals); }

int echod_fcntl_get_seals(int fd) { return fcntl(fd, F_GET_SEALS); }

// UDP datagram batches: see the header. One allocation holds every array; the payload slab is a separate one
// (count x slot_size, untouched pages cost no memory until a datagram of that size arrives).
#include <stdlib.h>
#include <string.h>

#define ECHOD_CONTROL_SIZE 128

struct echod_dgram_batch {
    unsigned count;
    unsigned slot_size;
    unsigned char *slab;
    struct mmsghdr *received;
    struct iovec *received_iov;
    struct sockaddr_in6 *sources;
    unsigned char (*received_control)[ECHOD_CONTROL_SIZE];
    struct mmsghdr *replies;
    struct iovec *reply_iov;
    unsigned char (*reply_control)[ECHOD_CONTROL_SIZE];
};

struct echod_dgram_batch *echod_dgram_batch_create(unsigned count, unsigned slot_size) {
    struct echod_dgram_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->count = count;
    b->slot_size = slot_size;
    b->slab = calloc(count, slot_size);
    b->received = calloc(count, sizeof *b->received);
    b->received_iov = calloc(count, sizeof *b->received_iov);
    b->sources = calloc(count, sizeof *b->sources);
    b->received_control = calloc(count, ECHOD_CONTROL_SIZE);
    b->replies = calloc(count, sizeof *b->replies);
    b->reply_iov = calloc(count, sizeof *b->reply_iov);
    b->reply_control = calloc(count, ECHOD_CONTROL_SIZE);
    if (!b->slab || !b->received || !b->received_iov || !b->sources || !b->received_control || !b->replies ||
        !b->reply_iov || !b->reply_control) {
        echod_dgram_batch_destroy(b);
        return NULL;
    }
    return b;
}

void echod_dgram_batch_destroy(struct echod_dgram_batch *b) {
    if (!b) return;
    free(b->slab);
    free(b->received);
    free(b->received_iov);
    free(b->sources);
    free(b->received_control);
    free(b->replies);
    free(b->reply_iov);
    free(b->reply_control);
    free(b);
}

int echod_dgram_recv(int fd, struct echod_dgram_batch *b) {
    // The kernel rewrites the lengths and flags of every header it fills: reset them all before each call.
    for (unsigned i = 0; i < b->count; i++) {
        b->received_iov[i].iov_base = b->slab + (size_t)i * b->slot_size;
        b->received_iov[i].iov_len = b->slot_size;
        struct msghdr *m = &b->received[i].msg_hdr;
        m->msg_name = &b->sources[i];
        m->msg_namelen = sizeof b->sources[i];
        m->msg_iov = &b->received_iov[i];
        m->msg_iovlen = 1;
        m->msg_control = b->received_control[i];
        m->msg_controllen = ECHOD_CONTROL_SIZE;
        m->msg_flags = 0;
        b->received[i].msg_len = 0;
    }
    return recvmmsg(fd, b->received, b->count, MSG_DONTWAIT, NULL);
}

void echod_dgram_info(const struct echod_dgram_batch *b, unsigned index, struct echod_dgram_info *info) {
    memset(info, 0, sizeof *info);
    const struct mmsghdr *h = &b->received[index];
    const struct msghdr *m = &h->msg_hdr;
    info->length = h->msg_len;
    info->truncated = (m->msg_flags & MSG_TRUNC) != 0;
    const struct sockaddr *sa = (const struct sockaddr *)&b->sources[index];
    if (m->msg_namelen >= sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        info->family = AF_INET;
        info->port = ntohs(sin->sin_port);
        memcpy(info->source, &sin->sin_addr, 4);
    } else if (m->msg_namelen >= sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        info->family = AF_INET6;
        info->port = ntohs(sin6->sin6_port);
        memcpy(info->source, &sin6->sin6_addr, 16);
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR((struct msghdr *)m, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo p;
            memcpy(&p, CMSG_DATA(c), sizeof p);
            info->has_v4_pktinfo = 1;
            memcpy(info->v4_destination, &p.ipi_addr, 4);
            memcpy(info->v4_local, &p.ipi_spec_dst, 4);
            if (!info->has_v6_pktinfo) info->ifindex = p.ipi_ifindex;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo p;
            memcpy(&p, CMSG_DATA(c), sizeof p);
            info->has_v6_pktinfo = 1;
            memcpy(info->v6_destination, &p.ipi6_addr, 16);
            info->ifindex = (int32_t)p.ipi6_ifindex;
        }
    }
}

const void *echod_dgram_data(const struct echod_dgram_batch *b, unsigned index) {
    return b->slab + (size_t)index * b->slot_size;
}

void echod_dgram_queue_reply(struct echod_dgram_batch *b, unsigned index, unsigned position) {
    const struct msghdr *in = &b->received[index].msg_hdr;
    struct msghdr *out = &b->replies[position].msg_hdr;
    b->reply_iov[position].iov_base = b->received_iov[index].iov_base;
    b->reply_iov[position].iov_len = b->received[index].msg_len;  // the request's own length: never longer
    out->msg_name = &b->sources[index];
    out->msg_namelen = in->msg_namelen;
    out->msg_iov = &b->reply_iov[position];
    out->msg_iovlen = 1;
    out->msg_flags = 0;
    b->replies[position].msg_len = 0;
    // The source of the reply is the address the request was sent to. IPv4: ipi_spec_dst with no interface, so the
    // kernel routes the reply as usual but from that address. IPv6 (and IPv4 on an IPv6 socket): the header
    // destination and the arrival interface (which a link-local address needs).
    unsigned char *control = b->reply_control[position];
    memset(control, 0, ECHOD_CONTROL_SIZE);
    out->msg_control = control;
    out->msg_controllen = ECHOD_CONTROL_SIZE;
    struct cmsghdr *c = CMSG_FIRSTHDR(out);
    size_t used = 0;
    for (struct cmsghdr *r = CMSG_FIRSTHDR(in); r; r = CMSG_NXTHDR((struct msghdr *)in, r)) {
        if (((struct sockaddr *)&b->sources[index])->sa_family == AF_INET && r->cmsg_level == IPPROTO_IP &&
            r->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo received, reply;
            memcpy(&received, CMSG_DATA(r), sizeof received);
            memset(&reply, 0, sizeof reply);
            reply.ipi_spec_dst = received.ipi_spec_dst;
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof reply);
            memcpy(CMSG_DATA(c), &reply, sizeof reply);
            used = CMSG_SPACE(sizeof reply);
            break;
        }
        if (((struct sockaddr *)&b->sources[index])->sa_family == AF_INET6 && r->cmsg_level == IPPROTO_IPV6 &&
            r->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo reply;
            memcpy(&reply, CMSG_DATA(r), sizeof reply);
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof reply);
            memcpy(CMSG_DATA(c), &reply, sizeof reply);
            used = CMSG_SPACE(sizeof reply);
            break;
        }
    }
    out->msg_controllen = used;
    if (used == 0) out->msg_control = NULL;
}

int echod_dgram_send(int fd, struct echod_dgram_batch *b, unsigned first, unsigned count) {
    return sendmmsg(fd, b->replies + first, count - first, MSG_DONTWAIT | MSG_NOSIGNAL);
}

size_t echod_dgram_reply_length(const struct echod_dgram_batch *b, unsigned position) {
    return b->reply_iov[position].iov_len;
}

int echod_peer_credentials(int fd, uint32_t *uid, uint32_t *gid, int32_t *pid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *uid = credentials.uid;
    *gid = credentials.gid;
    *pid = credentials.pid;
    return 0;
}
