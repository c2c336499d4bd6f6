"""The supervisor: the machinery of both faces (README, "Library").

::

    async with nucleus_trio.open_supervisor(reap_orphans=True) as supervisor:
        worker = await supervisor.start(["my-worker", "--port", "8080"])
        supervisor.forward_signals(worker)
        status = await worker.wait()

It runs in the caller's task group, on trio or asyncio: one task per
workload waits on its pidfd, one reaper task (when asked), one receiver per
forwarded signal set, one event writer. Leaving the block ends every
workload still running and everything they left behind (their descendants,
and the orphans re-parented to this process as subreaper) with the shutdown
schedule of :mod:`nucleus_trio.shutdown`: SIGTERM, the grace, SIGKILL.

The command line's init is this supervisor with one workload and the init's
policies (:mod:`nucleus_trio.init`): it owns every child, and its shutdown
reaches every process of its namespace or subtree.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from nucleus_trio import events
from nucleus_trio.audit import EventLog, EventSinkLike
from nucleus_trio.claims import ClaimsUnknown, all_claims
from nucleus_trio.environment import workload_environment
from nucleus_trio.forwarding import (
    LIBRARY_DEFAULT,
    Forwarder,
    Target,
    check_library_signals,
    route_signal,
)
from nucleus_trio.identity import Identity
from nucleus_trio.levels import DEBUG, ERROR
from nucleus_trio.pidfd import PidFd, StatusLostError
from nucleus_trio.process import Process
from nucleus_trio.reaper import Reaper, list_children, reap_any, reap_pid
from nucleus_trio.shutdown import ShutdownReport, descendants, is_zombie, shutdown_leftovers
from nucleus_trio.spawn import SpawnError, popen_workload
from nucleus_trio.status import ExitStatus

#: How long the event writer may finish what is queued on the way out; a
#: stalled sink must not keep the block (or the container) alive.
FLUSH_TIMEOUT = 1.0


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
        self.processes: dict[int, Process] = {}
        self.reaped_orphans: list[ExitStatus] = []
        self._claimed: set[int] = set()
        self._log = EventLog(
            -1,
            sink=events,
            container_id=container_id,
            container_name=container_name,
            capacity=event_capacity,
        )
        self._task_group: anyio.abc.TaskGroup | None = None
        self._forwarder: Forwarder | None = None
        self._reaper: Reaper | None = None
        # The init's policies (see nucleus_trio.init) replace these.
        self._owns_all = False
        self._keep_reaped = True
        self._reap_level = DEBUG
        self._find_leftovers: Callable[[], set[int]] = self._leftovers
        self._sigchld: Callable[[], contextlib.AbstractContextManager[AsyncIterator[object]]]
        self._sigchld = _sigchld_receiver
        self._report_fault: Callable[[BaseException], None] = lambda exc: None
        self._runs_log = True

    @property
    def events_dropped(self) -> int:
        """Events the sink could not take (full, slow or broken)."""
        return self._log.audit_dropped

    def _emit(self, event: events.Event) -> None:
        self._log.emit(event)

    def _on_fault(self, exc: Exception) -> None:
        """A side task failed: say so and carry on (supervision must not stop)."""
        self._report_fault(exc)
        self._emit(events.init_error(f"internal error (carrying on): {exc!r}"))

    def _running_group(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise RuntimeError("the supervisor is not running (use open_supervisor)")
        return self._task_group

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
        return await self._start(
            argv,
            env=env,
            clean_env=clean_env,
            cwd=cwd,
            identity=identity,
            process_group=process_group,
            no_new_privs=no_new_privs,
            pass_fds=pass_fds,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )

    async def _start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        clean_env: bool = False,
        sd_notify: bool | None = None,
        shown_argv: Sequence[str] | None = None,
        identity: Identity | None = None,
        no_new_privs: bool = False,
        **popen: Any,
    ) -> Process:
        """The one spawn path once the loop runs (the library and run_command)."""
        group = self._running_group()
        if not argv:
            raise ValueError("argv must not be empty")
        assignments = list((env or {}).items())
        environment, warnings = workload_environment(
            os.environ,
            clean_env=clean_env,
            assignments=assignments,
            sd_notify=("NOTIFY_SOCKET" in (env or {})) if sd_notify is None else sd_notify,
        )
        for warning in warnings:
            self._emit(events.notify_socket_dropped(warning))
        try:
            popen_object = popen_workload(
                argv, env=environment, identity=identity, no_new_privs=no_new_privs, **popen
            )
        except OSError as exc:
            code = exc.errno if exc.errno is not None else errno.EINVAL
            failure = SpawnError(argv[0], code)
            self._emit(events.exec_failed(argv[0], failure.strerror, failure.exit_code))
            raise failure from None
        pid = popen_object.pid
        # Claimed before any checkpoint, so the orphan reaper never takes it.
        self._claimed.add(pid)
        process = Process(PidFd.open(pid), argv, bool(popen.get("process_group", True)))
        self.processes[pid] = process
        self._emit(
            events.container_exec(
                pid,
                shown_argv or argv,
                env_keys=[key for key, _ in assignments],
                uid=identity.uid if identity is not None else None,
                gid=identity.gid if identity is not None else None,
                groups=identity.groups if identity is not None else None,
            )
        )
        if no_new_privs:
            self._emit(events.no_new_privs_set(pid))
        group.start_soon(self._watch, process, popen_object)
        await anyio.lowlevel.checkpoint()
        return process

    def _adopt(self, pidfd: PidFd, argv: Sequence[str]) -> Process:
        """Supervise a workload started before the loop (the command line's)."""
        self._claimed.add(pidfd.pid)
        process = Process(pidfd, argv, True)
        self.processes[pidfd.pid] = process
        self._running_group().start_soon(self._watch, process, None)
        return process

    async def _watch(self, process: Process, popen: object) -> None:
        status: ExitStatus | None = None
        try:
            # Shielded: when the surrounding scope is cancelled, the workload
            # still has to be ended and reaped, and this task is what reaps
            # it. A workload that survives even SIGKILL has its pidfd
            # closed by the shutdown, which ends the wait.
            with anyio.CancelScope(shield=True):
                status = await process.pidfd.wait()
        except StatusLostError:
            self._emit(events.status_lost(process.pid))
        except ValueError:
            pass  # the pidfd was closed: the status stays unknown
        finally:
            if status is not None:
                if popen is not None:
                    # Tell the Popen object, so it neither warns nor reaps.
                    popen.returncode = status.code if status.signal is None else -status.signal  # type: ignore[attr-defined]
                self._emit(events.workload_exited(status))
            self._claimed.discard(process.pid)
            process._finish(status)

    def claim(self, pid: int) -> None:
        """Never reap ``pid`` as an orphan: its parent code waits for it itself."""
        self._claimed.add(pid)

    def unclaim(self, pid: int) -> None:
        """Undo :meth:`claim` (an exited ``pid`` is reaped now, when reaping)."""
        self._claimed.discard(pid)
        if self._reaper is not None:
            with contextlib.suppress(ClaimsUnknown):
                self._reaper.reap_now()

    # -- signals --------------------------------------------------------------

    def forward_signals(
        self,
        process: Process,
        signals: Iterable[int] = LIBRARY_DEFAULT,
        *,
        group: bool | None = None,
    ) -> None:
        """Forward the signals this program receives to ``process`` until it exits.

        Must be called from the main thread. The default set is TERM, INT,
        HUP, QUIT, USR1, USR2 and WINCH; SIGPIPE is never forwarded (the
        program's own broken-pipe writes raise it). A signal the loop cannot
        receive (a realtime one on asyncio) raises ``ValueError`` here.
        Several processes may share a signal: each gets it.
        """
        from nucleus_trio.backend import refused_signals

        wanted = frozenset(int(s) for s in signals)
        self._forward(process, check_library_signals(wanted, refused_signals(wanted)), group=group)

    def _forward(
        self,
        process: Process,
        signals: frozenset[int],
        *,
        group: bool | None = None,
        rewrites: Mapping[int, int] | None = None,
        after: Callable[[int], None] | None = None,
        until_exit: bool = True,
    ) -> Target:
        """The one forwarding rule: route each received signal (rewrites),
        send it through the pidfd, record it; ``after(received)`` follows a
        send. With ``until_exit`` the forwarding ends with the process."""
        forwarder = self._forwarder
        if forwarder is None:
            raise RuntimeError("the supervisor is not running (use open_supervisor)")
        to_group = process.process_group if group is None else group

        def deliver(received: int) -> None:
            route = route_signal(received, rewrites or {})
            if route.dropped:
                self._emit(events.signal_dropped(received))
                return
            try:
                process.send_signal(route.signo, group=to_group)
            except ProcessLookupError:
                self._log.log(DEBUG, f"workload gone, {route.describe()} not forwarded")
                return
            except OSError as exc:
                self._log.log(ERROR, f"forwarding {route.describe()} failed: {exc.strerror}")
                return
            target = -process.pid if to_group else process.pid
            self._emit(events.signal_forwarded(route.signo, target, received=received))
            if after is not None:
                after(received)

        target = Target(signals, deliver)
        forwarder.add(target)
        if until_exit:
            self._running_group().start_soon(self._unforward_at_exit, process, target)
        return target

    async def _unforward_at_exit(self, process: Process, target: Target) -> None:
        await process._exited.wait()
        if self._forwarder is not None:
            self._forwarder.remove(target)

    # -- reaping --------------------------------------------------------------

    def _claims(self) -> set[int]:
        return all_claims(self._claimed)

    def _reap_pass(self) -> tuple[list[ExitStatus], bool]:
        if self._owns_all:
            waiters = {p.pid: p.pidfd.mark_reaped for p in self.processes.values() if not p.exited}
            return reap_any(keep=self._keep_reaped, waiters=waiters)
        from nucleus_trio.reaper import reap_unclaimed

        return reap_unclaimed(self._claims)

    def _on_reaped(self, status: ExitStatus) -> None:
        if not self._owns_all:
            self.reaped_orphans.append(status)
        self._emit(events.zombie_reaped(status, self._reap_level))

    def reap_now(self) -> list[ExitStatus]:
        """Reap every orphan nobody claims, now; return their statuses."""
        reaper = self._reaper or self._make_reaper()
        before = len(self.reaped_orphans)
        reaper.reap_now()
        return self.reaped_orphans[before:]

    def _make_reaper(self) -> Reaper:
        return Reaper(self._claims, self._on_reaped, self._on_fault, reap=self._reap_pass)

    async def _run_reaper(self, reaper: Reaper) -> None:
        with self._sigchld() as wakeups:
            await reaper.run(wakeups)

    # -- shutdown -------------------------------------------------------------

    def _leftovers(self) -> set[int]:
        """What the library's block ends: the live workloads, the orphans
        re-parented here (unclaimed children), and their descendants."""
        roots = {p.pid for p in self.processes.values() if not p.exited}
        if self.reap_orphans or self.subreaper:
            with contextlib.suppress(ClaimsUnknown):
                claims = self._claims()
                roots |= {pid for pid in list_children() if pid not in claims}
        found = set(roots)
        for root in roots:
            found |= descendants(root)
        return {pid for pid in found if not is_zombie(pid)}

    def _on_shutdown_signal(self, phase: str, signo: int, pids: list[int]) -> None:
        self._emit(events.shutdown_signalled(phase, signo, pids))

    async def _shut_down(self) -> ShutdownReport:
        """End the workloads and what they left: TERM, grace, KILL; reap them."""
        report = await shutdown_leftovers(
            self.grace, find=self._find_leftovers, on_signal=self._on_shutdown_signal
        )
        if report.terminated or report.survivors:
            self._emit(
                events.shutdown_complete(
                    report.seconds, report.terminated, report.killed, report.survivors
                )
            )
        for pid in report.survivors:
            self._emit(events.shutdown_survivor(pid))
            process = self.processes.get(pid)
            if process is not None:
                process.pidfd.close()  # unkillable: stop waiting for it
        if not self._owns_all:
            # What the shutdown ended and left to us: ours to reap, by PID
            # (no other part of the program claims them: see _leftovers).
            for pid in set(report.terminated) - set(self.processes):
                status = reap_pid(pid)
                if status is not None:
                    self._on_reaped(status)
        return report

    # -- running --------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Supervisor] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the supervisor until cancelled: for ``await nursery.start(sup.run)``."""
        async with self._running():
            task_status.started(self)
            await anyio.sleep_forever()

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[Supervisor]:
        from nucleus_trio.kernel import get_child_subreaper, set_child_subreaper

        was_subreaper = get_child_subreaper() if self.subreaper else True
        if not was_subreaper:
            set_child_subreaper()
        body_error: BaseException | None = None
        try:
            async with anyio.create_task_group() as outer:
                if self._runs_log:
                    outer.start_soon(self._log.run)
                try:
                    async with anyio.create_task_group() as group:
                        self._task_group = group
                        self._forwarder = Forwarder(group, self._on_fault)
                        if self.reap_orphans:
                            self._reaper = self._make_reaper()
                            group.start_soon(self._run_reaper, self._reaper)
                        try:
                            yield self
                        except BaseException as exc:
                            body_error = exc
                            raise
                        finally:
                            await self._end(body_error)
                            group.cancel_scope.cancel()
                    self._final_reap()
                finally:
                    self._task_group = self._forwarder = None
                    if not was_subreaper:
                        set_child_subreaper(False)
                    if self._runs_log:
                        self._log.close()
                    outer.cancel_scope.deadline = anyio.current_time() + FLUSH_TIMEOUT
        except BaseExceptionGroup as group_error:
            # The body's own exception comes out as itself, not in a group.
            if body_error is not None and _only(group_error) is body_error:
                raise body_error from None
            raise

    async def _end(self, body_error: BaseException | None) -> None:
        """The block's end: the shutdown, whatever ended the block. A second
        KeyboardInterrupt during it gives way to the exception already on
        its way out."""
        try:
            await self._shut_down()
        except KeyboardInterrupt:
            if body_error is None:
                raise

    def _final_reap(self) -> None:
        """Leave no zombie that the reaper task had no turn to take."""
        if self._reaper is None:
            return
        try:
            self._reaper.reap_now()
        except ClaimsUnknown:
            pass
        except Exception as exc:
            self._on_fault(exc)


@contextlib.contextmanager
def _sigchld_receiver() -> Iterator[AsyncIterator[object]]:
    import signal

    from nucleus_trio.backend import open_signal_receiver

    with open_signal_receiver({signal.SIGCHLD}) as receiver:
        yield receiver


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
    async with supervisor._running():
        yield supervisor


__all__ = ["EventSinkLike", "Process", "Supervisor", "open_supervisor"]
