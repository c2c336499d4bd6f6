"""The handle of a workload started (or adopted) by a supervisor."""

from __future__ import annotations

import signal
from collections.abc import Sequence

from nucleus_trio.backend import loop
from nucleus_trio.pidfd import PidFd, StatusLostError
from nucleus_trio.status import ExitStatus
from nucleus_trio.streams import FdStream


class Process:
    """A workload of a :class:`~nucleus_trio.Supervisor`: its pidfd, argv and
    exit status; signals go through the pidfd, so a recycled PID never
    receives one."""

    def __init__(self, pidfd: PidFd, argv: Sequence[str], process_group: bool) -> None:
        self.pidfd = pidfd
        self.argv = tuple(argv)
        self.process_group = process_group
        self._exited = loop().Event()
        self._status: ExitStatus | None = None
        #: The streams of the pipes asked for with ``subprocess.PIPE``, else ``None``.
        self.stdin: FdStream | None = None
        self.stdout: FdStream | None = None
        self.stderr: FdStream | None = None

    @property
    def pid(self) -> int:
        """The process ID (not reused while this handle says it runs)."""
        return self.pidfd.pid

    @property
    def status(self) -> ExitStatus | None:
        """The exit status, once the process has exited and been reaped."""
        return self._status

    @property
    def returncode(self) -> int | None:
        """Like ``subprocess``: the code, or minus the signal; ``None`` while running."""
        if self._status is None:
            return None
        if self._status.signal is not None:
            return -self._status.signal
        return self._status.code

    @property
    def exited(self) -> bool:
        """Whether the process has exited and been reaped (or lost)."""
        return bool(self._exited.is_set())

    async def wait(self) -> ExitStatus:
        """Wait for the exit and return the status (any number of tasks may wait)."""
        await self._exited.wait()
        if self._status is None:
            raise StatusLostError(f"pid {self.pid} was reaped by someone else")
        return self._status

    def _take_pipes(self, fds: dict[str, int]) -> None:
        """Make streams of our ends of the pipes (``popen_workload``'s)."""
        for name, fd in fds.items():
            setattr(self, name, FdStream(fd))

    def close_streams(self) -> None:
        """Close the streams this handle holds."""
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()

    def _finish(self, status: ExitStatus | None) -> None:
        """Record the end (``None``: the status is lost) and wake the waiters."""
        self._status = status
        self.pidfd.close()
        self._exited.set()

    def send_signal(self, signo: int, *, group: bool | None = None) -> None:
        """Send ``signo`` through the pidfd (to the process group with ``group``,
        which defaults to whether the process was started in its own group).

        Once the process has exited this does nothing, as ``Popen`` and
        trio's ``Process`` do; the pidfd never lets a signal reach a process
        that reused the PID (:meth:`PidFd.send_signal` raises there).
        """
        if self.exited:
            return
        try:
            self.pidfd.send_signal(signo, group=self.process_group if group is None else group)
        except ProcessLookupError:
            pass  # it exited after the check: nothing to do, as after the exit

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL."""
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<Process pid={self.pid} argv={list(self.argv)!r} status={self._status!r}>"
