/* sigwait [TIMEOUT_MS]
 *
 * Its first instruction reads CLOCK_MONOTONIC; then it blocks SIGUSR1, SIGTERM
 * and SIGINT and prints "R <that time>". Then it waits in sigwaitinfo:
 * SIGUSR1 prints "U <receive time>" and waits again; SIGTERM or SIGINT print
 * "T <receive time>" and exit 0 at once. With TIMEOUT_MS, it exits 3 when no
 * signal came for that long (the early-signal test's "never received"). */
#include "common.h"

int main(int argc, char **argv)
{
    long long t_first = now_ns();
    sigset_t set;
    block_signals(&set);
    long timeout_ms = argc > 1 ? atol(argv[1]) : -1;
    say("R %lld\n", t_first);
    for (;;) {
        int sig = wait_signal(&set, timeout_ms);
        long long t = now_ns();
        if (sig < 0)
            return 3;
        if (sig == SIGUSR1) {
            say("U %lld\n", t);
        } else {
            say("T %lld\n", t);
            return 0;
        }
    }
}
