"""A workload that ends before trio has loaded: report it and leave at once.

trio takes about 100 ms to import, and the command line imports it only once
the workload runs (README, "Benchmarks": start latency). A short-lived
workload (``INIT -- true``, a one-shot ``docker run --rm``, a health check)
is often over before that. When it has left nothing behind (no process, no
zombie) and no forwarded signal waits, there is nothing for the machinery to
do: the init writes the events it would have written and exits with the
workload's status, without waiting for trio. Otherwise it returns ``None``
and the machinery runs as ever.

Standard library only, and ``posix`` rather than ``os``: this is loaded
while the workload execs, and runs while another thread may still be
importing trio, attrs and the rest.
"""

import _signal
import _thread
import posix
import time

from nucleus_trio import events
from nucleus_trio.config import Config
from nucleus_trio.levels import DEBUG
from nucleus_trio.proctree import leftovers, list_children
from nucleus_trio.signals import FORWARDED
from nucleus_trio.status import ExitStatus, init_exit_code
from nucleus_trio.stderr import write_stderr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType


def nothing_left(workload: int) -> bool:
    """Whether the init has nothing to do but leave: no live process in its
    namespace or subtree, no child but the (exited) workload, no forwarded
    signal pending."""
    if _signal.sigpending() & FORWARDED:
        return False
    if any(child != workload for child in list_children()):
        return False  # an orphan's zombie, or a live child: the reaper's
    return not leftovers()


def leave_early(
    config: Config,
    pid: int,
    pidfd: int,
    notes: "list[events.Event]",
    audit_fd: int | None,
    started: float | None,
) -> int | None:
    """Reap the exited workload and record its end, if nothing else is left;
    return the init's exit code, or ``None`` for the machinery's way."""
    if not nothing_left(pid):
        return None
    info = posix.waitid(posix.P_PIDFD, pidfd, posix.WEXITED | posix.WNOHANG)
    if info is None:  # pragma: no cover - the pidfd said it had exited
        return None
    posix.close(pidfd)
    status = ExitStatus.from_siginfo(info)
    code = init_exit_code(status, config.remap_exit)
    from nucleus_trio.handover import audit_now, opening_events

    runtime = time.monotonic() - started if started is not None else None
    ending = [
        events.workload_exited(status),
        events.log(DEBUG, "the workload ended before trio was up, nothing left: leaving at once"),
        events.container_stop(code, status, runtime=runtime),
    ]
    for event in (*opening_events(config, notes), *ending):
        if event.level <= config.verbosity:
            write_stderr(events.log_line(event))
        if event.event_type != events.LOG:
            audit_now(audit_fd, config, event)
    return code


class _Gate:
    """A meta path finder that finds nothing: it holds any thread but the
    main one at its next import while the gate is shut.

    A thread that imports runs Python code between its system calls, and at
    each system call of the main thread takes the GIL for up to a switch
    interval: held at the gate, it leaves the main thread's way out
    uncontested. Should the main thread want a module after all (which the
    held thread may hold half imported), the gate opens; and the wait is
    bounded whatever happens.
    """

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._main = _thread.get_ident()
        self._shut = False

    def find_spec(
        self,
        fullname: str,
        path: "Sequence[str] | None",
        target: "ModuleType | None" = None,
        /,
    ) -> "ModuleSpec | None":
        if not self._shut:
            return None
        if _thread.get_ident() == self._main:
            # The main thread wants a module: the held thread may hold its
            # lock, half imported. Let the import go on.
            self.open()
        elif self._lock.acquire(timeout=0.05):
            self._lock.release()
        return None

    def shut(self) -> None:
        self._lock.acquire()
        self._shut = True

    def open(self) -> None:
        if self._shut:
            self._shut = False
            self._lock.release()


class TrioImport:
    """trio's import (``importer``) in a thread of its own, so that the main
    thread can wait on the workload meanwhile, in the kernel (no polling).
    The thread has every forwarded signal blocked, as the main thread: they
    stay pending for trio's receiver."""

    def __init__(self, importer: "Callable[[], None]") -> None:
        import sys

        self._importer = importer
        self._done_read, self._done_write = posix.pipe2(posix.O_CLOEXEC)
        self._failure: list[BaseException] = []
        self._gate = _Gate()
        sys.meta_path.insert(0, self._gate)
        # The main thread must get the GIL back soon when the workload ends
        # while the import runs Python code (5 ms by default).
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        # _thread, not threading: its import would cost this path 2 ms.
        _thread.start_new_thread(self._run, ())

    def _run(self) -> None:
        try:
            self._importer()
        except BaseException as exc:
            self._failure.append(exc)
        finally:
            posix.write(self._done_write, b".")

    def workload_ends_first(self, pidfd: int) -> bool:
        """Wait until trio is imported or the workload has exited; which first?"""
        import select

        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(self._done_read, select.POLLIN)
        return pidfd in {fd for fd, _ in poller.poll()}

    def hold(self) -> None:
        """Hold the import at its next module until :meth:`release`."""
        self._gate.shut()

    def release(self) -> None:
        """Let the import go on."""
        self._gate.open()

    def join(self) -> None:
        """Wait for the import; its failure is raised here (the crash guard's)."""
        import select
        import sys

        select.select([self._done_read], [], [])  # the thread's last act
        sys.setswitchinterval(self._interval)
        sys.meta_path.remove(self._gate)
        posix.close(self._done_read)
        posix.close(self._done_write)
        if self._failure:
            raise self._failure[0]
