"""A workload that prints every signal it receives, one number per line.

Prints ``ready <pid>`` once its handlers are installed. Exits with
``100 + signo`` on the signal given as the first argument (default: none) and
when stdin reaches end of file with 0. The handlers are plain and never
coalesce what Python delivers.
"""

import os
import signal
import sys

stop = int(sys.argv[1]) if len(sys.argv) > 1 else 0


def handler(signo: int, frame: object) -> None:
    os.write(1, f"{signo}\n".encode())
    if signo == stop:
        os._exit(100 + signo)


for sig in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}:
    try:
        signal.signal(sig, handler)
    except (OSError, ValueError):
        pass
os.write(1, f"ready {os.getpid()}\n".encode())
while True:
    signal.pause()
