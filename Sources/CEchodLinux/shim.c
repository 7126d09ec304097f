// The few wrappers that need _GNU_SOURCE declarations, which the Swift side of the module import does not see.
#include "CEchodLinux.h"

int echod_accept4(int fd, struct sockaddr_storage *peer, socklen_t *length, int flags) {
    return accept4(fd, (struct sockaddr *)peer, length, flags);
}

int echod_set_thread_name(pthread_t thread, const char *name) {
    return pthread_setname_np(thread, name);
}
