"""A pidfd wrapper: wait for a process without blocking trio, and signal it safely.

A pidfd names one process for good: once it is reaped, signals through the
pidfd fail with ``ESRCH`` instead of reaching whoever reuses the PID.
"""

from __future__ import annotations

import errno
import os
import signal
from types import TracebackType

from nucleus_trio.backend import checkpoint, notify_closing, wait_readable
from nucleus_trio.kernel import PIDFD_SIGNAL_PROCESS_GROUP
from nucleus_trio.status import ExitStatus

# Set once a kernel (before 6.9) refuses PIDFD_SIGNAL_PROCESS_GROUP, so later
# group signals go straight to killpg.
_group_flag_supported = True


class StatusLostError(Exception):
    """The process was reaped by someone else, so its exit status is unknown."""


class PidFd:
    """An open pidfd for one process.

    Use :meth:`open` (or the constructor with an fd already open), then
    ``await wait()`` for the exit status, :meth:`send_signal`, and
    :meth:`close` (or ``with``). Works under trio and, through anyio, asyncio.
    One task at a time may wait on it.
    """

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self._fd = fd
        self._status: ExitStatus | None = None

    @classmethod
    def open(cls, pid: int) -> PidFd:
        """Open a pidfd for ``pid``; raises ``ProcessLookupError`` if it is gone."""
        return cls(pid, os.pidfd_open(pid))

    def fileno(self) -> int:
        """The descriptor, or -1 once closed."""
        return self._fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._fd < 0

    @property
    def status(self) -> ExitStatus | None:
        """The exit status once :meth:`wait` or :meth:`poll` has reaped it."""
        return self._status

    def mark_reaped(self, status: ExitStatus) -> None:
        """Record that someone who owns every child reaped this one, with
        ``status``: :meth:`wait` returns it, and signals are refused from now
        on (the PID may be reused)."""
        self._status = status

    def poll(self) -> ExitStatus | None:
        """Reap the process if it has exited, without waiting; ``None`` while
        it runs, whoever its parent is.

        Raises :class:`StatusLostError` if another waiter reaped it first (or,
        for a process that is not this one's child, once it has exited).
        """
        if self._status is not None:
            return self._status
        if self._fd < 0:
            raise ValueError("pidfd is closed")
        try:
            info = os.waitid(os.P_PIDFD, self._fd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            # Not our child: running (its pidfd is not readable yet), or
            # reaped by someone else.
            if not self._readable_now():
                return None
            raise StatusLostError(f"pid {self.pid} was reaped by someone else") from None
        if info is None:
            return None
        self._status = ExitStatus.from_siginfo(info)
        return self._status

    def _readable_now(self) -> bool:
        import select

        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(0))

    async def wait(self) -> ExitStatus:
        """Wait until the process exits, reap it and return its status.

        Raises ``ValueError`` if the pidfd is closed, before or during the wait.
        """
        while True:
            status = self.poll()
            if status is not None:
                await checkpoint()
                return status
            await self._wait_readable()

    async def _wait_readable(self) -> None:
        try:
            await wait_readable(self._fd)
        except Exception as exc:
            # Closed under the waiter: trio and anyio each raise their own
            # ClosedResourceError; callers get one error, on either backend.
            if self._fd < 0:
                raise ValueError("pidfd is closed") from exc
            raise

    async def wait_exited(self) -> None:
        """Wait until the process has exited, without reaping it.

        Works for processes that are not this process's children too.
        Raises ``ValueError`` if the pidfd is closed, before or during the wait.
        """
        if self._fd < 0:
            raise ValueError("pidfd is closed")
        if self._status is not None:
            await checkpoint()
            return
        await self._wait_readable()

    def send_signal(self, signo: int, *, group: bool = False) -> None:
        """Send ``signo`` to the process, or to its process group with ``group``.

        Raises ``ProcessLookupError`` once the process has been reaped. For a
        group, the kernel's ``PIDFD_SIGNAL_PROCESS_GROUP`` is used where it
        exists; elsewhere ``killpg`` on the process's group, which is safe for
        as long as the process (the group's leader) is not reaped.
        """
        global _group_flag_supported
        if self._fd < 0 or self._status is not None:
            raise ProcessLookupError(errno.ESRCH, f"pid {self.pid} has been reaped")
        if group and _group_flag_supported:
            try:
                signal.pidfd_send_signal(self._fd, signo, None, PIDFD_SIGNAL_PROCESS_GROUP)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                _group_flag_supported = False
        if group:
            os.killpg(os.getpgid(self.pid), signo)
        else:
            signal.pidfd_send_signal(self._fd, signo, None, 0)

    def close(self) -> None:
        """Close the descriptor; a task waiting on it is woken with ``ValueError``."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            notify_closing(fd)
            os.close(fd)

    def __enter__(self) -> PidFd:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PidFd(pid={self.pid}, fd={self._fd})"
