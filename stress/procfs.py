"""The harness's view of the init from outside: ``/proc``, read within
bounded waits (the harness polls; the init never has to).

The bottom of the package, so the two types every other module shares are
defined here: :data:`Figures` (the readers return some) and
:class:`StressError` (:func:`wait_until` raises it).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Set in the init's environment (so in every descendant's): how leftovers are found.
TAG_VAR = "NT_STRESS_TAG"

Figures = dict[str, Any]


class StressError(AssertionError):
    """The harness itself could not go on (a line that never came, a hang)."""


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's ``children`` list)."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                kids += [int(word) for word in handle.read().split()]
        except OSError:
            pass
    return kids


def descendants_of(pid: int) -> list[int]:
    """Every descendant of ``pid``, breadth first."""
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = children_of(queue.pop(0))
        found += kids
        queue += kids
    return found


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields of ``/proc/PID/stat`` after the command name (field 3 first)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data[data.rfind(b")") + 2 :].split()


def state_of(pid: int) -> str | None:
    """The process state letter (``R``, ``S``, ``Z``, ``T``...), or None if gone."""
    fields = _stat_fields(pid)
    return fields[0].decode() if fields else None


def start_time(pid: int) -> int:
    """Start time in clock ticks since boot (to tell the oldest child)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 2**63


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict (empty if the process is gone)."""
    fields: dict[str, str] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def signal_set(mask_hex: str) -> set[int]:
    """The signal numbers of a ``SigBlk``/``SigCgt`` mask."""
    mask = int(mask_hex, 16)
    return {n + 1 for n in range(64) if mask >> n & 1}


def footprint(pid: int) -> Figures:
    """RSS and peak RSS (KiB), open descriptors and threads of ``pid``."""
    status = proc_status(pid)

    def kib(key: str) -> int:
        return int(status.get(key, "0 kB").split()[0])

    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return {
        "rss_kib": kib("VmRSS"),
        "hwm_kib": kib("VmHWM"),
        "fds": fds,
        "threads": int(status.get("Threads", "0")),
    }


def descriptor_targets(pid: int) -> list[str]:
    """What each open descriptor of ``pid`` is (for a failure's message)."""
    targets: list[str] = []
    try:
        names = sorted(os.listdir(f"/proc/{pid}/fd"), key=int)
    except OSError:
        return targets
    for name in names:
        try:
            targets.append(f"{name}:{os.readlink(f'/proc/{pid}/fd/{name}')}")
        except OSError:
            continue
    return targets


def settled_footprint(pid: int, before: Figures, wait: float = 1.0) -> Figures:
    """:func:`footprint` once the descriptors are back to ``before``'s count,
    or after ``wait`` s: a descriptor open for a moment (a /proc read, a
    lazy import) is no leak; one still open a second later is. Names the
    descriptors when the count still differs."""
    after = footprint(pid)
    deadline = time.monotonic() + wait
    while after["fds"] != before["fds"] and time.monotonic() < deadline:
        time.sleep(0.1)
        after = footprint(pid)
    if after["fds"] != before["fds"]:
        after["fd_targets"] = descriptor_targets(pid)
    return after


def census(init_pid: int) -> tuple[int, int]:
    """(children, zombies among them) of the init, read now."""
    kids = children_of(init_pid)
    return len(kids), sum(1 for kid in kids if state_of(kid) == "Z")


def receiver_up(pid: int) -> bool:
    """Whether the init catches SIGUSR1 and no longer blocks it (trio is up)."""
    status = proc_status(pid)
    if "SigCgt" not in status:
        return False
    return signal.SIGUSR1 in signal_set(status["SigCgt"]) - signal_set(status["SigBlk"])


def blocks(pid: int, signo: int) -> bool:
    """Whether ``pid`` blocks ``signo`` now (the init's first line has run)."""
    status = proc_status(pid)
    return "SigBlk" in status and signo in signal_set(status["SigBlk"])


def tagged_processes(tag: str) -> list[int]:
    """Live processes whose environment holds ``TAG_VAR=tag`` (zombies have none)."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.01
) -> float:
    """Poll ``predicate`` (the harness polls, never the init); return the time taken."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise StressError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - start


class Sampler(threading.Thread):
    """Samples the init's children and zombies from outside, every ``interval``
    at most (slower when a sample is costly, so the harness stays light)."""

    def __init__(self, init_pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.init_pid = init_pid
        self.interval = interval
        self.halt = threading.Event()
        self.peak_zombies = 0
        self.peak_children = 0
        self.samples = 0

    def run(self) -> None:
        while not self.halt.is_set():
            began = time.monotonic()
            children, zombies = census(self.init_pid)
            self.peak_children = max(self.peak_children, children)
            self.peak_zombies = max(self.peak_zombies, zombies)
            self.samples += 1
            cost = time.monotonic() - began
            self.halt.wait(max(self.interval, 2 * cost))

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
