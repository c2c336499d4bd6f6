"""Run a command as a background job of a terminal, like ``cmd &`` in a shell.

Usage: ``sig_bg_launch.py -- COMMAND [ARGS...]``, with the terminal on fd 0.
This process must lead a new session: it makes the terminal its controlling
one (its own group in the foreground), forks the command into a new process
group (the background), waits for it and exits with its status. It prints
nothing; the foreground group stays this process's.
"""

import fcntl
import os
import sys
import termios

command = sys.argv[sys.argv.index("--") + 1 :]
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.execvp(command[0], command)
os.setpgid(pid, pid)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
