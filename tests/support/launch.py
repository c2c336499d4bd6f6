"""The real ``nucleus-trio`` command launched by a test, and its clean-up.

:func:`start_init` (and :func:`launch`, its form with a ``mode`` fixture's
value) starts the init, as PID 1 of a new PID namespace or as a subreaper,
and yields an :class:`Init`: the one wrapper around a launched init. On the
way out, whatever happened, :func:`kill_session` ends every process the test
started, by PID; every wait is bounded.

Also here: the command lines (:func:`init_command`, :func:`workload`), the
line reader :class:`Lines`, and the checks of the init's start-up read from
``/proc`` (:func:`first_line_ran`, :func:`receiver_up`). Standard library
only, like :mod:`tests.support.procfs`: the stress suite uses
:func:`receiver_up` too.
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

from tests.support.procfs import (
    children_of,
    descendants_of,
    proc_status,
    signal_set,
    state_of,
    wait_oldest_child,
)

WORKLOADS = Path(__file__).parent.parent / "workloads"
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


# -- the init's start-up, read from /proc ------------------------------------------


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


def receiver_up(pid: int) -> bool:
    """Whether trio's signal receiver is up and the start-up block lifted:
    the init catches SIGUSR1 and no longer blocks it (False once it is gone)."""
    try:
        status = proc_status(pid)
    except OSError:
        return False
    if "SigCgt" not in status:
        return False
    return signal.SIGUSR1 in signal_set(status["SigCgt"]) - signal_set(status["SigBlk"])


# -- reading a pipe by line ----------------------------------------------------------


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


# -- the clean-up, by PID --------------------------------------------------------------


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


def kill_session(proc: subprocess.Popen[bytes]) -> None:
    """Kill everything under ``proc`` by PID, then its session's group, and
    wait for it (bounded).

    By PID first: the workload runs in a process group of its own, so killing
    the launcher's group alone would leave it (and its orphans) behind when
    the init is not PID 1.
    """
    kill_tree(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# -- the launched init -------------------------------------------------------------------


class Init:
    """A running init (optionally PID 1 of a new namespace), its output, and shortcuts."""

    def __init__(
        self, proc: subprocess.Popen[bytes], pid1: bool, started: float, *, errors: str = "strict"
    ) -> None:
        self.proc = proc
        self.pid1 = pid1
        #: ``time.monotonic()`` just before the init was started.
        self.started = started
        assert proc.stdout is not None
        #: The workload's stdout, for :meth:`readline` and :meth:`communicate`
        #: (decoded as ``errors`` says: see :func:`start_init`).
        self.out = Lines(proc.stdout.fileno(), errors=errors)
        self._init_pid: int | None = None

    @property
    def init_pid(self) -> int:
        """The init's PID as seen from the test (outside the namespace)."""
        if self._init_pid is None:
            self._init_pid = find_init_pid(self.proc, self.pid1)
        return self._init_pid

    def workload_pid(self, timeout: float = 10.0) -> int:
        """The workload's PID as seen from the test: the init's oldest child."""
        return wait_oldest_child(self.init_pid, timeout)

    def send(self, signo: int) -> None:
        """Send ``signo`` to the init."""
        os.kill(self.init_pid, signo)

    def wait(self, timeout: float = 30.0) -> int:
        """The init's exit code (the command's, through unshare as PID 1)."""
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        """Whether the init runs (not exited, not a zombie)."""
        return self.proc.poll() is None and state_of(self.init_pid) not in (None, "Z")

    def readline(self, timeout: float = 10.0) -> str:
        """One line of the workload's stdout (with its newline), within ``timeout``."""
        return self.out.readline(timeout)

    def communicate(self, timeout: float = 30.0) -> tuple[str, str]:
        """Wait for the exit and return (stdout, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        out, self.out.buffer = self.out.buffer + (out or b""), b""
        return out.decode(errors="replace"), (err or b"").decode(errors="replace")

    def stderr(self) -> str:
        """What the init wrote on stderr (after it exited)."""
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        """Kill everything the test started, by PID (see :func:`kill_session`)."""
        kill_session(self.proc)


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
    errors: str = "strict",
) -> Iterator[Init]:
    """Start ``[PREFIX...] nucleus-trio ARGS`` (inside a new PID namespace with ``pid1``).

    ``prefix`` runs before the init and must exec it (same PID); ``init``
    replaces the installed command (the single-file build, say). ``errors``
    is how the workload's stdout is decoded by :attr:`Init.out` (strict: a
    byte that is not UTF-8 fails the test). The init runs in its own
    session; every process under it is killed by PID on the way out, then
    the session, whatever happened, so no test leaves a process behind.
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
    launched = Init(proc, pid1, started, errors=errors)
    try:
        yield launched
    finally:
        launched.kill()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


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
    """Start ``[PREFIX...] nucleus-trio ARGS`` in ``mode`` ("pid1" or "subreaper",
    the ``mode`` fixture's values): :func:`start_init`, with the workload's
    stdout decoded leniently (``errors="replace"``), as the signal and reaping
    tests have always read it.

    ``prefix`` runs before the init and must exec it (same PID). On the way
    out, every process under the launcher is stopped and killed by PID, then
    the launcher's own group.
    """
    with start_init(
        args,
        pid1=mode == "pid1",
        stdin=stdin,
        cwd=cwd,
        pass_fds=pass_fds,
        prefix=prefix,
        preexec_fn=preexec_fn,
        errors="replace",
    ) as launched:
        yield launched


def run_init(
    args: Sequence[str], *, pid1: bool = False, timeout: float = 30.0, **kwargs: object
) -> tuple[int, str, str]:
    """Run the init to completion: (exit code, stdout, stderr)."""
    with start_init(args, pid1=pid1, **kwargs) as launched:  # type: ignore[arg-type]
        out, err = launched.communicate(timeout=timeout)
        return launched.proc.returncode, out, err
