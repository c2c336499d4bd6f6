"""A supervisor that runs in the caller's nursery (trio, or asyncio via anyio).

::

    async with nucleus_trio.open_supervisor(reap_orphans=True) as supervisor:
        worker = await supervisor.start(["my-worker", "--port", "8080"])
        supervisor.forward_signals(worker)
        status = await worker.wait()

Leaving the block (or cancelling the surrounding scope) ends every workload
still running: SIGTERM, then SIGKILL after the grace period, and each is
reaped, so no zombie is left. Orphan reaping, when asked for, never takes the
exit status of a child that someone else waits for (``subprocess.Popen``,
``trio.run_process``, asyncio, multiprocessing, an open pidfd of this process,
or a PID handed to :meth:`Supervisor.claim`).
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio
import anyio.abc
import sniffio

from nucleus_trio.audit import Event
from nucleus_trio.environment import workload_environment
from nucleus_trio.identity import Identity
from nucleus_trio.levels import DEBUG, INFO, WARNING
from nucleus_trio.pidfd import PidFd, StatusLostError
from nucleus_trio.reaper import reap_unclaimed
from nucleus_trio.records import audit_line
from nucleus_trio.signals import FORWARDED, signal_name
from nucleus_trio.spawn import SpawnError, exec_failure_code
from nucleus_trio.status import ExitStatus

#: While a zombie nobody claims yet cannot be attributed for certain (a
#: ``Popen`` is being built, or someone else's zombie blocks the view), the
#: reaper looks again after this long. Never while idle.
RECHECK_DELAY = 0.02

#: After SIGKILL, how long to wait for the workloads to die on the way out.
KILL_WAIT = 5.0

EventSinkLike = Any
"""What :func:`open_supervisor` accepts as ``events``: a path (``str`` or
``os.PathLike``), a text stream with ``write``, a callable taking the record
``dict``, or a memory channel / object stream with ``send_nowait``."""


class Process:
    """A workload started by a :class:`Supervisor`."""

    def __init__(self, pidfd: PidFd, argv: Sequence[str], process_group: bool) -> None:
        self.pidfd = pidfd
        self.argv = tuple(argv)
        self.process_group = process_group
        self._exited = anyio.Event()
        self._status: ExitStatus | None = None

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

    async def wait(self) -> ExitStatus:
        """Wait for the exit and return the status (any number of tasks may wait)."""
        await self._exited.wait()
        if self._status is None:
            raise StatusLostError(f"pid {self.pid} was reaped by someone else")
        return self._status

    def send_signal(self, signo: int, *, group: bool | None = None) -> None:
        """Send ``signo`` through the pidfd (to the process group with ``group``,
        which defaults to whether the process was started in its own group).

        Raises ``ProcessLookupError`` once the process has exited and been reaped.
        """
        self.pidfd.send_signal(signo, group=self.process_group if group is None else group)

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL."""
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<Process pid={self.pid} argv={list(self.argv)!r} status={self._status!r}>"


def _popen_claims() -> set[int] | None:
    """PIDs of live ``Popen`` objects (subprocess, multiprocessing); ``None``
    while one is being built, since its child may already exist unnamed."""
    claims: set[int] = set()
    roots: list[type] = [subprocess.Popen]
    try:
        from multiprocessing import popen_fork

        roots.append(popen_fork.Popen)
    except ImportError:  # pragma: no cover
        pass
    # An instance refers to its own class only: subclasses (multiprocessing's
    # spawn Popen, a user's Popen subclass) must be asked for one by one.
    classes: list[type] = []
    while roots:
        cls = roots.pop()
        if cls not in classes:
            classes.append(cls)
            roots.extend(cls.__subclasses__())
    base = tuple(classes)
    for obj in gc.get_referrers(*classes):
        if not isinstance(obj, base):
            continue
        pid = getattr(obj, "pid", None)
        if pid is None:
            return None
        if getattr(obj, "returncode", None) is None:
            claims.add(pid)
    return claims


def _pidfd_claims() -> set[int]:
    """PIDs named by the open pidfds of this process (trio.Process, asyncio, ...)."""
    claims: set[int] = set()
    try:
        names = os.listdir("/proc/self/fdinfo")
    except OSError:
        return claims
    for name in names:
        try:
            with open(f"/proc/self/fdinfo/{name}", "rb") as handle:
                info = handle.read()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith(b"Pid:"):
                pid = int(line.split()[1])
                if pid > 0:
                    claims.add(pid)
    return claims


class _Unsure(Exception):
    """The claims cannot be known right now (a Popen is under construction)."""


def _make_emitter(events: EventSinkLike | None) -> tuple[Callable[[dict[str, Any]], None], Any]:
    """Turn ``events`` into a non-blocking ``put(record)`` and an optional
    blocking writer (for files and streams, run by a task in a thread)."""
    if events is None:
        return (lambda record: None), None
    send_nowait = getattr(events, "send_nowait", None)
    if send_nowait is not None:
        return send_nowait, None
    write = getattr(events, "write", None)
    if write is not None:
        stream: TextIO = events

        def write_stream(line: bytes) -> None:
            stream.write(line.decode())
            stream.flush()

        return (lambda record: None), write_stream
    if isinstance(events, (str, os.PathLike)):
        fd = os.open(
            os.fspath(events), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )

        def write_file(line: bytes) -> None:
            os.write(fd, line)

        return (lambda record: None), write_file
    if callable(events):
        return events, None
    raise TypeError(f"cannot send events to {events!r}")


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
        self.grace = grace
        self.reap_orphans = reap_orphans
        self.subreaper = subreaper
        self.container_id = container_id
        self.container_name = container_name
        self.processes: dict[int, Process] = {}
        self.reaped_orphans: list[ExitStatus] = []
        self.events_dropped = 0
        self._claimed: set[int] = set()
        self._popens: dict[int, subprocess.Popen[bytes]] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._put, writer = _make_emitter(events)
        self._writer: Callable[[bytes], None] | None = writer
        self._lines_send, self._lines_receive = anyio.create_memory_object_stream[bytes](
            event_capacity
        )
        self._reap_wake: anyio.Event = anyio.Event()

    # -- events ---------------------------------------------------------------

    def _emit(
        self,
        event_type: str,
        detail: str,
        fields: Mapping[str, object] | None = None,
        *,
        level: int = INFO,
        is_error: bool = False,
        **more: object,
    ) -> None:
        """Record an event; never blocks, drops and counts when the sink is behind."""
        event = Event(event_type, detail, level, is_error, {**(fields or {}), **more})
        record = event.record(self.container_id, self.container_name)
        try:
            if self._writer is not None:
                self._lines_send.send_nowait(audit_line(record))
            else:
                self._put(record)
        except Exception:
            # A full channel, a closed stream or a failing callable must not
            # break supervision: count it.
            self.events_dropped += 1

    async def _write_events(self) -> None:
        assert self._writer is not None
        writer = self._writer
        async with self._lines_receive:
            async for line in self._lines_receive:
                try:
                    await anyio.to_thread.run_sync(writer, line)
                except OSError:
                    self.events_dropped += 1

    # -- starting -------------------------------------------------------------

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
        """Start ``argv`` and return its :class:`Process` handle.

        ``env`` adds to (or, with ``clean_env``, to the minimal environment
        replaces) the inherited environment. ``identity`` (see
        :func:`nucleus_trio.identity.resolve_identity`) sets groups, gid and
        uid. The workload runs in its own process group unless
        ``process_group`` is false. Raises :class:`~nucleus_trio.SpawnError`
        (with ``exit_code`` 126 or 127) when the program cannot run.
        """
        if self._task_group is None:
            raise RuntimeError("the supervisor is not running (use open_supervisor)")
        if not argv:
            raise ValueError("argv must not be empty")
        environment, _ = workload_environment(
            os.environ,
            clean_env=clean_env,
            assignments=list((env or {}).items()),
            sd_notify="NOTIFY_SOCKET" in (env or {}),
        )
        preexec = None
        if no_new_privs:
            from nucleus_trio.kernel import load_libc, set_no_new_privs

            load_libc()
            preexec = set_no_new_privs
        kwargs: dict[str, Any] = {}
        if identity is not None:
            if identity.uid is not None:
                kwargs["user"] = identity.uid
            if identity.gid is not None:
                kwargs["group"] = identity.gid
            kwargs["extra_groups"] = list(identity.groups)
        try:
            # subprocess forks in C (no Python runs in the child unless
            # no_new_privs needs its prctl), which is safe with threads.
            popen = subprocess.Popen(
                list(argv),
                env=environment,
                cwd=cwd,
                process_group=0 if process_group else None,
                pass_fds=tuple(pass_fds),
                preexec_fn=preexec,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                **kwargs,
            )
        except OSError as exc:
            code = exc.errno if exc.errno is not None else errno.EINVAL
            self._emit(
                "exec_failed",
                f"cannot run {argv[0]!r}: {os.strerror(code)}",
                level=WARNING,
                is_error=True,
                program=argv[0],
                error=os.strerror(code),
                exit_code=exec_failure_code(code),
            )
            raise SpawnError(argv[0], code) from None
        # Claimed before any checkpoint, so the orphan reaper never takes it.
        self._claimed.add(popen.pid)
        pidfd = PidFd.open(popen.pid)
        process = Process(pidfd, argv, process_group)
        self.processes[popen.pid] = process
        self._popens[popen.pid] = popen
        self._emit("container_exec", f"started pid={popen.pid}", pid=popen.pid, argv=list(argv))
        self._task_group.start_soon(self._watch, process, popen)
        return process

    async def _watch(self, process: Process, popen: subprocess.Popen[bytes]) -> None:
        status: ExitStatus | None = None
        try:
            # Shielded: when the surrounding scope is cancelled, the workload
            # still has to be ended and reaped (by _end_all), and this task
            # is what reaps it. _end_all closes the pidfd of one that
            # survives even SIGKILL, which ends the wait.
            with anyio.CancelScope(shield=True):
                status = await process.pidfd.wait()
        except (StatusLostError, ValueError):  # ValueError: the pidfd was closed
            pass  # the status stays unknown: wait() raises StatusLostError
        finally:
            process._status = status
            if status is not None:
                # Tell the Popen object, so it neither warns nor tries to reap.
                popen.returncode = process.returncode
                self._emit(
                    "workload_exited",
                    f"pid={status.pid} {status.describe()}",
                    _status_fields(status),
                )
            self._claimed.discard(process.pid)
            self._popens.pop(process.pid, None)
            process.pidfd.close()
            process._exited.set()

    def claim(self, pid: int) -> None:
        """Never reap ``pid`` as an orphan: its parent code waits for it itself."""
        self._claimed.add(pid)

    def unclaim(self, pid: int) -> None:
        """Undo :meth:`claim`."""
        self._claimed.discard(pid)

    # -- signals --------------------------------------------------------------

    def forward_signals(
        self, process: Process, signals: Iterable[int] = FORWARDED, *, group: bool | None = None
    ) -> None:
        """Forward the signals this program receives to ``process`` until it exits.

        Must be called from the main thread. On trio every signal of
        ``signals`` works, realtime ones included; on asyncio anyio's
        receiver is used, which delivers each arrival separately.
        """
        if self._task_group is None:
            raise RuntimeError("the supervisor is not running (use open_supervisor)")
        self._task_group.start_soon(self._forward, process, frozenset(signals), group)

    async def _forward(self, process: Process, signals: frozenset[int], group: bool | None) -> None:
        async with anyio.create_task_group() as tg:

            async def until_exit() -> None:
                await process._exited.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until_exit)
            async for signo in _receive_signals(signals):
                try:
                    process.send_signal(signo, group=group)
                except ProcessLookupError:
                    break
                self._emit(
                    "signal_forwarded",
                    f"forwarded {signal_name(signo)} to pid {process.pid}",
                    signal=signal_name(signo),
                    signo=signo,
                    target=-process.pid
                    if (process.process_group if group is None else group)
                    else process.pid,
                )
            tg.cancel_scope.cancel()

    # -- reaping --------------------------------------------------------------

    def _claims(self) -> set[int]:
        popens = _popen_claims()
        if popens is None:
            raise _Unsure
        return self._claimed | popens | _pidfd_claims()

    def reap_now(self) -> list[ExitStatus]:
        """Reap every orphan nobody claims, now; return their statuses."""
        reaped: list[ExitStatus] = []
        more = True
        while more:
            batch, more = reap_unclaimed(self._claims)
            reaped += batch
        for status in reaped:
            self.reaped_orphans.append(status)
            self._emit(
                "zombie_reaped",
                f"reaped orphan pid={status.pid} ({status.describe()})",
                _status_fields(status),
                level=DEBUG,
            )
        return reaped

    def _has_foreign_zombie(self) -> bool:
        """Whether an exited child still waits that this pass left alone."""
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return info is not None and info.si_pid not in self._claimed

    async def _reap_loop(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sigchld_watch)
            while True:
                try:
                    self.reap_now()
                    unsure = self._has_foreign_zombie()
                except _Unsure:
                    unsure = True
                if unsure:
                    # Someone is about to claim it (or reap it): look again
                    # shortly; this runs only while such a zombie exists.
                    with anyio.move_on_after(RECHECK_DELAY):
                        await self._reap_wake.wait()
                else:
                    await self._reap_wake.wait()
                self._reap_wake = anyio.Event()

    async def _sigchld_watch(self) -> None:
        async for _ in _receive_signals(frozenset({signal.SIGCHLD})):
            self._reap_wake.set()

    # -- running --------------------------------------------------------------

    async def _end_all(self) -> None:
        """SIGTERM every live workload, SIGKILL after the grace, reap them all."""
        live = [p for p in self.processes.values() if not p._exited.is_set()]
        if not live:
            return
        for process in live:
            try:
                process.terminate()
            except ProcessLookupError:
                pass

        async def all_exited() -> None:
            for process in live:
                await process._exited.wait()

        with anyio.move_on_after(self.grace) as scope:
            await all_exited()
        if scope.cancelled_caught:
            for process in live:
                if not process._exited.is_set():
                    try:
                        process.kill()
                    except ProcessLookupError:
                        pass
            with anyio.move_on_after(KILL_WAIT):
                await all_exited()
            for process in live:
                if not process._exited.is_set():
                    # Unkillable (uninterruptible sleep): stop waiting for it.
                    process.pidfd.close()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Supervisor] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the supervisor until cancelled: for ``await nursery.start(sup.run)``."""
        async with self._running():
            task_status.started(self)
            await anyio.sleep_forever()

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Supervisor]:
        was_subreaper = False
        if self.subreaper:
            from nucleus_trio.kernel import get_child_subreaper, set_child_subreaper

            was_subreaper = get_child_subreaper()
            set_child_subreaper()
        body_error: BaseException | None = None
        try:
            async with anyio.create_task_group() as outer:
                if self._writer is not None:
                    outer.start_soon(self._write_events)
                try:
                    async with anyio.create_task_group() as tg:
                        self._task_group = tg
                        if self.reap_orphans:
                            tg.start_soon(self._reap_loop)
                        try:
                            yield self
                        except BaseException as exc:
                            body_error = exc
                            raise
                        finally:
                            with anyio.CancelScope(shield=True):
                                await self._end_all()
                                if self.reap_orphans:
                                    try:
                                        self.reap_now()
                                    except _Unsure:
                                        pass
                            tg.cancel_scope.cancel()
                finally:
                    self._task_group = None
                    if self.subreaper and not was_subreaper:
                        from nucleus_trio.kernel import set_child_subreaper

                        set_child_subreaper(False)
                    self._lines_send.close()
                    # The event writer may finish what is queued, briefly.
                    outer.cancel_scope.deadline = anyio.current_time() + 1.0
        except BaseExceptionGroup as group:
            # The body's own exception comes out as itself, not in a group.
            if body_error is not None and _only(group) is body_error:
                raise body_error from None
            raise


def _only(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single leaf exception of a (nested) group, if there is exactly one."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


def _status_fields(status: ExitStatus) -> dict[str, object]:
    if status.signal is not None:
        return {"pid": status.pid, "signal": signal_name(status.signal), "signo": status.signal}
    return {"pid": status.pid, "exit_code": status.code}


async def _receive_signals(signals: frozenset[int]) -> AsyncIterator[int]:
    """Yield received signal numbers: trio's receiver on trio, anyio's on asyncio."""
    if sniffio.current_async_library() == "trio":
        import trio

        with trio.open_signal_receiver(*signals) as receiver:
            async for signo in receiver:
                yield signo
    else:
        with anyio.open_signal_receiver(*(signal.Signals(s) for s in signals)) as receiver:
            async for signo in receiver:
                yield int(signo)


@asynccontextmanager
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
    ``events`` receives one audit record (a ``dict``) per event: see
    :data:`EventSinkLike`. On the way out every workload still running gets
    SIGTERM, then SIGKILL after ``grace`` seconds, and is reaped.
    """
    supervisor = Supervisor(
        grace=grace,
        reap_orphans=reap_orphans,
        subreaper=subreaper,
        events=events,
        container_id=container_id,
        container_name=container_name,
    )
    async with supervisor._running():
        yield supervisor


__all__ = ["EventSinkLike", "Process", "Supervisor", "open_supervisor"]
