"""Exit statuses: what a process's end means, and which code the init exits with."""

import posix

from nucleus_trio.exits import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_USAGE
from nucleus_trio.spawn import exec_failure_code

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os

__all__ = [
    "EXIT_CANNOT_EXECUTE",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "ExitStatus",
    "exec_failure_code",
    "init_exit_code",
]


class ExitStatus:
    """How a process ended: exactly one of ``code`` and ``signal`` is set.

    Immutable, compared and hashed by value. A plain ``__slots__`` class, not
    attrs: the init builds one for a workload that ends before trio (and
    attrs, which trio imports) has loaded (README, "Benchmarks").
    """

    __slots__ = ("code", "core_dumped", "pid", "signal")

    pid: int
    code: int | None
    signal: int | None
    core_dumped: bool

    def __init__(
        self,
        pid: int,
        code: int | None = None,
        signal: int | None = None,
        core_dumped: bool = False,
    ) -> None:
        if (code is None) == (signal is None):
            raise ValueError("exactly one of code and signal must be set")
        for name, value in (("pid", pid), ("code", code), ("signal", signal)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "core_dumped", core_dumped)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ExitStatus is immutable: cannot set {name}")

    def _key(self) -> tuple[int, int | None, int | None, bool]:
        return (self.pid, self.code, self.signal, self.core_dumped)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, ExitStatus)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"ExitStatus(pid={self.pid!r}, code={self.code!r}, signal={self.signal!r}, "
            f"core_dumped={self.core_dumped!r})"
        )

    @classmethod
    def from_siginfo(cls, info: "os.waitid_result") -> "ExitStatus":
        """Build from what ``posix.waitid(..., WEXITED)`` returned."""
        if info.si_code == posix.CLD_EXITED:
            return cls(info.si_pid, code=info.si_status)
        return cls(
            info.si_pid,
            signal=info.si_status,
            core_dumped=info.si_code == posix.CLD_DUMPED,
        )

    @classmethod
    def from_wait_status(cls, pid: int, status: int) -> "ExitStatus":
        """Build from a ``waitpid`` status word."""
        if posix.WIFSIGNALED(status):
            return cls(pid, signal=posix.WTERMSIG(status), core_dumped=posix.WCOREDUMP(status))
        return cls(pid, code=posix.waitstatus_to_exitcode(status))

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
