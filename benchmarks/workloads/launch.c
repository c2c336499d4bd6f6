/* launch GATE_FD PROGRAM [ARGS...]
 *
 * Waits for one byte on GATE_FD (so the harness can learn this process's PID
 * and open a pidfd first), prints CLOCK_MONOTONIC in nanoseconds on stdout,
 * and execs PROGRAM in the same process: the printed time is the moment the
 * init under test is exec'd. */
#include "common.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: launch GATE_FD PROGRAM [ARGS...]\n");
        return 2;
    }
    int fd = atoi(argv[1]);
    char c;
    ssize_t n;
    do {
        n = read(fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1)
        return 2; /* the harness gave up before the start */
    close(fd);
    long long t0 = now_ns();
    say("%lld\n", t0);
    execv(argv[2], argv + 2);
    fprintf(stderr, "launch: cannot exec %s: %s\n", argv[2], strerror(errno));
    return 127;
}
