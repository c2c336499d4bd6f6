"""A workload that leaves orphans behind and lets them exit on cue.

``reap_orphans.py N``: double-forks N orphans (their parents exit at once, so
they are re-parented to the init) that wait on a pipe, prints ``ready``. On
SIGUSR1 it closes the pipe, so every orphan exits at that moment, and prints
``released``; it keeps running. On SIGTERM it exits 7.
"""

import os
import signal
import sys

count = int(sys.argv[1])
read_end, write_end = os.pipe()
for _ in range(count):
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            os.close(write_end)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.read(read_end, 1)  # end of file when the workload lets go
            os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
os.close(read_end)


def release(signo: int, frame: object) -> None:
    global write_end
    if write_end >= 0:
        os.close(write_end)
        write_end = -1
    os.write(1, b"released\n")


signal.signal(signal.SIGUSR1, release)
signal.signal(signal.SIGTERM, lambda signo, frame: os._exit(7))
os.write(1, f"ready {os.getpid()}\n".encode())
while True:
    signal.pause()
