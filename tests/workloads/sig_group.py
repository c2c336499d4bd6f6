"""A workload with a grandchild in its own process group; both report signals.

The workload (``child``) forks a grandchild that stays in the workload's
process group. Each prints ``child N`` or ``grandchild N`` for every SIGUSR1,
SIGUSR2 and SIGHUP it receives. The line ``ready`` comes once both handlers are
installed. On SIGTERM the child kills the grandchild, reaps it and exits 3.
"""

import os
import signal
import sys
from collections.abc import Callable

REPORTED = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


def reporter(who: str) -> Callable[[int, object], None]:
    def handler(signo: int, frame: object) -> None:
        os.write(1, f"{who} {signo}\n".encode())

    return handler


read_end, write_end = os.pipe()
grandchild = os.fork()
if grandchild == 0:
    for sig in REPORTED:
        signal.signal(sig, reporter("grandchild"))
    os.close(read_end)
    os.write(write_end, b"x")
    os.close(write_end)
    while True:
        signal.pause()

os.close(write_end)
if os.read(read_end, 1) != b"x":
    sys.exit("grandchild did not start")
os.close(read_end)


def stop(signo: int, frame: object) -> None:
    os.kill(grandchild, signal.SIGKILL)
    os.waitpid(grandchild, 0)
    os._exit(3)


for sig in REPORTED:
    signal.signal(sig, reporter("child"))
signal.signal(signal.SIGTERM, stop)
os.write(1, f"ready {os.getpid()} {grandchild}\n".encode())
while True:
    signal.pause()
