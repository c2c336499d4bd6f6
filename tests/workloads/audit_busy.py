"""A workload that records every signal it gets and makes orphans on cue.

``audit_busy.py ORPHANS CODE``: makes ORPHANS orphans (each exits at once and
is re-parented to the init), then prints ``ready <pid>``. Every signal it
receives is printed as its number on a line (SIGPIPE included, so a test can
tell that none arrived). On SIGHUP it makes ORPHANS more orphans and prints
``made N``; on SIGTERM or SIGINT it exits with CODE (after printing the
number).
"""

import os
import signal
import subprocess
import sys

orphans, code = int(sys.argv[1]), int(sys.argv[2])

# A shell subshell that backgrounds a no-op and exits at once: the no-op is
# an orphan of the init. Shell forks are much cheaper than Python's.
MAKER = 'i=0; while [ "$i" -lt "$1" ]; do (: &); i=$((i+1)); done'


def make_orphans() -> None:
    if orphans:
        subprocess.run(["/bin/sh", "-c", MAKER, "sh", str(orphans)], check=True)


def handler(signo: int, frame: object) -> None:
    os.write(1, f"{signo}\n".encode())
    if signo in (signal.SIGTERM, signal.SIGINT):
        os._exit(code)
    if signo == signal.SIGHUP:
        make_orphans()
        os.write(1, f"made {orphans}\n".encode())


for sig in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}:
    try:
        signal.signal(sig, handler)
    except (OSError, ValueError):
        pass
make_orphans()
os.write(1, f"ready {os.getpid()}\n".encode())
while True:
    signal.pause()
