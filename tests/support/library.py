"""What the library tests share (``test_library_*``, ``test_coexistence``,
``test_restart``...).

Everything here works under trio and under asyncio (through anyio): reading
a workload's output waits on the descriptor, never on a timer. Processes are
looked up and cleaned up by PID, and only when they are still this process's
children (so a reused PID is never signalled). The ``/proc`` readers are
those of :mod:`tests.support.procfs`.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from nucleus_trio.kernel import PR_GET_CHILD_SUBREAPER, PR_SET_CHILD_SUBREAPER, prctl
from tests.support.procfs import children_of, ppid_of, state_of

#: A test on both of anyio's backends (with ``@pytest.mark.anyio``).
BOTH = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
#: Generous bounds of the PidFd, Supervisor and run_command tests: the machine
#: is small and shared.
T = 60.0
#: The keys of every event record.
CORE_KEYS = {"timestamp", "container_id", "container_name", "event_type", "detail", "is_error"}


def children() -> set[int]:
    """The direct children of this process."""
    return set(children_of(os.getpid()))


def is_my_child(pid: int) -> bool:
    """Whether ``pid`` exists and is (still) a child of this process."""
    return ppid_of(pid) == os.getpid()


def zombie_children() -> set[int]:
    """The children of this process that have exited and are not reaped."""
    return {pid for pid in children() if state_of(pid) == "Z"}


def cleanup(pids: Iterable[int]) -> None:
    """SIGKILL and reap each PID that is still a child of this process."""
    for pid in pids:
        if not is_my_child(pid):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def cmdline(pid: int) -> str | None:
    """The command line of ``pid`` with spaces, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


@pytest.fixture
def no_new_zombies() -> Iterator[None]:
    """Fail if the test leaves a zombie child of this process behind."""
    before = zombie_children()
    yield
    left = zombie_children() - before
    cleanup(left)
    assert not left, f"zombies left behind: {sorted(left)}"


def spawn(argv: list[str], *, setpgroup: bool = False, stdout: int | None = None) -> int:
    """Start ``argv`` with ``posix_spawn``: a plain child, no Popen object."""
    actions = [(os.POSIX_SPAWN_DUP2, stdout, 1)] if stdout is not None else []
    if setpgroup:
        return os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions, setpgroup=0)
    return os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions)


class Pipe:
    """A pipe whose ends are closed at most once (a descriptor number closed
    twice could be someone else's by then), readable by line under trio or
    asyncio, waiting on the descriptor, never on a timer."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self._open = {self.r, self.w}
        self._buffer = b""

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def close_write(self) -> None:
        """Close this process's write end (the child keeps its copy)."""
        self._close(self.w)

    def close(self) -> None:
        """Close both ends, those still open."""
        for fd in (self.r, self.w):
            self._close(fd)

    def __enter__(self) -> Pipe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read_all(self) -> str:
        """Everything up to end of file (every writer has gone), then close."""
        self.close_write()
        chunks = [self._buffer]
        os.set_blocking(self.r, True)
        while chunk := os.read(self.r, 65536):
            chunks.append(chunk)
        self.close()
        return b"".join(chunks).decode()

    async def readline(self) -> str:
        """The next line, without its newline; EOFError at end of file."""
        os.set_blocking(self.r, False)
        while b"\n" not in self._buffer:
            await anyio.wait_readable(self.r)
            try:
                chunk = os.read(self.r, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                raise EOFError(f"end of file after {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


def subreaper_state() -> int:
    """PR_GET_CHILD_SUBREAPER of this process."""
    value = ctypes.c_int(0)
    prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(value))
    return value.value


@contextmanager
def subreaper_restored() -> Iterator[None]:
    """Put the child-subreaper flag back as it was, whatever the test set."""
    before = subreaper_state()
    try:
        yield
    finally:
        prctl(PR_SET_CHILD_SUBREAPER, before)


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (itself if it is no group)."""
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found += leaves(inner)
        return found
    return [exc]
