"""An idle program with ``open_supervisor(reap_orphans=True)``, under ``anyio.run``.

``lib_idle_zombie.py BACKEND SECONDS zombie|none``: inside the block, with
``zombie`` starts ``subprocess.Popen(["true"])`` and waits (looking at
``/proc``, never reaping) until it is a zombie that the Popen object will
collect later; prints ``ready PID`` (``ready 0`` with ``none``), then sleeps
SECONDS in the event loop, prints ``done``, polls the Popen and leaves.
"""

import subprocess
import sys
from pathlib import Path

import anyio

from nucleus_trio import open_supervisor


def state_of(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return raw[raw.rfind(b")") + 2 :].split()[0].decode()


async def main(seconds: float, zombie: bool) -> None:
    async with open_supervisor(reap_orphans=True):
        popen = subprocess.Popen(["true"]) if zombie else None
        if popen is not None:
            while state_of(popen.pid) != "Z":
                await anyio.sleep(0.01)
        print(f"ready {popen.pid if popen is not None else 0}", flush=True)
        await anyio.sleep(seconds)
        print("done", flush=True)
        if popen is not None:
            popen.wait()


anyio.run(main, float(sys.argv[2]), sys.argv[3] == "zombie", backend=sys.argv[1])
