"""Helpers for the signal-forwarding and reaping tests of the real command.

:func:`launch` starts ``nucleus-trio`` (as PID 1 of a new PID namespace or as
a subreaper) through :func:`tests.support.start_init`, and cleans up more
thoroughly: the workload runs in its own process group, so killing the
init's group alone would leave it (and its orphans) behind when the init is
not PID 1. Every process under the init is stopped, then killed, by PID.

The ``/proc`` readers and :class:`Lines` come from :mod:`tests.support`;
they are exported here too, so a test imports its helpers from one place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support import (
    PYTHON,
    WORKLOADS,
    Lines,
    Run,
    children_of,
    descendants_of,
    pgrp_of,
    proc_status,
    signal_set,
    start_init,
    state_of,
    wait_for,
    wait_oldest_child,
    workload,
)

__all__ = [
    "PYTHON",
    "WORKLOADS",
    "Init",
    "Lines",
    "children_of",
    "ctxt_switches",
    "descendants_of",
    "find_init_pid",
    "first_line_ran",
    "kill_tree",
    "launch",
    "pgrp_of",
    "proc_status",
    "signal_set",
    "state_of",
    "wait_first_line",
    "wait_for",
    "workload",
    "zombies_under",
]


def zombies_under(pid: int) -> list[int]:
    """Descendants of ``pid`` that are zombies."""
    return [kid for kid in descendants_of(pid) if state_of(kid) == "Z"]


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


def kill_tree(root: int) -> None:
    """Stop every descendant of ``root`` (so none forks or moves), then kill them."""
    stopped: set[int] = set()
    for _ in range(200):
        fresh = [pid for pid in descendants_of(root) if pid not in stopped]
        if not fresh:
            break
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped.update(fresh)
    for pid in stopped:
        if state_of(pid) not in (None, "Z"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def find_init_pid(proc: subprocess.Popen[bytes], pid1: bool, timeout: float = 10.0) -> int:
    """The init's PID seen from here, polled tightly (for start-up timing)."""
    if not pid1:
        return proc.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children_of(proc.pid)
        if kids:
            return kids[0]
        time.sleep(0.0005)
    raise AssertionError("the namespace's init did not appear")


def first_line_ran(pid: int) -> bool:
    """Whether the init has run its first line, judged from ``/proc``.

    SIGUSR1 blocked means the entry point's first statement ran; SIGUSR1
    caught means trio's receiver is up (so it ran long ago). Python neither
    blocks nor catches SIGUSR1 on its own. SIGINT and SIGTERM prove nothing:
    Python catches SIGINT at start-up, and ``unshare --fork`` blocks both in
    its child until just before the exec.
    """
    try:
        status = proc_status(pid)
    except OSError:
        return False
    blocked = signal_set(status.get("SigBlk", "0"))
    caught = signal_set(status.get("SigCgt", "0"))
    return signal.SIGUSR1 in blocked | caught


def wait_first_line(pid: int, timeout: float = 10.0) -> float:
    """Poll tightly until the init's first line ran; return the monotonic time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if first_line_ran(pid):
            return time.monotonic()
        time.sleep(0.0002)
    raise AssertionError("the init never blocked its signals")


class Init:
    """A launched init: the Popen, its stdout as :class:`Lines`, and shortcuts."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.proc = run.proc
        self.pid1 = run.pid1
        self.started = run.started
        assert self.proc.stdout is not None
        # A reader of its own that decodes leniently; run.out (strict) is left unread.
        self.out = Lines(self.proc.stdout.fileno())
        self._init_pid: int | None = None

    @property
    def init_pid(self) -> int:
        """The init's PID as seen from the test."""
        if self._init_pid is None:
            self._init_pid = find_init_pid(self.proc, self.pid1)
        return self._init_pid

    def workload_pid(self, timeout: float = 10.0) -> int:
        """The workload's PID as seen from the test: the init's oldest child."""
        return wait_oldest_child(self.init_pid, timeout)

    def send(self, signo: int) -> None:
        """Send ``signo`` to the init."""
        os.kill(self.init_pid, signo)

    def readline(self, timeout: float = 10.0) -> str:
        """One line of the workload's stdout."""
        return self.out.readline(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        """The init's exit code (the command's, through unshare as PID 1)."""
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        """Whether the init runs (not exited, not a zombie)."""
        return self.proc.poll() is None and state_of(self.init_pid) not in (None, "Z")

    def stderr(self) -> str:
        """What the init wrote on stderr (after it exited)."""
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")


@contextmanager
def launch(
    args: Sequence[str],
    mode: str,
    *,
    prefix: Sequence[str] = (),
    stdin: int | None = subprocess.DEVNULL,
    cwd: str | None = None,
    pass_fds: Sequence[int] = (),
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Init]:
    """Start ``[PREFIX...] nucleus-trio ARGS`` in ``mode`` ("pid1" or "subreaper").

    ``prefix`` runs before the init and must exec it (same PID). On the way
    out, every process under the launcher is stopped and killed by PID, then
    (by :func:`tests.support.start_init`) the launcher's own group.
    """
    with start_init(
        args,
        pid1=mode == "pid1",
        stdin=stdin,
        cwd=cwd,
        pass_fds=pass_fds,
        prefix=prefix,
        preexec_fn=preexec_fn,
    ) as run:
        try:
            yield Init(run)
        finally:
            kill_tree(run.proc.pid)
