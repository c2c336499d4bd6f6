"""Helpers for the signal-forwarding and reaping tests of the real command.

:func:`launch` starts ``nucleus-trio`` (as PID 1 of a new PID namespace or as
a subreaper) like :func:`tests.support.start_init`, with a few more knobs (a
wrapper command before the init, a ``preexec_fn`` for a controlling
terminal), and cleans up more thoroughly: the workload runs in its own
process group, so killing the init's group alone would leave it (and its
orphans) behind when the init is not PID 1. Every process under the init is
stopped, then killed, by PID.

:class:`Lines` reads the workload's stdout from the raw descriptor with its
own buffer: a buffered ``readline`` after ``select`` can swallow a second
line that arrived in the same chunk and then wait for it in vain.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support import (
    PYTHON,
    UNSHARE,
    WORKLOADS,
    Run,
    children_of,
    descendants_of,
    init_command,
    proc_status,
    signal_set,
    wait_for,
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
    "proc_stat",
    "proc_status",
    "signal_set",
    "state_of",
    "wait_first_line",
    "wait_for",
    "workload",
    "zombies_under",
]


def workload(name: str, *args: str) -> list[str]:
    """Command line of a script from ``tests/workloads`` (Python or shell)."""
    path = WORKLOADS / name
    if name.endswith(".sh"):
        return ["sh", str(path), *args]
    return [PYTHON, str(path), *args]


class Lines:
    """Reads lines from a pipe descriptor, never hiding buffered data."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False

    def _fill(self, deadline: float) -> bool:
        """Read one chunk; False if nothing came before ``deadline``."""
        remaining = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self.fd], [], [], remaining)
        if not ready:
            return False
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
        self.buffer += chunk
        return True

    def readline(self, timeout: float = 10.0) -> str:
        """The next line (with its newline), or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if self.eof:
                raise AssertionError(f"end of output, no full line (have {self.buffer!r})")
            if not self._fill(deadline):
                raise AssertionError(f"no line within {timeout}s (have {self.buffer!r})")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace") + "\n"

    def peek(self, timeout: float = 0.0) -> str:
        """Everything read so far, after waiting at most ``timeout`` for more."""
        if not self.eof:
            self._fill(time.monotonic() + timeout)
        return self.buffer.decode(errors="replace")

    def read_to_eof(self, timeout: float = 10.0) -> str:
        """Everything until end of file, or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline):
                raise AssertionError(f"no end of output within {timeout}s")
        data, self.buffer = self.buffer, b""
        return data.decode(errors="replace")


def proc_stat(pid: int) -> list[str]:
    """Fields of ``/proc/PID/stat`` after the command name: [state, ppid, pgrp, ...]."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rfind(")") + 2 :].split()


def state_of(pid: int) -> str | None:
    """The one-letter state of ``pid``, or None when it is gone."""
    try:
        return proc_stat(pid)[0]
    except (OSError, IndexError):
        return None


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

    def __init__(self, proc: subprocess.Popen[bytes], pid1: bool, started: float) -> None:
        self.proc = proc
        self.pid1 = pid1
        self.started = started
        self.run = Run(proc, pid1)
        assert proc.stdout is not None
        self.out = Lines(proc.stdout.fileno())
        self._init_pid: int | None = None

    @property
    def init_pid(self) -> int:
        """The init's PID as seen from the test."""
        if self._init_pid is None:
            self._init_pid = find_init_pid(self.proc, self.pid1)
        return self._init_pid

    def workload_pid(self, timeout: float = 10.0) -> int:
        """The workload's PID as seen from the test: the init's oldest child.

        Oldest by start time, not the lowest PID: after a storm of forks the
        PIDs wrap around and an orphan may have a lower one.
        """
        init = self.init_pid
        holder: list[int] = []

        def found() -> bool:
            kids = []
            for kid in children_of(init):
                try:
                    kids.append((int(proc_stat(kid)[19]), kid))
                except (OSError, IndexError, ValueError):
                    continue
            if kids:
                holder.append(min(kids)[1])
            return bool(kids)

        wait_for(found, timeout, "the workload")
        return holder[-1]

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
    the launcher's own group.
    """
    pid1 = mode == "pid1"
    command = [*(UNSHARE if pid1 else []), *prefix, *init_command(), *args]
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd=cwd,
        pass_fds=pass_fds,
        preexec_fn=preexec_fn,
    )
    init = Init(proc, pid1, started)
    try:
        yield init
    finally:
        kill_tree(proc.pid)
        init.run.kill()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
