"""A workload that leaves orphans to the init, deterministically.

``cli_orphan.py [COUNT [HOLD]]``: forks an intermediate process that forks
COUNT (default 1) children and exits. Each child waits until the
intermediate has exited (end of file on a pipe only the intermediate held),
so it is an orphan of the init whatever the timing; it then lives HOLD more
seconds (default 0) with its output on /dev/null, and exits 0.

The workload prints the orphans' PIDs on one line once the intermediate is
gone, then waits for end of file on stdin and exits 0.
"""

import os
import sys
import time

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
hold = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0

held_r, held_w = os.pipe()
pids_r, pids_w = os.pipe()
intermediate = os.fork()
if intermediate == 0:
    os.close(pids_r)
    orphans = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os.close(held_w)
            os.close(pids_w)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.read(held_r, 1)  # end of file: the intermediate has exited
            time.sleep(hold)
            os._exit(0)
        orphans.append(pid)
    os.write(pids_w, " ".join(map(str, orphans)).encode())
    os._exit(0)
os.close(held_r)
os.close(held_w)
os.close(pids_w)
os.waitpid(intermediate, 0)
line = b""
while chunk := os.read(pids_r, 4096):
    line += chunk
os.write(1, line + b"\n")
sys.stdin.read()
