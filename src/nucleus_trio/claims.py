"""Who else waits for a child of this process: the library's reaping policy.

In library use the program has other parts that start processes
(``subprocess.Popen``, ``trio.run_process``, asyncio, multiprocessing) and
collect them themselves; the orphan reaper must leave those alone (README,
"Reaping"). A child is claimed when a live ``Popen`` object names it, when
an open pidfd of this process names it, or when it was handed to
:meth:`~nucleus_trio.Supervisor.claim`. Children made by bare ``os.fork``,
``os.spawn*``, ``os.posix_spawn`` or ``pty.fork`` are visible in none of these
places: their owner must claim them or hold a pidfd.
"""

from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Collection


class ClaimsUnknown(Exception):
    """The claims cannot be known right now: a ``Popen`` is being built, and
    its child may already exist without the object naming it."""


def popen_claims() -> set[int]:
    """PIDs of live ``Popen`` objects (subprocess, multiprocessing).

    Raises :class:`ClaimsUnknown` while one is being built.
    """
    claims: set[int] = set()
    roots: list[type] = [subprocess.Popen]
    try:
        from multiprocessing import popen_fork

        roots.append(popen_fork.Popen)
    except ImportError:  # pragma: no cover
        pass
    # An instance refers to its own class only: subclasses (multiprocessing's
    # spawn Popen, a user's Popen subclass) must be asked for one by one.
    classes: list[type] = []
    while roots:
        cls = roots.pop()
        if cls not in classes:
            classes.append(cls)
            roots.extend(cls.__subclasses__())
    base = tuple(classes)
    for obj in gc.get_referrers(*classes):
        if not isinstance(obj, base):
            continue
        pid = getattr(obj, "pid", None)
        if pid is None:
            raise ClaimsUnknown
        if getattr(obj, "returncode", None) is None:
            claims.add(pid)
    return claims


def pidfd_claims() -> set[int]:
    """PIDs named by the open pidfds of this process (trio.Process, asyncio, ...)."""
    claims: set[int] = set()
    try:
        names = os.listdir("/proc/self/fdinfo")
    except OSError:
        return claims
    for name in names:
        try:
            with open(f"/proc/self/fdinfo/{name}", "rb") as handle:
                info = handle.read()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith(b"Pid:"):
                pid = int(line.split()[1])
                if pid > 0:
                    claims.add(pid)
    return claims


def all_claims(explicit: Collection[int]) -> set[int]:
    """Every claimed PID: ``explicit`` ones, live ``Popen`` objects' and open
    pidfds'. Raises :class:`ClaimsUnknown` while a ``Popen`` is being built."""
    return set(explicit) | popen_claims() | pidfd_claims()
