"""Helpers for tests that run the real init as a process.

Every process a test starts is cleaned up by PID (its whole session is
killed), and every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
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
        result = subprocess.run(
            [*UNSHARE, "true"], capture_output=True, timeout=10, check=False
        )
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


def start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (field 22 of stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 2**63
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


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


class Run:
    """A running init (optionally PID 1 of a new namespace) and its output."""

    def __init__(self, proc: subprocess.Popen[bytes], pid1: bool) -> None:
        self.proc = proc
        self.pid1 = pid1
        self._buffer = b""

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
        init = self.init_pid
        holder: list[int] = []

        def found() -> bool:
            kids = children_of(init)
            if kids:
                # The oldest child: PIDs wrap, so the smallest may be an orphan.
                holder.append(min(kids, key=start_time))
            return bool(kids)

        wait_for(found, timeout, "the workload")
        return holder[0]

    def send(self, signo: int) -> None:
        """Send ``signo`` to the init."""
        os.kill(self.init_pid, signo)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the init to exit and return its exit code."""
        return self.proc.wait(timeout=timeout)

    def readline(self, timeout: float = 10.0) -> str:
        """One line of the workload's stdout, within ``timeout``.

        Reads the raw descriptor with a buffer of its own, so two lines that
        arrive in one read are both returned, one per call.
        """
        import select

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no output within {timeout}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line.decode()
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode() + "\n"

    def communicate(self, timeout: float = 30.0) -> tuple[str, str]:
        """Wait for the exit and return (stdout, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        out, self._buffer = self._buffer + (out or b""), b""
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
) -> Iterator[Run]:
    """Start ``nucleus-trio ARGS`` (inside a new PID namespace with ``pid1``).

    The init runs in its own session, which is killed on the way out whatever
    happened, so no test leaves a process behind.
    """
    command = [*(UNSHARE if pid1 else []), *init_command(), *args]
    proc = subprocess.Popen(
        command,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
        cwd=cwd,
        pass_fds=pass_fds,
    )
    run = Run(proc, pid1)
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
