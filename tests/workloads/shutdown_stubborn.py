"""A workload that reports SIGTERM and SIGINT and keeps running.

``shutdown_stubborn.py [member]``: with ``member``, first forks a process that
stays in the workload's process group and does the same. Each prints
``workload SIGNO`` or ``member SIGNO`` for every SIGTERM or SIGINT it gets.
Prints ``ready PID [MEMBER_PID]`` once both handlers are in place. Both give
up after 120 s (a safety alarm).
"""

import os
import signal
import sys
from collections.abc import Callable


def reporter(who: str) -> Callable[[int, object], None]:
    def handler(signo: int, frame: object) -> None:
        os.write(1, f"{who} {signo}\n".encode())

    return handler


def stubborn(who: str) -> None:
    signal.alarm(120)
    for signo in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signo, reporter(who))


pids = [os.getpid()]
if sys.argv[1:] == ["member"]:
    ready_r, ready_w = os.pipe()
    member = os.fork()
    if member == 0:
        os.close(ready_r)
        stubborn("member")
        os.close(ready_w)
        while True:
            signal.pause()
    os.close(ready_w)
    os.read(ready_r, 1)  # end of file: the member's handlers are in place
    os.close(ready_r)
    pids.append(member)
stubborn("workload")
os.write(1, f"ready {' '.join(map(str, pids))}\n".encode())
while True:
    signal.pause()
