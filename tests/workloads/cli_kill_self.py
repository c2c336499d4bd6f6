"""A workload that kills itself with the signal named by its argument.

The signal is first reset to its default action, so the death is the
kernel's (the init must then exit with 128 + the signal). Exits with 99 if it
somehow survives.
"""

import os
import signal
import sys
import time

signo = signal.Signals[sys.argv[1]]
if signo != signal.SIGKILL:
    signal.signal(signo, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signo])
os.kill(os.getpid(), signo)
time.sleep(5)
os._exit(99)
