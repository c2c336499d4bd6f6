/* burst N
 *
 * Prints "R", answers a first SIGUSR1 with "U" (the init is up and
 * forwarding), and at a second SIGUSR1 forks an intermediate process that
 * forks N children which exit at once. The intermediate does not reap them;
 * once all have exited it prints "B <time>" and exits, so the init under
 * test (PID 1) adopts N zombies at the same moment. This process reaps the
 * intermediate, prints "X <time>" (from then on every zombie is the init's),
 * waits for SIGTERM and exits 0. */
#include <sys/wait.h>

#include "common.h"

static void intermediate(long n)
{
    int fds[2];
    if (pipe(fds) < 0)
        _exit(1);
    long made = 0;
    for (long i = 0; i < n; i++) {
        pid_t child = fork();
        if (child < 0) {
            usleep(1000);
            continue;
        }
        if (child == 0)
            _exit(0); /* the write end closes as it exits */
        made++;
    }
    close(fds[1]);
    char c;
    ssize_t got;
    do {
        got = read(fds[0], &c, 1); /* 0: every child has exited */
    } while (got < 0 && errno == EINTR);
    /* Every child has closed its files; give the last ones a moment to
     * become zombies. */
    usleep(5000);
    say("B %lld %ld\n", now_ns(), made);
    _exit(0);
}

int main(int argc, char **argv)
{
    sigset_t set;
    block_signals(&set);
    long n = argc > 1 ? atol(argv[1]) : 10000;
    say("R %lld\n", now_ns());
    /* The first SIGUSR1 is a ping (the init is up and forwarding), the
     * second one the start. */
    if (wait_signal(&set, -1) != SIGUSR1)
        return 0;
    say("U %lld\n", now_ns());
    if (wait_signal(&set, -1) != SIGUSR1)
        return 0;
    pid_t p = fork();
    if (p == 0)
        intermediate(n);
    if (p > 0) {
        while (waitpid(p, NULL, 0) < 0 && errno == EINTR) {
        }
        /* The intermediate is gone: its zombies now belong to the init. */
        say("X %lld\n", now_ns());
    }
    for (;;) {
        int sig = wait_signal(&set, -1);
        if (sig == SIGTERM || sig == SIGINT || sig < 0)
            return 0;
    }
}
