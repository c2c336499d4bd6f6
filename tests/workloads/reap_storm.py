"""A workload that makes a storm of orphans, then waits to exit with a code.

``reap_storm.py N CODE``: forks N children, in batches; each forks a
grandchild and exits at once, and the grandchild exits at once too, so N
orphans (exited or about to) are re-parented to the init. The workload reaps
its own children. Prints ``done SECONDS``, then exits CODE on SIGUSR1.
"""

import os
import signal
import sys
import time

count, code = int(sys.argv[1]), int(sys.argv[2])
BATCH = 250
start = time.monotonic()
made = 0
while made < count:
    kids = []
    for _ in range(min(BATCH, count - made)):
        pid = os.fork()
        if pid == 0:
            try:
                os.fork()
            finally:
                os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    made += len(kids)
signal.signal(signal.SIGUSR1, lambda signo, frame: os._exit(code))
os.write(1, f"done {time.monotonic() - start:.3f}\n".encode())
while True:
    signal.pause()
