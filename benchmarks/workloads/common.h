/* Shared helpers of the benchmark workloads: a monotonic clock in
 * nanoseconds and an unbuffered line writer (stdout is a pipe that the
 * harness reads line by line). */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One write(2) per line, so that lines of different processes never mix. */
static inline void say(const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof buf)
        len = sizeof buf - 1;
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(1, p, (size_t)len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += n;
        len -= (int)n;
    }
}

/* Block the signals the harness uses, so they queue for sigwaitinfo. */
static inline void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigprocmask(SIG_BLOCK, set, NULL);
}

/* Wait for one of the blocked signals; -1 on timeout (timeout_ms < 0: never). */
static inline int wait_signal(const sigset_t *set, long timeout_ms)
{
    for (;;) {
        int sig;
        if (timeout_ms < 0) {
            sig = sigwaitinfo(set, NULL);
        } else {
            struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
            sig = sigtimedwait(set, NULL, &ts);
        }
        if (sig >= 0)
            return sig;
        if (errno == EAGAIN)
            return -1;
        if (errno != EINTR)
            return -1;
    }
}

#endif
