"""A workload that prints its own SigBlk, SigIgn, cwd, pgid and open fds, then exits."""

import json
import os

status = {}
with open("/proc/self/status") as handle:
    for line in handle:
        key, _, value = line.partition(":")
        status[key] = value.strip()
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
print(
    json.dumps(
        {
            "SigBlk": status["SigBlk"],
            "SigIgn": status["SigIgn"],
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "sid": os.getsid(0),
            "fds": fds,
            "ppid": os.getppid(),
        }
    ),
    flush=True,
)
