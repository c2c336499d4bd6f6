"""A workload whose orphans exit at the very moment it exits.

``reap_race.py OUTCOME K``: double-forks K orphans that wait on a pipe only
the workload holds open, then ends at once: ``OUTCOME`` is an exit code, or
``sig:N`` to kill itself with signal N. Its end closes the pipe, so the K
orphans exit together with it.
"""

import os
import signal
import sys

outcome, count = sys.argv[1], int(sys.argv[2])
read_end, write_end = os.pipe()
for _ in range(count):
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            os.close(write_end)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.read(read_end, 1)
            os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
os.close(read_end)
if outcome.startswith("sig:"):
    signo = int(outcome[4:])
    signal.signal(signo, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signo])
    os.kill(os.getpid(), signo)
os._exit(int(outcome))
