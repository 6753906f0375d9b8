/*
 * A slower disk for bench/journal_backends.py --flush-delay-ms: loaded with
 * LD_PRELOAD into PostgreSQL and `redeploy serve`, it makes every fsync and
 * fdatasync wait REDEPLOY_BENCH_FLUSH_DELAY_US microseconds before the real
 * call, as a flush to a disk slower than this machine's would (this one's
 * fdatasync takes about 140 us; a SATA SSD or a network volume takes
 * milliseconds).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void wait_like_a_slow_disk(void) {
    static long delay_us = -1;
    if (delay_us < 0) {
        const char *set = getenv("REDEPLOY_BENCH_FLUSH_DELAY_US");
        delay_us = set ? atol(set) : 0;
    }
    struct timespec t = {delay_us / 1000000, (delay_us % 1000000) * 1000};
    while (nanosleep(&t, &t) != 0) {
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    wait_like_a_slow_disk();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    wait_like_a_slow_disk();
    return real(fd);
}
