"""Exec a command with some signals blocked and some ignored, like a careless parent.

Usage: ``sig_launch.py [block=SIG,SIG] [ignore=SIG,SIG] -- COMMAND [ARGS...]``.
Being Python, this wrapper also leaves SIGPIPE and SIGXFSZ ignored across the
exec, as any Python parent that uses ``os.exec*`` does.
"""

import os
import signal
import sys


def parse(name: str) -> int:
    if name.isdigit():
        return int(name)
    name = name.upper().removeprefix("SIG")
    if name.startswith("RTMIN+"):
        return signal.SIGRTMIN + int(name[6:])
    return int(getattr(signal, "SIG" + name))


args = sys.argv[1:]
split = args.index("--")
for arg in args[:split]:
    key, _, value = arg.partition("=")
    sigs = [parse(name) for name in value.split(",") if name]
    if key == "block":
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    elif key == "ignore":
        for sig in sigs:
            signal.signal(sig, signal.SIG_IGN)
    else:
        sys.exit(f"sig_launch.py: bad argument {arg!r}")
command = args[split + 1 :]
os.execvp(command[0], command)
