"""A workload that writes ``USR1`` to the file named by its argument on SIGUSR1.

Prints ``ready <pid>`` once the handler is installed, then waits; exits 0
after writing the marker.
"""

import os
import signal
import sys

marker = sys.argv[1]


def on_usr1(signo: int, frame: object) -> None:
    with open(marker, "w") as handle:
        handle.write("USR1\n")
    os._exit(0)


signal.signal(signal.SIGUSR1, on_usr1)
os.write(1, f"ready {os.getpid()}\n".encode())
while True:
    signal.pause()
