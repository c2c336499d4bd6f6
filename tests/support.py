"""Helpers for tests that run the real init as a process.

Every process a test starts is cleaned up by PID (its whole session is
killed), and every wait is bounded.

The ``/proc`` readers (``stat_fields``, ``state_of``, ``children_of``, ...)
and the line reader :class:`Lines` live here alone: ``sigreap_helpers``,
``library_support`` and the tests import them from this module.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

WORKLOADS = Path(__file__).parent / "workloads"
PYTHON = sys.executable


def init_command() -> list[str]:
    """The installed ``nucleus-trio`` command, as users run it."""
    found = Path(sys.executable).parent / "nucleus-trio"
    if found.exists():
        return [str(found)]
    which = shutil.which("nucleus-trio")
    if which:
        return [which]
    return [sys.executable, "-m", "nucleus_trio"]


def workload(name: str, *args: str) -> list[str]:
    """Command line of a workload script from ``tests/workloads``."""
    return [PYTHON, str(WORKLOADS / name), *args]


UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]


def pidns_available() -> bool:
    """Whether a fresh PID namespace can be made here (root and unshare)."""
    try:
        result = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


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
    """The signal numbers in a ``SigBlk``/``SigIgn`` mask."""
    mask = int(mask_hex, 16)
    return {n + 1 for n in range(64) if mask >> n & 1}


def wait_for(predicate: object, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (a test helper, not the init) until true or fail."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Lines:
    """Lines from a pipe descriptor, every wait bounded.

    Reads the raw descriptor with a buffer of its own: a buffered ``readline``
    after ``select`` can swallow a second line that arrived in the same chunk
    and then wait for it in vain. ``errors`` is how bytes are decoded (as for
    :meth:`bytes.decode`).
    """

    def __init__(self, fd: int, *, errors: str = "replace") -> None:
        self.fd = fd
        self.errors = errors
        self.buffer = b""
        self.eof = False
        #: Every line :meth:`readline` returned, without its newline.
        self.seen: list[str] = []

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

    def readline(self, timeout: float = 10.0, *, keepends: bool = True) -> str:
        """The next line (with its newline unless ``keepends`` is false), or fail
        after ``timeout``; a last line without a newline fails too."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if self.eof:
                raise AssertionError(
                    f"end of output, no full line (have {self.buffer!r}, after {self.seen[-5:]})"
                )
            if not self._fill(deadline):
                raise AssertionError(
                    f"no line within {timeout}s (have {self.buffer!r}, after {self.seen[-5:]})"
                )
        line, _, self.buffer = self.buffer.partition(b"\n")
        text = line.decode(errors=self.errors)
        self.seen.append(text)
        return text + "\n" if keepends else text

    def peek(self, timeout: float = 0.0) -> str:
        """Everything read so far, after waiting at most ``timeout`` for more."""
        if not self.eof:
            self._fill(time.monotonic() + timeout)
        return self.buffer.decode(errors=self.errors)

    def read_to_eof(self, timeout: float = 10.0) -> str:
        """Everything up to end of file (whoever still holds the pipe fails the test)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline):
                raise AssertionError(f"no end of output within {timeout}s: someone holds the pipe")
        data, self.buffer = self.buffer, b""
        return data.decode(errors=self.errors)


class Run:
    """A running init (optionally PID 1 of a new namespace) and its output."""

    def __init__(self, proc: subprocess.Popen[bytes], pid1: bool, started: float) -> None:
        self.proc = proc
        self.pid1 = pid1
        #: ``time.monotonic()`` just before the init was started.
        self.started = started
        assert proc.stdout is not None
        #: The workload's stdout, for :meth:`readline` and :meth:`communicate`.
        self.out = Lines(proc.stdout.fileno(), errors="strict")

    @property
    def init_pid(self) -> int:
        """The init's PID as seen from the test (outside the namespace)."""
        if not self.pid1:
            return self.proc.pid
        holder: list[int] = []

        def found() -> bool:
            kids = children_of(self.proc.pid)
            if kids:
                holder.append(kids[0])
            return bool(kids)

        wait_for(found, 10, "the namespace's init")
        return holder[0]

    def workload_pid(self, timeout: float = 10.0) -> int:
        """The init's first child (the workload), as seen from the test."""
        return wait_oldest_child(self.init_pid, timeout)

    def send(self, signo: int) -> None:
        """Send ``signo`` to the init."""
        os.kill(self.init_pid, signo)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the init to exit and return its exit code."""
        return self.proc.wait(timeout=timeout)

    def readline(self, timeout: float = 10.0) -> str:
        """One line of the workload's stdout (with its newline), within ``timeout``."""
        return self.out.readline(timeout)

    def communicate(self, timeout: float = 30.0) -> tuple[str, str]:
        """Wait for the exit and return (stdout, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        out, self.out.buffer = self.out.buffer + (out or b""), b""
        return out.decode(errors="replace"), (err or b"").decode(errors="replace")

    def kill(self) -> None:
        """Kill everything the test started: the init's session and, by PID,
        every descendant (the workload runs in a process group of its own)."""
        for pid in reversed(descendants_of(self.proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@contextmanager
def start_init(
    args: Sequence[str],
    *,
    pid1: bool = False,
    stdin: int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    pass_fds: Sequence[int] = (),
    prefix: Sequence[str] = (),
    preexec_fn: Callable[[], None] | None = None,
    init: Sequence[str] | None = None,
) -> Iterator[Run]:
    """Start ``[PREFIX...] nucleus-trio ARGS`` (inside a new PID namespace with ``pid1``).

    ``prefix`` runs before the init and must exec it (same PID); ``init``
    replaces the installed command (the single-file build, say). The init
    runs in its own session, which is killed on the way out whatever
    happened, so no test leaves a process behind.
    """
    command = [*(UNSHARE if pid1 else []), *prefix, *(init or init_command()), *args]
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
        cwd=cwd,
        pass_fds=pass_fds,
        preexec_fn=preexec_fn,
    )
    run = Run(proc, pid1, started)
    try:
        yield run
    finally:
        run.kill()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def run_init(
    args: Sequence[str], *, pid1: bool = False, timeout: float = 30.0, **kwargs: object
) -> tuple[int, str, str]:
    """Run the init to completion: (exit code, stdout, stderr)."""
    with start_init(args, pid1=pid1, **kwargs) as run:  # type: ignore[arg-type]
        out, err = run.communicate(timeout=timeout)
        return run.proc.returncode, out, err
