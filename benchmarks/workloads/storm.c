/* storm N
 *
 * Prints "R", answers a first SIGUSR1 with "U" (the init is up and
 * forwarding), and at a second SIGUSR1 prints "S <time>" and creates N
 * double-forked orphans one after another: a child forks a grandchild and
 * exits at once, the grandchild exits at once, so the init under test
 * (PID 1) adopts and must reap N zombies while the storm goes on. Prints
 * "D <time> <fork failures>" when all are created, then waits for SIGTERM
 * and exits 0. */
#include <sys/wait.h>

#include "common.h"

int main(int argc, char **argv)
{
    sigset_t set;
    block_signals(&set);
    long n = argc > 1 ? atol(argv[1]) : 20000;
    say("R %lld\n", now_ns());
    /* The first SIGUSR1 is a ping (the init is up and forwarding), the
     * second one the start. */
    if (wait_signal(&set, -1) != SIGUSR1)
        return 0;
    say("U %lld\n", now_ns());
    if (wait_signal(&set, -1) != SIGUSR1)
        return 0;
    say("S %lld\n", now_ns());
    long failures = 0;
    for (long i = 0; i < n; i++) {
        pid_t child = fork();
        if (child < 0) {
            failures++;
            usleep(1000);
            i--;
            if (failures > 10000)
                break;
            continue;
        }
        if (child == 0) {
            if (fork() < 0)
                _exit(1);
            _exit(0); /* the grandchild, too, exits at once */
        }
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    say("D %lld %ld\n", now_ns(), failures);
    for (;;) {
        int sig = wait_signal(&set, -1);
        if (sig == SIGTERM || sig == SIGINT || sig < 0)
            return 0;
    }
}
