/*
 * uring-probe.c - exits 0 when echod's io_uring backend can run on this machine, else says why on stderr and exits
 * 3: the same probe echod runs (echod_uring_probe in Sources/CEchodUring: a ring, a provided buffer ring and a
 * receive into it), so that make test-e2e-uring skips exactly where echod could not serve on io_uring.
 */
#include <stdio.h>
#include <string.h>

#include "CEchodUring.h"

int main(void) {
    const char *step = NULL;
    int ret = echod_uring_probe(&step);
    if (ret == 0) return 0;
    fprintf(stderr, "%s: %s\n", step ? step : "io_uring", strerror(-ret));
    return 3;
}
