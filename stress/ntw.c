/*
 * ntw: the stress suite's workload, small and fast (compiled at run time by
 * stress/stress.py into stress/build/ntw; not part of the package).
 *
 * Arguments are key=value words:
 *   out=FD       descriptor of the report lines (default 1)
 *   orphans=N    orphans to make in the storm (double forks: the intermediate
 *                exits, its children are re-parented to the init)
 *   batch=B      orphans per intermediate process (default 8, at most 200)
 *   loop=1       make orphans until "stop" arrives on stdin (ignores orphans=)
 *   cap=C        throttle: while the parent (the init) has C children or more,
 *                wait (default 4000; 0: never). Keeps a lagging init from
 *                filling the PID table of a shared machine; counted.
 *   go=SIG       wait for this signal before the storm (default: start at once)
 *   again=N      after the storm, wait for SIGUSR2 and make N more orphans,
 *                without the throttle (a backlog while the init is stopped)
 *   code=N       exit code on SIGTERM once armed
 *   armed=0|1    1 (default): SIGTERM exits at once; 0: SIGTERM is only
 *                recorded until "arm" arrives on stdin
 *   soak=S       soak: for S seconds (or until "stop"), fork short-lived
 *                children at rate=R per second and daemons (double-forked,
 *                setsid, living 0.1 to 5 s) at drate=D per second
 *   flood=BYTES  write BYTES to stdout and BYTES to stderr during the storm
 *   closeout=1   close stdout and stderr before anything else
 *
 * Report lines (on out=FD):
 *   ready PID
 *   kind SIGNO                  first receipt of each signal kind
 *   storm MADE SECONDS EAGAIN THROTTLES
 *   soak CHILDREN DAEMONS SECONDS
 *   armed
 *   final RECEIVED MASKHEX      on the SIGTERM that ends the run
 * stdin commands: "arm", "stop".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int out_fd = 1;
static int exit_code = 0;
static volatile sig_atomic_t armed = 1;
static volatile sig_atomic_t go_flag = 0;
static int go_signal = 0;
static volatile sig_atomic_t again_flag = 0;
static volatile sig_atomic_t stop_flag = 0;
static volatile unsigned long counts[65];
static volatile unsigned long total_received = 0;
static int stdin_open = 1;

/* ---- async-signal-safe reporting ---- */

static size_t put_num(char *buf, unsigned long long v) {
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    return n;
}

static size_t put_str(char *buf, const char *s) {
    size_t n = strlen(s);
    memcpy(buf, s, n);
    return n;
}

static void emit(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(out_fd, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        buf += w;
        len -= (size_t)w;
    }
}

static void report_kind(int signo) {
    char buf[32];
    size_t n = put_str(buf, "kind ");
    n += put_num(buf + n, (unsigned long long)signo);
    buf[n++] = '\n';
    emit(buf, n);
}

static void report_final(void) {
    char buf[128];
    unsigned long long mask = 0;
    size_t n = put_str(buf, "final ");
    int s;
    n += put_num(buf + n, total_received);
    buf[n++] = ' ';
    for (s = 1; s <= 64; s++)
        if (counts[s]) mask |= 1ULL << (s - 1);
    {
        static const char hex[] = "0123456789abcdef";
        int i;
        for (i = 15; i >= 0; i--) buf[n++] = hex[(mask >> (4 * i)) & 0xf];
    }
    buf[n++] = '\n';
    emit(buf, n);
}

static void on_signal(int signo) {
    int saved = errno;
    if (signo > 0 && signo <= 64) {
        counts[signo]++;
        total_received++;
        if (counts[signo] == 1) report_kind(signo);
    }
    if (signo == go_signal) go_flag = 1;
    if (signo == SIGUSR2) again_flag = 1;
    if (signo == SIGTERM && armed) {
        report_final();
        _exit(exit_code);
    }
    errno = saved;
}

static void install_handlers(void) {
    struct sigaction sa;
    int s;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (s = 1; s <= 64; s++) {
        if (s == SIGKILL || s == SIGSTOP || s == SIGCHLD) continue;
        sigaction(s, &sa, NULL); /* 32 and 33 fail under glibc: fine */
    }
}

/* ---- time ---- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_seconds(double s) {
    struct timespec ts;
    if (s <= 0) return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---- stdin commands ---- */

static char cmd_buf[256];
static size_t cmd_len = 0;

static void check_stdin(int timeout_ms) {
    struct pollfd p;
    if (!stdin_open) {
        if (timeout_ms > 0) sleep_seconds(timeout_ms / 1000.0);
        return;
    }
    p.fd = 0;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, timeout_ms) <= 0) return;
    {
        ssize_t r = read(0, cmd_buf + cmd_len, sizeof cmd_buf - cmd_len - 1);
        char *line, *nl;
        if (r <= 0) {
            if (r == 0 || errno != EINTR) stdin_open = 0;
            return;
        }
        cmd_len += (size_t)r;
        cmd_buf[cmd_len] = 0;
        line = cmd_buf;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = 0;
            if (strcmp(line, "arm") == 0) {
                armed = 1;
                emit("armed\n", 6);
            } else if (strcmp(line, "stop") == 0) {
                stop_flag = 1;
            }
            line = nl + 1;
        }
        cmd_len = strlen(line);
        memmove(cmd_buf, line, cmd_len + 1);
        if (cmd_len >= sizeof cmd_buf - 2) cmd_len = 0;
    }
}

/* ---- the parent's children (the throttle) ---- */

static pid_t parent_pid;

static long parent_children(void) {
    char path[64];
    DIR *dir;
    struct dirent *ent;
    long count = 0;
    static char buf[1 << 16];
    snprintf(path, sizeof path, "/proc/%d/task", (int)parent_pid);
    dir = opendir(path);
    if (dir == NULL) return -1;
    while ((ent = readdir(dir)) != NULL) {
        char file[512];
        int fd, in_word = 0;
        ssize_t r, i;
        if (ent->d_name[0] == '.') continue;
        snprintf(file, sizeof file, "%s/%s/children", path, ent->d_name);
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        while ((r = read(fd, buf, sizeof buf)) > 0) {
            for (i = 0; i < r; i++) {
                if (buf[i] == ' ' || buf[i] == '\n') {
                    in_word = 0;
                } else if (!in_word) {
                    in_word = 1;
                    count++;
                }
            }
        }
        close(fd);
    }
    closedir(dir);
    return count;
}

/* ---- the storm ---- */

static unsigned long eagain_count = 0;
static unsigned long throttle_count = 0;

/* One intermediate that forks `batch` orphans and exits; returns how many. */
static int orphan_batch(int batch) {
    pid_t p;
    int status;
    double give_up = now() + 120;
    for (;;) {
        p = fork();
        if (p >= 0) break;
        if (errno != EAGAIN || now() > give_up) return -1;
        eagain_count++;
        sleep_seconds(0.001);
    }
    if (p == 0) {
        int made = 0, tries = 0;
        while (made < batch && tries < 5000) {
            pid_t g = fork();
            if (g == 0) _exit(0);
            if (g < 0) {
                tries++;
                usleep(1000);
                continue;
            }
            made++;
        }
        _exit(made);
    }
    while (waitpid(p, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (!WIFEXITED(status)) return 0;
    if (WEXITSTATUS(status) < batch) eagain_count += (unsigned long)(batch - WEXITSTATUS(status));
    return WEXITSTATUS(status);
}

static void throttle(long cap) {
    double give_up = now() + 300;
    if (cap <= 0) return;
    for (;;) {
        long kids = parent_children();
        if (kids < 0 || kids < cap) return;
        throttle_count++;
        if (now() > give_up) {
            emit("stuck\n", 6);
            _exit(99);
        }
        sleep_seconds(0.001);
    }
}

static char flood_chunk[65536];

static void flood_some(long long *left) {
    size_t n;
    if (*left <= 0) return;
    n = *left > (long long)sizeof flood_chunk ? sizeof flood_chunk : (size_t)*left;
    /* Errors (a closed or broken stream) are ignored: the flood goes on. */
    if (write(1, flood_chunk, n) < 0) {
    }
    if (write(2, flood_chunk, n) < 0) {
    }
    *left -= (long long)n;
}

static void storm(long orphans, int batch, int loop, long cap, long long flood) {
    char buf[160];
    size_t n;
    long made = 0, rounds = 0;
    double start = now(), took;
    while (loop ? !stop_flag : made < orphans) {
        int b = batch;
        int got;
        if (!loop && orphans - made < b) b = (int)(orphans - made);
        if (rounds % 8 == 0) {
            throttle(cap);
            if (loop) check_stdin(0);
        }
        flood_some(&flood);
        got = orphan_batch(b);
        if (got < 0) break;
        made += got;
        rounds++;
    }
    while (flood > 0) flood_some(&flood);
    took = now() - start;
    n = put_str(buf, "storm ");
    n += put_num(buf + n, (unsigned long long)made);
    buf[n++] = ' ';
    n += put_num(buf + n, (unsigned long long)(took * 1000000));
    buf[n++] = ' ';
    n += put_num(buf + n, eagain_count);
    buf[n++] = ' ';
    n += put_num(buf + n, throttle_count);
    buf[n++] = '\n';
    emit(buf, n);
}

/* ---- the soak ---- */

static void soak(double seconds, double rate, double drate, long cap) {
    char buf[160];
    size_t n;
    unsigned int seed = (unsigned int)getpid();
    unsigned long children = 0, daemons = 0;
    double start = now(), next_child = start, next_daemon = start;
    double tick = 0.005;
    while (!stop_flag && now() - start < seconds) {
        double t = now();
        int status;
        while (waitpid(-1, &status, WNOHANG) > 0) {
        }
        if (rate > 0 && t >= next_child) {
            pid_t p = fork();
            if (p == 0) {
                sleep_seconds((rand_r(&seed) % 50) / 1000.0);
                _exit(rand_r(&seed) % 4);
            }
            if (p > 0) children++;
            next_child += 1.0 / rate;
            if (next_child < t) next_child = t;
        }
        if (drate > 0 && t >= next_daemon) {
            unsigned int life = 100 + rand_r(&seed) % 4900;
            pid_t p;
            throttle(cap);
            p = fork();
            if (p == 0) {
                setsid();
                if (fork() == 0) {
                    sleep_seconds(life / 1000.0);
                    _exit(0);
                }
                _exit(0);
            }
            if (p > 0) {
                while (waitpid(p, &status, 0) < 0 && errno == EINTR) {
                }
                daemons++;
            }
            next_daemon += 1.0 / drate;
            if (next_daemon < t) next_daemon = t;
        }
        check_stdin((int)(tick * 1000));
    }
    {
        int status;
        while (waitpid(-1, &status, 0) > 0 || errno == EINTR) {
        }
    }
    n = put_str(buf, "soak ");
    n += put_num(buf + n, children);
    buf[n++] = ' ';
    n += put_num(buf + n, daemons);
    buf[n++] = ' ';
    n += put_num(buf + n, (unsigned long long)(now() - start));
    buf[n++] = '\n';
    emit(buf, n);
}

int main(int argc, char **argv) {
    long orphans = 0, cap = 4000, again = 0;
    int batch = 8, loop = 0, closeout = 0, i;
    double soak_seconds = 0, rate = 50, drate = 5;
    long long flood = 0;
    char buf[64];
    size_t n;

    for (i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        const char *v;
        if (eq == NULL) {
            fprintf(stderr, "ntw: bad argument %s\n", argv[i]);
            return 64;
        }
        v = eq + 1;
        *eq = 0;
        if (strcmp(argv[i], "out") == 0) out_fd = atoi(v);
        else if (strcmp(argv[i], "orphans") == 0) orphans = atol(v);
        else if (strcmp(argv[i], "batch") == 0) batch = atoi(v);
        else if (strcmp(argv[i], "loop") == 0) loop = atoi(v);
        else if (strcmp(argv[i], "cap") == 0) cap = atol(v);
        else if (strcmp(argv[i], "go") == 0) go_signal = atoi(v);
        else if (strcmp(argv[i], "again") == 0) again = atol(v);
        else if (strcmp(argv[i], "code") == 0) exit_code = atoi(v);
        else if (strcmp(argv[i], "armed") == 0) armed = atoi(v);
        else if (strcmp(argv[i], "soak") == 0) soak_seconds = atof(v);
        else if (strcmp(argv[i], "rate") == 0) rate = atof(v);
        else if (strcmp(argv[i], "drate") == 0) drate = atof(v);
        else if (strcmp(argv[i], "flood") == 0) flood = atoll(v);
        else if (strcmp(argv[i], "closeout") == 0) closeout = atoi(v);
        else {
            fprintf(stderr, "ntw: unknown key %s\n", argv[i]);
            return 64;
        }
    }
    if (batch < 1) batch = 1;
    if (batch > 200) batch = 200;
    memset(flood_chunk, 'x', sizeof flood_chunk);
    flood_chunk[sizeof flood_chunk - 1] = '\n';
    if (closeout) {
        close(1);
        close(2);
    }
    parent_pid = getppid();
    install_handlers();
    n = put_str(buf, "ready ");
    n += put_num(buf + n, (unsigned long long)getpid());
    buf[n++] = '\n';
    emit(buf, n);

    if (go_signal)
        while (!go_flag) check_stdin(50);
    if (orphans > 0 || loop) storm(orphans, batch, loop, cap, flood);
    if (again > 0) {
        while (!again_flag) check_stdin(50);
        storm(again, batch, 0, 0, 0);
    }
    if (soak_seconds > 0) soak(soak_seconds, rate, drate, cap);
    for (;;) check_stdin(1000);
}
