"""A parent for the init: starts the command of its arguments and waits.

Prints ``init <pid>`` (the child's PID), then sleeps until killed. It execs
nothing, so killing it is the death of the init's parent.
"""

import os
import subprocess
import sys
import time

child = subprocess.Popen(sys.argv[1:])
os.write(1, f"init {child.pid}\n".encode())
time.sleep(60)
