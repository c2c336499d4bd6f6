"""The library's face of the machinery: a supervisor in the caller's nursery.

::

    async with nucleus_trio.open_supervisor(reap_orphans=True) as supervisor:
        worker = await supervisor.start(["my-worker", "--port", "8080"])
        supervisor.forward_signals(worker)
        status = await worker.wait()

It runs on trio or asyncio (through anyio). Leaving the block, or cancelling
the surrounding scope, ends every workload still running and everything the
workloads left behind (their descendants, and the orphans re-parented to
this process as subreaper): SIGTERM, then SIGKILL after the grace period,
and each is reaped, so no zombie is left. A second Ctrl-C or a cancellation
during the grace never skips the SIGKILL (README, "Library"). Orphan
reaping, when asked for, never takes the exit status of a child that
someone else waits for (see :mod:`nucleus_trio.claims`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from nucleus_trio.audit import EventLog, EventSinkLike
from nucleus_trio.claims import ClaimsUnknown
from nucleus_trio.forwarding import LIBRARY_DEFAULT, check_library_signals
from nucleus_trio.identity import Identity
from nucleus_trio.machinery import Machinery
from nucleus_trio.process import Process
from nucleus_trio.restart import RestartPolicy, Worker
from nucleus_trio.status import ExitStatus
from nucleus_trio.streams import FdStream


class Supervisor:
    """Starts workloads and keeps them in check inside the caller's task group.

    Make one with :func:`open_supervisor`, or ``await nursery.start(sup.run)``.
    """

    def __init__(
        self,
        *,
        grace: float = 5.0,
        reap_orphans: bool = False,
        subreaper: bool = False,
        events: EventSinkLike | None = None,
        container_id: str = "",
        container_name: str = "",
        event_capacity: int = 1024,
    ) -> None:
        log = EventLog(
            -1,  # the library never writes to the host program's stderr
            sink=events,
            container_id=container_id,
            container_name=container_name,
            capacity=event_capacity,
        )
        self._machinery = Machinery(
            grace=grace, log=log, reap_orphans=reap_orphans, subreaper=subreaper
        )

    @property
    def grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL when the block ends."""
        return self._machinery.grace

    @property
    def processes(self) -> dict[int, Process]:
        """Every workload started, by PID (exited ones included)."""
        return self._machinery.processes

    @property
    def reaped_orphans(self) -> list[ExitStatus]:
        """The statuses of the orphans reaped so far."""
        return self._machinery.reaped_orphans

    @property
    def events_dropped(self) -> int:
        """Events the sink could not take (full, slow or broken)."""
        return self._machinery.log.audit_dropped

    async def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        clean_env: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        identity: Identity | None = None,
        process_group: bool = True,
        no_new_privs: bool = False,
        pass_fds: Sequence[int] = (),
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> Process:
        """Start ``argv`` and return its :class:`Process` handle (a checkpoint).

        ``env`` adds to (or, with ``clean_env``, to the minimal environment
        replaces) the inherited environment. ``identity`` (see
        :func:`nucleus_trio.identity.resolve_identity`) sets groups, gid and
        uid. The workload runs in its own process group unless
        ``process_group`` is false. Raises :class:`~nucleus_trio.SpawnError`
        (with ``exit_code`` 126 or 127) when the program cannot run.
        """
        return await self._machinery.spawn(
            argv,
            env=env,
            clean_env=clean_env,
            identity=identity,
            no_new_privs=no_new_privs,
            cwd=cwd,
            process_group=process_group,
            pass_fds=pass_fds,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )

    async def start_worker(
        self,
        argv: Sequence[str],
        *,
        restart: RestartPolicy | None = None,
        **options: Any,
    ) -> Worker:
        """Start ``argv`` as a :class:`~nucleus_trio.restart.Worker` that
        ``restart`` (by default ``RestartPolicy()``: on failure, with
        backoff and a burst limit) starts again when it exits; ``options``
        are :meth:`start`'s, used for every run. Each restart is a
        ``workload_restarting`` event, giving up a ``restart_limit_reached``
        one. The first start raises as :meth:`start` does; a later one that
        cannot run ends the worker (its :meth:`~Worker.wait` raises).
        """
        process = await self.start(argv, **options)
        worker = Worker(self._machinery, process, restart or RestartPolicy(), options)
        self._machinery.task_group().start_soon(worker.supervise)
        return worker

    async def run_process(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        capture_output: bool = False,
        check: bool = True,
        **options: Any,
    ) -> CompletedProcess:
        """Run ``argv`` to its end, as ``trio.run_process`` and
        ``subprocess.run`` do: feed it ``input``, collect its stdout and
        stderr with ``capture_output``, and with ``check`` raise
        ``subprocess.CalledProcessError`` when it fails. ``options`` are
        :meth:`start`'s. Cancelled, it kills the process and reaps it first.
        """
        if input is not None:
            options["stdin"] = subprocess.PIPE
        if capture_output:
            options["stdout"] = options["stderr"] = subprocess.PIPE
        process = await self.start(argv, **options)
        output: dict[str, bytes] = {}
        try:
            async with anyio.create_task_group() as group:
                if input is not None and process.stdin is not None:
                    group.start_soon(_feed, process.stdin, input)
                for name in ("stdout", "stderr"):
                    stream = getattr(process, name)
                    if stream is not None:
                        group.start_soon(_collect, stream, output, name)
                status = await process.wait()
        except BaseException:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
            raise
        finally:
            process.close_streams()
        returncode = -status.signal if status.signal is not None else (status.code or 0)
        result = CompletedProcess(argv, returncode, output.get("stdout"), output.get("stderr"))
        result.status = status
        if check and status.shell_code != 0:
            raise subprocess.CalledProcessError(
                result.returncode, list(argv), result.stdout, result.stderr
            )
        return result

    def claim(self, pid: int) -> None:
        """Never reap ``pid`` as an orphan: its parent code waits for it itself."""
        self._machinery.claimed.add(pid)

    def unclaim(self, pid: int) -> None:
        """Undo :meth:`claim` (an exited ``pid`` is reaped now, when reaping)."""
        self._machinery.claimed.discard(pid)
        if self._machinery.reaper is not None:
            with contextlib.suppress(ClaimsUnknown):
                self._machinery.reaper.reap_now()

    def forward_signals(
        self,
        processes: Process | Worker | Iterable[Process | Worker],
        signals: Iterable[int] = LIBRARY_DEFAULT,
        *,
        group: bool | None = None,
    ) -> None:
        """Forward the signals this program receives to each of ``processes``
        (one :class:`Process`, several, or ``supervisor.processes.values()``)
        until it exits; to a :class:`~nucleus_trio.restart.Worker`, to each
        of its runs.

        Must be called from the main thread. The default set is TERM, INT,
        HUP, QUIT, USR1, USR2 and WINCH; SIGPIPE is never forwarded (the
        program's own broken-pipe writes raise it). A signal the loop cannot
        receive (a realtime one on asyncio) raises ``ValueError`` here, not
        in a background task. Several processes may share a signal: each
        gets it.
        """
        from nucleus_trio.backend import refused_signals

        wanted = frozenset(int(s) for s in signals)
        checked = check_library_signals(wanted, refused_signals(wanted))
        targets = [processes] if isinstance(processes, Process | Worker) else list(processes)
        for target in targets:
            if isinstance(target, Worker):
                target.forward(checked, group)
            elif not target.exited:
                self._machinery.forward(target, checked, group=group)

    def reap_now(self) -> list[ExitStatus]:
        """Reap every orphan nobody claims, now; return their statuses."""
        return self._machinery.reap_now()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Supervisor] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the supervisor until cancelled: for ``await nursery.start(sup.run)``."""
        async with self._machinery.running():
            task_status.started(self)
            await anyio.sleep_forever()


class CompletedProcess(subprocess.CompletedProcess[bytes]):
    """What :meth:`Supervisor.run_process` returns: ``subprocess``'s result,
    with the :class:`~nucleus_trio.ExitStatus` as ``status``."""

    status: ExitStatus


async def _feed(stream: FdStream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except BrokenPipeError:
        pass  # it stopped reading: what it read is what it gets, as subprocess
    finally:
        await stream.aclose()


async def _collect(stream: FdStream, into: dict[str, bytes], name: str) -> None:
    chunks = [chunk async for chunk in stream]
    into[name] = b"".join(chunks)


@contextlib.asynccontextmanager
async def open_supervisor(
    *,
    grace: float = 5.0,
    reap_orphans: bool = False,
    subreaper: bool = False,
    events: EventSinkLike | None = None,
    container_id: str = "",
    container_name: str = "",
) -> AsyncIterator[Supervisor]:
    """Run a :class:`Supervisor` for the duration of the ``async with`` block.

    ``reap_orphans`` reaps zombies nobody else claims (useful as PID 1 or
    with ``subreaper``, which registers this process as child subreaper).
    ``events`` receives one audit record per event: see
    :data:`~nucleus_trio.audit.EventSinkLike`. On the way out every workload
    still running, and what the workloads left behind, gets SIGTERM, then
    SIGKILL after ``grace`` seconds, and is reaped.
    """
    supervisor = Supervisor(
        grace=grace,
        reap_orphans=reap_orphans,
        subreaper=subreaper,
        events=events,
        container_id=container_id,
        container_name=container_name,
    )
    async with supervisor._machinery.running():
        yield supervisor


async def run_process(argv: Sequence[str], **options: Any) -> CompletedProcess:
    """Run ``argv`` to its end in a supervisor of its own: see
    :meth:`Supervisor.run_process` (``input``, ``capture_output``, ``check``
    and :meth:`Supervisor.start`'s options)."""
    async with open_supervisor() as supervisor:
        return await supervisor.run_process(argv, **options)


__all__ = [
    "CompletedProcess",
    "EventSinkLike",
    "Process",
    "RestartPolicy",
    "Supervisor",
    "Worker",
    "open_supervisor",
    "run_process",
]
