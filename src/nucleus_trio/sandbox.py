"""Sandboxes: a workload under nucleus-trio as PID 1 of a new PID namespace,
with its own ``/proc``, driven from a trio or asyncio program (README,
"Sandboxes").

When the init exits, the kernel ends every process left in its namespace,
whatever session or group it fled to: nothing started in a sandbox outlives
the ``async with`` block. The init is the command line itself, with every
flag available as a keyword (:func:`~nucleus_trio.config.flags_for`); its
audit events come back over a pipe (``--audit fd:N``) as records, in the
vocabulary of the library's events. How the namespaces are entered is in
:mod:`nucleus_trio.namespaces`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from nucleus_trio.backend import loop
from nucleus_trio.config import UsageError, flags_for
from nucleus_trio.namespaces import ChildSetup, init_command, parse_report, plan_namespaces
from nucleus_trio.pidfd import PidFd
from nucleus_trio.process import Process
from nucleus_trio.status import ExitStatus
from nucleus_trio.streams import FdStream
from nucleus_trio.supervisor import open_supervisor

#: What the sandbox waits beyond the init's own shutdown (its grace, and
#: ``kill_after`` when given) before it SIGKILLs the init, and with it the
#: whole namespace.
DEFAULT_MARGIN = 2.0

_STAGES = {
    "unshare": "cannot make the namespaces (unshare)",
    "user-map": "cannot map the caller to root in a user namespace",
    "fork": "cannot fork the namespace's PID 1",
    "pdeathsig": "cannot set the init's parent-death signal",
    "mount-proc": "cannot mount the namespace's /proc",
    "hostname": "cannot set the hostname",
    "loopback": "cannot bring the loopback up",
}


class SandboxError(OSError):
    """A sandbox could not be made: a kernel feature that is missing or
    refused (user namespaces disabled, no ``/proc`` mount allowed...).
    ``stage`` names the step that failed; ``errno`` says why."""

    def __init__(self, stage: str, errno_value: int) -> None:
        hint = ""
        if stage in ("unshare", "user-map") and errno_value in (1, 28, 22):
            hint = " (are user namespaces enabled? see user.max_user_namespaces)"
        elif stage == "mount-proc" and errno_value == 1:
            hint = " (is /proc fully visible here? a container's masked /proc refuses it)"
        reason = os.strerror(errno_value) if errno_value else "unknown error"
        super().__init__(errno_value, f"{_STAGES.get(stage, stage)}: {reason}{hint}")
        self.stage = stage

    def __str__(self) -> str:
        return str(self.strerror)  # one line, without the "[Errno N]"


class Sandbox:
    """A running sandbox: its init's host PID, its signals, its end, and the
    init's audit records. Made by :func:`open_sandbox`."""

    def __init__(self, relay: Process, init_pid: int, init: PidFd | None, audit: FdStream) -> None:
        self._relay = relay
        self._init_pid = init_pid
        self._init = init  # None: it had ended before its pidfd could be opened
        self._audit = audit
        #: Every audit record so far, in order (``{"event": ..., ...}``).
        self.records: list[dict[str, Any]] = []
        self._audit_done = False
        self._arrived = loop().Event()
        #: Whether leaving the block had to SIGKILL the init (and so the
        #: whole namespace).
        self.killed = False
        #: The sandbox's PID namespace as ``/proc`` names it (``pid:[INODE]``,
        #: as ``/proc/PID/ns/pid`` of each of its processes reads), or
        #: ``None`` when the init had ended before it could be read.
        self.pid_namespace: str | None = None

    @property
    def pid(self) -> int:
        """The init's PID on the host (it is PID 1 inside)."""
        return self._init_pid

    @property
    def stdin(self) -> FdStream | None:
        """The workload's stdin, with ``stdin=subprocess.PIPE``."""
        return self._relay.stdin

    @property
    def stdout(self) -> FdStream | None:
        """The workload's stdout, with ``stdout=subprocess.PIPE``."""
        return self._relay.stdout

    @property
    def stderr(self) -> FdStream | None:
        """The workload's (and the init's) stderr, with ``stderr=subprocess.PIPE``."""
        return self._relay.stderr

    @property
    def status(self) -> ExitStatus | None:
        """The init's exit status (the workload's code, or 128+S), once ended."""
        return self._relay.status

    def send_signal(self, signo: int) -> None:
        """Send ``signo`` to the init, which forwards it as the command line
        does (``pgroup`` and ``rewrite`` apply); no-op once it has ended."""
        if self._relay.exited or self._init is None or self._init.closed:
            return
        try:
            self._init.send_signal(signo)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the init: the kernel ends every process of the namespace."""
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> ExitStatus:
        """Wait for the init's end; its status is the workload's (the code N,
        128+S for a signal S, 127 when the program was not found)."""
        return await self._relay.wait()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The init's audit records from the first, as they arrive, to its end."""
        index = 0
        while True:
            while index < len(self.records):
                yield self.records[index]
                index += 1
            if self._audit_done:
                return
            arrived = self._arrived
            await arrived.wait()

    async def _read_audit(self) -> None:
        """The audit pipe's reader, always running, so a sandbox that nobody
        listens to never stalls its init's audit."""
        pending = b""
        try:
            async for chunk in self._audit:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line.strip():
                        self.records.append(json.loads(line))
                self._wake()
        finally:
            self._audit_done = True
            self._wake()
            self._audit.close()

    def _wake(self) -> None:
        arrived, self._arrived = self._arrived, loop().Event()
        arrived.set()

    async def _end(self, timeout: float) -> None:
        """SIGTERM to the init; SIGKILL to it after ``timeout``."""
        calls = loop()
        try:
            with calls.CancelScope(shield=True):
                if not self._relay.exited:
                    self.send_signal(signal.SIGTERM)
                    with calls.move_on_after(timeout):
                        await self._relay.wait()
                if not self._relay.exited:
                    self.killed = True
                    self.kill()
                    with calls.move_on_after(10):
                        await self._relay.wait()
                with calls.move_on_after(5):
                    while not self._audit_done:
                        await self._arrived.wait()
        except BaseException:
            # A second Ctrl-C cuts the wait short, not the end: the namespace
            # goes at once (and the supervisor reaps the relay).
            self.killed = not self._relay.exited
            self.kill()
            raise
        finally:
            if self._init is not None:
                self._init.close()


@asynccontextmanager
async def open_sandbox(
    argv: Sequence[str],
    *,
    hostname: str | None = None,
    network: str = "host",
    cwd: str | os.PathLike[str] | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    rootless: bool | None = None,
    margin: float = DEFAULT_MARGIN,
    **options: Any,
) -> AsyncIterator[Sandbox]:
    """Run ``argv`` under nucleus-trio as PID 1 of a new PID namespace for
    the duration of the ``async with`` block (README, "Sandboxes").

    ``options`` are the command line's flags as keywords (``grace=1``,
    ``kill_after=5``, ``pgroup=True``, ``rewrite=["TERM:INT"]``,
    ``clean_env=True``, ``env={"KEY": "VALUE"}``, ``user="nobody"``,
    ``groups=["audio"]``, ``no_new_privs=True``, ``container_id="..."``...);
    a bad one raises :class:`~nucleus_trio.UsageError`. ``hostname`` gives
    the sandbox a UTS namespace; ``network="none"`` a network namespace with
    only the loopback. ``cwd`` and the stdio are as in
    :meth:`Supervisor.start <nucleus_trio.Supervisor.start>`. ``rootless``:
    a user namespace mapping the caller to root (default: when the caller
    is not root). Leaving the block sends SIGTERM to the init (which
    forwards it and shuts the leftovers down with its grace); an init still
    there ``margin`` seconds after its own deadline gets SIGKILL, which ends
    the namespace. Raises :class:`SandboxError` when the kernel refuses.
    """
    if not argv:
        raise ValueError("argv must not be empty")
    flags = flags_for(options)
    namespaces = plan_namespaces(
        os.geteuid(), rootless=rootless, network=network, hostname=hostname
    )
    deadline = _shutdown_time(flags) + margin
    audit_read, audit_write = os.pipe2(os.O_CLOEXEC)
    report_read, report_write = os.pipe2(os.O_CLOEXEC)
    try:
        # PID 1 must die with its relay: --pdeathsig is set by the setup.
        command = init_command(sys.executable, _module_path(), flags, audit_write, argv)
        async with open_supervisor(grace=deadline + 1) as supervisor:
            relay = await supervisor._machinery.spawn(
                command,
                cwd=cwd,
                pass_fds=(audit_write,),
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                shown_argv=list(argv),
                child_setup=ChildSetup(namespaces, report_write),
            )
            for fd in (audit_write, report_write):
                os.close(fd)
            audit_write = report_write = -1
            reading, report_read = report_read, -1  # _init_of closes it
            init_pid, init = await _init_of(relay, reading)
            box = Sandbox(relay, init_pid, init, FdStream(audit_read))
            box.pid_namespace = _namespace_of(init)
            audit_read = -1
            # In the supervisor's task group, which ends it after the block,
            # and lets the block's own exception out as itself.
            supervisor._machinery.task_group().start_soon(box._read_audit)
            try:
                yield box
            finally:
                await box._end(deadline)
    finally:
        for fd in (audit_read, audit_write, report_read, report_write):
            if fd >= 0:
                os.close(fd)


async def _init_of(relay: Process, report_read: int) -> tuple[int, PidFd | None]:
    """The init's host PID and pidfd, from the relay's report (read to its end, which
    comes with the init's exec); :class:`SandboxError` if a stage failed."""
    data = b""
    stream = FdStream(report_read)
    try:
        async for chunk in stream:
            data += chunk
    finally:
        stream.close()
    pid, failure = parse_report(data)
    if failure is not None or pid is None:
        stage, number = failure or ("fork", 0)
        with loop().CancelScope(shield=True):
            if not relay.exited:
                relay.pidfd.send_signal(signal.SIGKILL)
            await relay.wait()
        raise SandboxError(stage, number)
    try:
        return pid, PidFd.open(pid)
    except ProcessLookupError:
        return pid, None  # over already (its relay has reaped it)


def _namespace_of(init: PidFd | None) -> str | None:
    """The init's PID namespace as ``/proc`` names it; ``None`` once it has
    ended. Read while its pidfd is open, so that the PID cannot be another
    process's by then."""
    if init is None:
        return None
    try:
        return os.readlink(f"/proc/{init.pid}/ns/pid")
    except OSError:
        return None


def _shutdown_time(flags: Sequence[str]) -> float:
    """How long the init's own shutdown may take after a SIGTERM: its
    ``kill_after`` (when given) and its grace."""
    from nucleus_trio.config import parse_args

    _, config = parse_args([*flags, "--", "true"])
    return (config.kill_after or 0.0) + config.grace


def _module_path() -> list[str]:
    """The caller's module path, for the init to import the same packages."""
    return [entry for entry in sys.path if entry and os.path.isabs(entry)]


__all__ = ["DEFAULT_MARGIN", "Sandbox", "SandboxError", "UsageError", "open_sandbox"]
