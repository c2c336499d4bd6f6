"""A workload that takes its time to exit on SIGTERM.

``shutdown_slow_term.py SECONDS CODE``: on the first SIGTERM, ignores the next
ones, prints ``term``, sleeps SECONDS and exits CODE. Prints ``ready PID``
once the handler is in place; gives up after 120 s (a safety alarm).
"""

import os
import signal
import sys
import time

seconds, code = float(sys.argv[1]), int(sys.argv[2])


def on_term(signo: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.write(1, b"term\n")
    time.sleep(seconds)
    os._exit(code)


signal.alarm(120)
signal.signal(signal.SIGTERM, on_term)
os.write(1, f"ready {os.getpid()}\n".encode())
while True:
    signal.pause()
