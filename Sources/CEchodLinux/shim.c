// The few wrappers that need _GNU_SOURCE declarations, which the Swift side of the module import does not see.
#include "CEchodLinux.h"

int echod_accept4(int fd, struct sockaddr_storage *peer, socklen_t *length, int flags) {
    return accept4(fd, (struct sockaddr *)peer, length, flags);
}

int echod_set_thread_name(pthread_t thread, const char *name) {
    return pthread_setname_np(thread, name);
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
