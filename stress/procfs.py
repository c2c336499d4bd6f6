"""The harness's view of the init from outside: ``/proc``, read within
bounded waits (the harness polls; the init never has to).

The bottom of the package, so the two types every other module shares are
defined here: :data:`Figures` (the readers return some) and
:class:`StressError` (:func:`wait_until` raises it).

The readers the tests have too (children, descendants, states, status,
signal masks, tagged leftovers, trio's receiver up) are theirs, from
:mod:`tests.support.procfs` and :mod:`tests.support.launch` (standard library
only): one copy of each. ``python -m stress`` runs from the repository's
root, where ``tests`` is a package.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.support import procfs as shared
from tests.support.launch import receiver_up
from tests.support.procfs import (
    TAG_VAR,
    children_of,
    descendants_of,
    signal_set,
    state_of,
    tagged_processes,
)

# Re-exported: the rest of the package imports every reader from this module.
__all__ = [
    "TAG_VAR",
    "Figures",
    "Sampler",
    "StressError",
    "blocks",
    "census",
    "children_of",
    "cpu_seconds",
    "descendants_of",
    "descriptor_targets",
    "footprint",
    "proc_status",
    "receiver_up",
    "settled_footprint",
    "signal_set",
    "start_time",
    "state_of",
    "tagged_processes",
    "wait_until",
]

Figures = dict[str, Any]


class StressError(AssertionError):
    """The harness itself could not go on (a line that never came, a hang)."""


def start_time(pid: int) -> int:
    """Start time in clock ticks since boot (to tell the oldest child); a
    process already gone sorts last."""
    started = shared.start_time(pid)
    return started if started is not None else 2**63


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    fields = shared.stat_fields(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict (empty if the process is gone)."""
    try:
        return shared.proc_status(pid)
    except OSError:
        return {}


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


def blocks(pid: int, signo: int) -> bool:
    """Whether ``pid`` blocks ``signo`` now (the init's first line has run)."""
    status = proc_status(pid)
    return "SigBlk" in status and signo in signal_set(status["SigBlk"])


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
