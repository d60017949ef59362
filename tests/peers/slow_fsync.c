/* An LD_PRELOAD shim for the end-to-end tests: fsync and fdatasync sleep
 * SLOW_FSYNC_MS milliseconds (default 1000) while the file named by
 * SLOW_FSYNC_FILE exists, then do the real call. A disk that stalls on
 * flushes (a failing drive, an overloaded SAN), on demand. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void maybe_sleep(void) {
    const char *flag = getenv("SLOW_FSYNC_FILE");
    if (flag == NULL || access(flag, F_OK) != 0) {
        return;
    }
    const char *ms = getenv("SLOW_FSYNC_MS");
    long m = ms ? atol(ms) : 1000;
    struct timespec ts = { m / 1000, (m % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    maybe_sleep();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    maybe_sleep();
    return real(fd);
}
