"""What the harness reads of its processes in ``/proc``.

Every reader returns an empty answer for a process that is gone: the
processes measured come and go while they are read.
"""

from __future__ import annotations

import os


def read_ints(path: str) -> list[int]:
    try:
        with open(path, "rb") as file:
            return [int(word) for word in file.read().split()]
    except (OSError, ValueError):
        return []


def tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def children(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (zombies included)."""
    found: list[int] = []
    for tid in tasks(pid):
        found += read_ints(f"/proc/{pid}/task/{tid}/children")
    return found


def only_child_left(pid: int, child: int) -> bool:
    """Whether ``child`` is the only child of ``pid``: reads a few bytes only."""
    for tid in tasks(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb", buffering=0) as file:
                head = file.read(64)
        except OSError:
            continue
        if head.split() not in ([], [str(child).encode()]):
            return False
    return True


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    queue = [pid]
    while queue and len(found) < 100_000:
        kids = children(queue.pop())
        found += kids
        queue += kids
    return found


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid``, in nanoseconds."""
    total = 0
    for tid in tasks(pid):
        values = read_ints(f"/proc/{pid}/task/{tid}/schedstat")
        if values:
            total += values[0]
    return total


def status_fields(pid: int, tid: int | None = None) -> dict[str, int]:
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    found: dict[str, int] = {}
    try:
        with open(path) as file:
            for line in file:
                key, _, value = line.partition(":")
                words = value.split()
                if words and words[0].isdigit():
                    found[key] = int(words[0])
    except OSError:
        pass
    return found


def context_switches(pid: int) -> int:
    total = 0
    for tid in tasks(pid):
        fields = status_fields(pid, int(tid))
        total += fields.get("voluntary_ctxt_switches", 0)
        total += fields.get("nonvoluntary_ctxt_switches", 0)
    return total
