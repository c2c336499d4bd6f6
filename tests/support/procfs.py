"""The ``/proc`` readers and checks of the tests (and of the stress suite).

Children, descendants, zombies, states, status fields and
signal masks, the processes tagged by the stress harness, and
:func:`wait_for` (every wait bounded). Standard library only: the stress
suite (``python -m stress``, run from the repository's root) imports these
readers too, so they must not pull in the library or pytest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Set in the init's environment by the stress harness (so in every
#: descendant's): how leftovers are found (:func:`tagged_processes`).
TAG_VAR = "NT_STRESS_TAG"


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            kids += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
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


def stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name ([state, ppid, pgrp, ...]), or None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: it ends at the last ")".
    return raw[raw.rfind(b")") + 2 :].decode().split()


def state_of(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``Z`` for a zombie), or None when it is gone."""
    fields = stat_fields(pid)
    return fields[0] if fields else None


def ppid_of(pid: int) -> int | None:
    """The parent of ``pid``, or None when it is gone."""
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def pgrp_of(pid: int) -> int | None:
    """The process group of ``pid``, or None when it is gone."""
    fields = stat_fields(pid)
    return int(fields[2]) if fields else None


def group_members(pgid: int) -> dict[int, str]:
    """Every process (zombies included) in process group ``pgid``: PID -> state."""
    members: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(int(name))
        if fields and int(fields[2]) == pgid:
            members[int(name)] = fields[0]
    return members


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot), or None when it is gone."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def zombies_under(pid: int) -> list[int]:
    """Descendants of ``pid`` that are zombies."""
    return [kid for kid in descendants_of(pid) if state_of(kid) == "Z"]


def oldest_child(pid: int) -> int | None:
    """The child of ``pid`` that started first, or None when it has none.

    Oldest by start time, not the lowest PID: after a storm of forks the PIDs
    wrap around and an orphan may have a lower one.
    """
    started = [(start, kid) for kid in children_of(pid) if (start := start_time(kid)) is not None]
    return min(started, key=lambda pair: pair[0])[1] if started else None


def wait_oldest_child(pid: int, timeout: float = 10.0, what: str = "the workload") -> int:
    """Wait until ``pid`` has a child; return its oldest (see :func:`oldest_child`)."""
    holder: list[int] = []

    def found() -> bool:
        kid = oldest_child(pid)
        if kid is not None:
            holder.append(kid)
        return kid is not None

    wait_for(found, timeout, what)
    return holder[-1]


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def signal_set(mask_hex: str) -> set[int]:
    """The signal numbers in a ``SigBlk``/``SigIgn``/``SigCgt`` mask."""
    mask = int(mask_hex, 16)
    return {n + 1 for n in range(64) if mask >> n & 1}


def ctxt_switches(pid: int) -> int:
    """Voluntary + involuntary context switches, summed over every thread."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split(":")[1])
    return total


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


def wait_for(predicate: object, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (a test helper, not the init) until true or fail."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
