"""Exit statuses: what a process's end means, and which code the init exits with."""

from __future__ import annotations

import os

import attrs

from nucleus_trio.exits import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_USAGE
from nucleus_trio.spawn import exec_failure_code

__all__ = [
    "EXIT_CANNOT_EXECUTE",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "ExitStatus",
    "exec_failure_code",
    "init_exit_code",
]


@attrs.frozen
class ExitStatus:
    """How a process ended: exactly one of ``code`` and ``signal`` is set."""

    pid: int
    code: int | None = None
    signal: int | None = None
    core_dumped: bool = False

    def __attrs_post_init__(self) -> None:
        if (self.code is None) == (self.signal is None):
            raise ValueError("exactly one of code and signal must be set")

    @classmethod
    def from_siginfo(cls, info: os.waitid_result) -> ExitStatus:
        """Build from what ``os.waitid(..., WEXITED)`` returned."""
        if info.si_code == os.CLD_EXITED:
            return cls(info.si_pid, code=info.si_status)
        return cls(
            info.si_pid,
            signal=info.si_status,
            core_dumped=info.si_code == os.CLD_DUMPED,
        )

    @classmethod
    def from_wait_status(cls, pid: int, status: int) -> ExitStatus:
        """Build from a ``waitpid`` status word."""
        if os.WIFSIGNALED(status):
            return cls(pid, signal=os.WTERMSIG(status), core_dumped=os.WCOREDUMP(status))
        return cls(pid, code=os.waitstatus_to_exitcode(status))

    @property
    def shell_code(self) -> int:
        """The number a shell would report: the code, or 128 + the signal."""
        if self.signal is not None:
            return 128 + self.signal
        assert self.code is not None
        return self.code

    def describe(self) -> str:
        """A short phrase for logs: ``exited with 3``, ``killed by SIGTERM``."""
        if self.signal is not None:
            from nucleus_trio.signals import signal_name

            dumped = " (core dumped)" if self.core_dumped else ""
            return f"killed by {signal_name(self.signal)}{dumped}"
        return f"exited with {self.code}"


def init_exit_code(status: ExitStatus, remap: frozenset[int] = frozenset()) -> int:
    """The init's exit code for the workload's ``status``.

    The shell-style number (128+S for a death by signal S), or 0 when that
    number is one of ``remap`` (``--remap-exit``). Codes are taken modulo 256,
    as the kernel would.
    """
    code = status.shell_code & 0xFF
    return 0 if code in remap else code
