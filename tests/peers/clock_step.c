/* An LD_PRELOAD shim for the end-to-end tests: the monotonic clocks of
 * the process jump forward by the number of milliseconds written in the
 * file named by CLOCK_STEP_FILE (read again at most every 10 ms of real
 * time), as after a suspend and resume, or a virtual machine paused and
 * its clock stepped on. Real time does not move with it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static long long read_offset_ms(void) {
    const char *path = getenv("CLOCK_STEP_FILE");
    if (path == NULL) {
        return 0;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    long long ms = 0;
    if (fscanf(f, "%lld", &ms) != 1) {
        ms = 0;
    }
    fclose(f);
    return ms;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    static clock_gettime_fn real;
    static long long offset_ms;
    static long long checked_ns = -1;
    if (real == NULL) {
        real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    }
    int r = real(id, ts);
    if (r != 0 || (id != CLOCK_MONOTONIC && id != CLOCK_BOOTTIME)) {
        return r;
    }
    long long now_ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec;
    if (checked_ns < 0 || now_ns - checked_ns > 10000000LL) {
        checked_ns = now_ns;
        offset_ms = read_offset_ms();
    }
    long long t = now_ns + offset_ms * 1000000LL;
    ts->tv_sec = t / 1000000000LL;
    ts->tv_nsec = t % 1000000000LL;
    return r;
}
