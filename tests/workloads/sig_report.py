"""A workload that ignores, reports or exits on the signals it is told.

Arguments, in any order (signals by name, ``TERM`` or ``SIGTERM``, or number):

- ``ignore=SIG,SIG``: set these to ``SIG_IGN``;
- ``report=SIG,SIG``: print each one's number on a line when it arrives;
- ``exit=SIG:CODE``: print its number, then exit with CODE (repeatable);
- ``after=SECONDS:CODE``: exit with CODE after SECONDS, whatever happens.

Prints ``ready <pid>`` once everything is set up, then waits for signals.
"""

import os
import signal
import sys
import time


def parse(name: str) -> int:
    if name.isdigit():
        return int(name)
    name = name.upper()
    return int(getattr(signal, name if name.startswith("SIG") else "SIG" + name))


exits: dict[int, int] = {}
deadline: float | None = None
after_code = 0


def report(signo: int, frame: object) -> None:
    os.write(1, f"{signo}\n".encode())
    if signo in exits:
        os._exit(exits[signo])


for arg in sys.argv[1:]:
    key, _, value = arg.partition("=")
    if key == "ignore":
        for name in value.split(","):
            signal.signal(parse(name), signal.SIG_IGN)
    elif key == "report":
        for name in value.split(","):
            signal.signal(parse(name), report)
    elif key == "exit":
        name, _, code = value.partition(":")
        exits[parse(name)] = int(code)
        signal.signal(parse(name), report)
    elif key == "after":
        seconds, _, code = value.partition(":")
        deadline = time.monotonic() + float(seconds)
        after_code = int(code)
    else:
        sys.exit(f"sig_report.py: bad argument {arg!r}")

os.write(1, f"ready {os.getpid()}\n".encode())
while True:
    if deadline is None:
        signal.pause()
    else:
        left = deadline - time.monotonic()
        if left <= 0:
            os._exit(after_code)
        time.sleep(left)
