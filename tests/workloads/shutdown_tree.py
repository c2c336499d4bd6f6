"""A workload that leaves processes behind for the init's shutdown.

``shutdown_tree.py MARKER STAMP CODE [KIND...]`` starts one leftover per KIND,
each with its standard streams on /dev/null and a safety alarm of 120 s:

- ``term``: a child of the workload (re-parented to the init when the
  workload exits) that, on SIGTERM, appends ``TERM term PID`` to MARKER and
  exits 0;
- ``ignore``: a child that ignores SIGTERM;
- ``daemon``: a daemon made by fork, setsid, fork (so it is in its own session
  and process group, and re-parented to the init at once); on SIGTERM it
  appends ``TERM daemon PID`` to MARKER and exits 0;
- ``refork``: a child whose SIGTERM handler forks a new process, waits until
  it is ready, appends ``TERM refork PID forked CHILD STARTTIME`` to MARKER and
  exits 0, so the new process is re-parented to the init during the shutdown;
  on SIGTERM the new process appends ``TERM reforked PID`` and exits 0;
- ``refork_ignore``: the same, but the new process ignores SIGTERM.

Once every leftover is ready, prints one JSON line: ``pid``, ``sid``,
``pgid`` of the workload and ``leftovers``, a list of ``kind``, ``pid``,
``sid``, ``pgid``, ``ppid``. Then it waits for end of file on stdin, writes
``time.monotonic()`` (CLOCK_MONOTONIC) to STAMP and exits CODE at once.
"""

import json
import os
import signal
import sys
import time
from collections.abc import Callable

marker, stamp, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
kinds = sys.argv[4:]
SAFETY = 120


def note(line: str) -> None:
    fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def quiet() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def on_term(label: str) -> Callable[[int, object], None]:
    def handler(signo: int, frame: object) -> None:
        note(f"TERM {label} {os.getpid()}")
        os._exit(0)

    return handler


def starttime(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        stat = handle.read()
    return stat[stat.rfind(b")") + 2 :].split()[19].decode()


def refork(ignore: bool) -> Callable[[int, object], None]:
    def handler(signo: int, frame: object) -> None:
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(ready_r)
            signal.alarm(SAFETY)
            if ignore:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            else:
                signal.signal(signal.SIGTERM, on_term("reforked"))
            os.close(ready_w)  # ready: the handler is in place
            while True:
                signal.pause()
        os.close(ready_w)
        os.read(ready_r, 1)  # end of file: the new process is ready
        note(f"TERM refork {os.getpid()} forked {child} {starttime(child)}")
        os._exit(0)

    return handler


def become(kind: str, report: int) -> None:
    """Turn this process into a leftover of ``kind``; never returns."""
    quiet()
    signal.alarm(SAFETY)
    if kind == "term":
        signal.signal(signal.SIGTERM, on_term("term"))
    elif kind == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif kind == "daemon":
        signal.signal(signal.SIGTERM, on_term("daemon"))
    elif kind in ("refork", "refork_ignore"):
        signal.signal(signal.SIGTERM, refork(kind == "refork_ignore"))
    else:
        os._exit(99)
    os.write(report, f"{os.getpid()} {os.getsid(0)} {os.getpgrp()}".encode())
    os.close(report)
    while True:
        signal.pause()


def start(kind: str) -> dict[str, object]:
    """Start a leftover of ``kind`` and return what it reported once ready."""
    report_r, report_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(report_r)
        if kind == "daemon":
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
        become(kind, report_w)
    os.close(report_w)
    data = b""
    while chunk := os.read(report_r, 4096):
        data += chunk
    os.close(report_r)
    if kind == "daemon":
        os.waitpid(child, 0)  # the intermediate: the daemon is the init's now
    pid, sid, pgid = (int(word) for word in data.split())
    with open(f"/proc/{pid}/stat", "rb") as handle:
        stat = handle.read()
    ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
    return {"kind": kind, "pid": pid, "sid": sid, "pgid": pgid, "ppid": ppid}


signal.alarm(SAFETY)
leftovers = [start(kind) for kind in kinds]
info = {"pid": os.getpid(), "sid": os.getsid(0), "pgid": os.getpgrp(), "leftovers": leftovers}
os.write(1, (json.dumps(info) + "\n").encode())
stamp_fd = os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
while os.read(0, 4096):
    pass
os.write(stamp_fd, f"{time.monotonic():.6f}\n".encode())
os._exit(code)
