"""A supervisor's block ended by a Ctrl-C (KeyboardInterrupt), under ``anyio.run``.

``lib_ctrl_c.py BACKEND GRACE [second]``: in ``open_supervisor(grace=GRACE)``,
starts a worker whose whole process group (the shell and its ``sleep``)
ignores SIGTERM, then raises KeyboardInterrupt in the block's body: the first
Ctrl-C. With ``second``, a thread sends SIGINT to this process 0.5 s later,
during the grace: the second Ctrl-C, handled as the event loop of a real
program handles it (trio delivers a KeyboardInterrupt, ``asyncio.Runner``
cancels the main task).

Prints one JSON line ``{"worker": PID}`` once the worker runs, then one right
after the block: ``{"raised": TYPE, "leaves": [TYPE, ...], "elapsed": SECONDS,
"returncode": CODE, "group": {"alive": [PID, ...], "my_zombies": [PID, ...]}}``,
where ``elapsed`` counts from the first Ctrl-C and ``group`` is what is left of
the worker's process group (see :func:`what_is_left`). A KeyboardInterrupt
that escapes ``anyio.run`` afterwards is printed as
``{"after_run": "KeyboardInterrupt"}``.
"""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import anyio

from nucleus_trio import Process, open_supervisor

#: It ends by itself within 10 s once this script is gone (killed midway).
STUBBORN = 'trap "" TERM; echo ready; while kill -0 $PPID 2>/dev/null; do sleep 10; done'


def group_members(pgid: int) -> dict[int, tuple[str, int]]:
    """Every process (zombies included) in process group ``pgid``: PID -> (state, parent)."""
    members: dict[int, tuple[str, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid:
            members[int(name)] = (fields[0].decode(), int(fields[1]))
    return members


def what_is_left(pgid: int) -> dict[str, list[int]]:
    """What lives on of process group ``pgid`` (a process killed may take a
    moment to die: looked at for up to 1 s), and its zombies that are this
    process's to reap (the others are their new parent's)."""
    deadline = time.monotonic() + 1.0
    while True:
        members = group_members(pgid)
        alive = [pid for pid, (state, _) in members.items() if state != "Z"]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    mine = [pid for pid, (state, ppid) in members.items() if state == "Z" and ppid == os.getpid()]
    return {"alive": alive, "my_zombies": mine}


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (itself if it is no group)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def interrupt_later() -> None:
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGINT)


async def main(grace: float, second: bool) -> None:
    read_end, write_end = os.pipe()
    report: dict[str, object] = {"raised": None, "leaves": []}
    workers: list[Process] = []
    first_ctrl_c = time.monotonic()
    try:
        async with open_supervisor(grace=grace) as supervisor:
            worker = await supervisor.start(["sh", "-c", STUBBORN], stdout=write_end)
            workers.append(worker)
            os.close(write_end)
            print(json.dumps({"worker": worker.pid}), flush=True)
            await anyio.wait_readable(read_end)
            assert os.read(read_end, 100) == b"ready\n"
            if second:
                threading.Thread(target=interrupt_later, daemon=True).start()
            first_ctrl_c = time.monotonic()
            raise KeyboardInterrupt
    except BaseException as exc:  # what came out of the block, whatever it is
        report["raised"] = type(exc).__name__
        report["leaves"] = [type(leaf).__name__ for leaf in leaves(exc)]
    report["elapsed"] = time.monotonic() - first_ctrl_c
    report["returncode"] = workers[0].returncode if workers else "no worker"
    report["group"] = what_is_left(workers[0].pid) if workers else {}
    print(json.dumps(report), flush=True)


try:
    anyio.run(main, float(sys.argv[2]), sys.argv[3:] == ["second"], backend=sys.argv[1])
except KeyboardInterrupt:
    print(json.dumps({"after_run": "KeyboardInterrupt"}), flush=True)
