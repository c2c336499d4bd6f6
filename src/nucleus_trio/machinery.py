"""The one machinery of both faces: the init is a supervisor with one workload.

:class:`Machinery` runs in a task group, on trio or asyncio: one task per
workload waits on its pidfd, one reaper task (woken by SIGCHLD), one
receiver per forwarded signal set, and the event writer. When its block
ends, whatever ended it, the shutdown schedule of
:mod:`nucleus_trio.shutdown` ends what is left (README, "Shutdown" and
"Library").

Its policies are parameters: the command line's init owns every child, is
woken by a signalfd and ends every process of its namespace or subtree
(:mod:`nucleus_trio.init`); the library's :class:`~nucleus_trio.Supervisor`
reaps only the unclaimed and ends its workloads, their descendants and the
orphans re-parented to it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from nucleus_trio import events
from nucleus_trio.audit import EventLog
from nucleus_trio.backend import loop
from nucleus_trio.claims import ClaimsUnknown, all_claims
from nucleus_trio.environment import workload_environment
from nucleus_trio.forwarding import Forwarder, ProcessTarget
from nucleus_trio.identity import Identity
from nucleus_trio.levels import DEBUG
from nucleus_trio.pidfd import PidFd, StatusLostError
from nucleus_trio.process import Process
from nucleus_trio.proctree import descendants, is_zombie, list_children
from nucleus_trio.reaper import OwnerGrace, Reaper, reap_any, reap_pid, reap_unclaimed
from nucleus_trio.shutdown import ShutdownReport, is_interruption, shutdown_leftovers
from nucleus_trio.spawn import SpawnError, popen_workload
from nucleus_trio.status import ExitStatus

#: How long the event writer may finish what is queued on the way out; a
#: stalled sink must not keep the block (or the container) alive.
FLUSH_TIMEOUT = 1.0

WakeupSource = Callable[[], contextlib.AbstractContextManager[AsyncIterator[object]]]


@contextlib.contextmanager
def sigchld_receiver() -> Iterator[AsyncIterator[object]]:
    """The library's SIGCHLD source: the loop's own signal receiver."""
    from nucleus_trio.backend import open_signal_receiver

    with open_signal_receiver({signal.SIGCHLD}) as receiver:
        yield receiver


class Machinery:
    """Workloads, reaper, forwarding, shutdown and events, in one task group.

    ``owns_all`` (the init) reaps any child with one ``waitid``; otherwise
    only children nobody claims (:mod:`nucleus_trio.claims`). ``find_leftovers``
    says what the shutdown ends (default: :meth:`leftovers`). ``sigchld``
    gives the reaper's wake-ups. ``runs_log`` runs (and closes) the event
    log with the block; the init runs its log around it, to record its stop.
    """

    def __init__(
        self,
        *,
        grace: float,
        log: EventLog,
        reap_orphans: bool,
        subreaper: bool = False,
        owns_all: bool = False,
        reap_level: int = DEBUG,
        runs_log: bool = True,
        find_leftovers: Callable[[], set[int]] | None = None,
        sigchld: WakeupSource = sigchld_receiver,
        report_fault: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.grace = grace
        self.log = log
        self.reap_orphans = reap_orphans
        self.subreaper = subreaper
        self.owns_all = owns_all
        self.reap_level = reap_level
        # In a storm nobody may read the init's statuses: build none.
        self.keep_reaped = not owns_all or log.wants_event(reap_level)
        self.runs_log = runs_log
        self.find_leftovers = find_leftovers or functools.partial(_leftovers_of, self)
        self.sigchld = sigchld
        self.report_fault = report_fault
        self.processes: dict[int, Process] = {}
        self.reaped_orphans: list[ExitStatus] = []
        self.claimed: set[int] = set()
        #: Who gets the status of a live workload that the init's reaper takes.
        self.waiters: dict[int, Callable[[ExitStatus], None]] = {}
        self.forwarder: Forwarder | None = None
        self.reaper: Reaper | None = None
        self.stopping = False  # the block's end has begun: start nothing again
        self._task_group: Any = None
        self._starts = _Starts(self)

    def emit(self, event: events.Event) -> None:
        """Record ``event``; never blocks."""
        self.log.emit(event)

    def on_fault(self, exc: Exception) -> None:
        """A side task failed: say so and carry on (supervision must not stop)."""
        if self.report_fault is not None:
            self.report_fault(exc)
        self.emit(events.init_error(f"internal error (carrying on): {exc!r}"))

    def task_group(self) -> Any:
        """The running task group (``RuntimeError`` outside the block)."""
        if self._task_group is None:
            raise RuntimeError("the supervisor is not running (use open_supervisor)")
        return self._task_group

    # -- workloads ------------------------------------------------------------

    async def spawn(self, argv: Sequence[str], **options: Any) -> Process:
        """The one spawn path once the loop runs (the library and run_command);
        ``options`` as :func:`_popen` takes them. Raises
        :class:`~nucleus_trio.SpawnError` when the program cannot run."""
        self.task_group()
        # A checkpoint, as trio's and anyio's: no start in a cancelled scope,
        # and a fan-out lets other tasks run between starts.
        await loop().checkpoint_if_cancelled()
        child, pipes = await self._starts.popen(argv, options)
        process = Process(PidFd.open(child.pid), argv, bool(options.get("process_group", True)))
        process._take_pipes(pipes)
        self._register(process, child)
        await loop().checkpoint()
        return process

    def adopt(self, pidfd: PidFd, argv: Sequence[str]) -> Process:
        """Supervise a workload started before the loop (the command line's)."""
        process = Process(pidfd, argv, True)
        self._register(process, None)
        return process

    def _register(self, process: Process, popen: Any) -> None:
        self.claimed.add(process.pid)  # before any checkpoint: the reaper's no more
        self.processes[process.pid] = process
        self.waiters[process.pid] = process.pidfd.mark_reaped
        self.task_group().start_soon(self._watch, process, popen)

    async def _watch(self, process: Process, popen: Any) -> None:
        status: ExitStatus | None = None
        try:
            # Shielded: when the surrounding scope is cancelled, the workload
            # still has to be ended and reaped, and this task is what reaps
            # it. One that survives even SIGKILL has its pidfd closed by the
            # shutdown, which ends the wait.
            with loop().CancelScope(shield=True):
                status = await process.pidfd.wait()
        except StatusLostError:
            self.emit(events.status_lost(process.pid))
        except ValueError:
            pass  # the pidfd was closed: the status stays unknown
        finally:
            process._finish(status)
            if status is not None:
                if popen is not None:
                    # Tell the Popen object, so it neither warns nor reaps.
                    popen.returncode = process.returncode
                self.emit(events.workload_exited(status))
            self.claimed.discard(process.pid)
            self.waiters.pop(process.pid, None)

    def forward(
        self,
        process: Process,
        signals: frozenset[int],
        *,
        group: bool | None = None,
        rewrites: Mapping[int, int] | None = None,
        after: Callable[[int], None] | None = None,
        until_exit: bool = True,
    ) -> ProcessTarget:
        """Forward ``signals`` to ``process`` (the rule: ``ProcessTarget``);
        with ``until_exit``, until it exits, when the program gets them back."""
        if self.forwarder is None:
            raise RuntimeError("the supervisor is not running (use open_supervisor)")
        target = ProcessTarget(
            process, signals, self.log, group=group, rewrites=rewrites, after=after
        )
        self.forwarder.add(target)
        if until_exit:
            self.task_group().start_soon(self._unforward_at_exit, process, target)
        return target

    async def _unforward_at_exit(self, process: Process, target: ProcessTarget) -> None:
        await process._exited.wait()
        if self.forwarder is not None:
            self.forwarder.remove(target)

    # -- reaping --------------------------------------------------------------

    def claims(self) -> set[int]:
        """Every claimed child (may raise :class:`~nucleus_trio.claims.ClaimsUnknown`)."""
        return all_claims(self.claimed)

    def _make_reaper(self) -> Reaper:
        p = _ReapPolicy(self)
        return Reaper(self.claims, p.on_reaped, self.on_fault, reap=p.reap_pass, owners=p.owners)

    def reap_now(self) -> list[ExitStatus]:
        """Reap every orphan the policy allows, now; return the statuses kept."""
        before = len(self.reaped_orphans)
        (self.reaper or self._make_reaper()).reap_now()
        return self.reaped_orphans[before:]

    async def _run_reaper(self, reaper: Reaper) -> None:
        with self.sigchld() as wakeups:
            await reaper.run(wakeups)

    # -- shutdown -------------------------------------------------------------

    async def shut_down(self) -> ShutdownReport:
        """End what is left: TERM, the grace (ends early), KILL; reap it."""
        report = await shutdown_leftovers(
            self.grace,
            find=self.find_leftovers,
            on_signal=lambda *batch: self.emit(events.shutdown_signalled(*batch)),
        )
        for event in events.shutdown_over(report):
            self.emit(event)
        for pid in report.survivors:
            process = self.processes.get(pid)
            if process is not None:
                process.pidfd.close()  # unkillable: stop waiting for it
        if not self.owns_all:
            # What the shutdown ended and left to us is ours to reap, by PID:
            # no other part of the program claimed it (see leftovers).
            for pid in set(report.terminated) - set(self.processes):
                status = reap_pid(pid)
                if status is not None:
                    _ReapPolicy(self).on_reaped(status)
        return report

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Machinery]:
        """The tasks, then the shutdown; the block's exception comes out as itself."""
        from nucleus_trio.kernel import get_child_subreaper, set_child_subreaper

        was_subreaper = get_child_subreaper() if self.subreaper else True
        if not was_subreaper:
            set_child_subreaper()
        body_error: BaseException | None = None
        try:
            async with loop().open_task_group() as outer:
                if self.runs_log:
                    outer.start_soon(self.log.run)
                try:
                    async with loop().open_task_group() as group:
                        self._task_group = group
                        self.forwarder = Forwarder(group, self.on_fault)
                        if self.reap_orphans:
                            self.reaper = self._make_reaper()
                            group.start_soon(self._run_reaper, self.reaper)
                        try:
                            yield self
                        except BaseException as exc:
                            body_error = exc
                            raise
                        finally:
                            try:
                                await self._end(body_error)
                            finally:
                                group.cancel_scope.cancel()
                    self._final_reap()
                finally:
                    self._task_group = self.forwarder = None
                    for process in self.processes.values():
                        process.close_streams()
                    if not was_subreaper:
                        set_child_subreaper(False)
                    if self.runs_log:
                        self.log.close()
                    outer.cancel_scope.deadline = loop().current_time() + FLUSH_TIMEOUT
        except BaseExceptionGroup as group_error:
            if body_error is not None and _only(group_error) is body_error:
                raise body_error from None
            raise

    async def _end(self, body_error: BaseException | None) -> None:
        """The shutdown, whatever ended the block; a second KeyboardInterrupt
        during it gives way to the exception already on its way out."""
        await self._starts.stop()  # sets stopping, waits for the starts in flight
        try:
            await self.shut_down()
        except BaseException as exc:
            if body_error is None or not is_interruption(exc):
                raise

    def _final_reap(self) -> None:
        """Leave no zombie that the reaper task had no turn to take."""
        try:
            if self.reaper is not None:
                self.reaper.reap_now()
        except ClaimsUnknown:
            pass
        except Exception as exc:
            self.on_fault(exc)


class _Starts:
    """The machinery's starts, in a worker thread as ``trio.run_process``
    does them: fork+exec holds its caller until the exec (0.2-2 ms), so a
    fan-out of 500 starts in the loop's thread would stall the loop for all
    of it. Until its child is registered, a live ``Popen`` claims it from the
    orphan reaper (:mod:`nucleus_trio.claims`).

    Two kinds stay in the loop's thread: the init's (its reaper takes any
    child, and could take one started elsewhere before it is registered) and
    those during the block's end (the shutdown must see them). :meth:`stop`
    begins the end: it waits for the starts in flight, whose callers register
    their children before the shutdown runs.
    """

    def __init__(self, machinery: Machinery) -> None:
        self.machinery = machinery
        self.in_flight = 0
        self._idle: Any = None

    async def popen(
        self, argv: Sequence[str], options: Any
    ) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
        """:func:`_popen`; its events are emitted in the loop's thread."""
        machinery = self.machinery
        if machinery.owns_all or machinery.stopping:
            return _popen(argv, machinery.emit, **options)
        queued: list[events.Event] = []
        self.in_flight += 1
        try:
            return await loop().run_sync_in_thread(  # type: ignore[no-any-return]
                functools.partial(_popen, argv, queued.append, **options)
            )
        finally:
            for event in queued:
                machinery.emit(event)
            self.in_flight -= 1
            if not self.in_flight and self._idle is not None:
                self._idle.set()

    async def stop(self) -> None:
        """Start nothing more in a thread; wait for the starts in flight."""
        self.machinery.stopping = True
        with loop().CancelScope(shield=True):
            while self.in_flight:
                self._idle = loop().Event()
                await self._idle.wait()


class _ReapPolicy:
    """Which pass the reaper runs, and what a reaped orphan becomes: the init
    owns every child (its workload's status goes to the workload's waiter);
    the library reaps only the unclaimed, and keeps their statuses."""

    def __init__(self, machinery: Machinery) -> None:
        self.machinery = machinery
        #: One batch of the reaping pass.
        self.reap_pass: Callable[[], tuple[list[ExitStatus], bool]]
        self.owners: OwnerGrace | None = None
        if machinery.owns_all:
            self.reap_pass = functools.partial(
                reap_any, keep=machinery.keep_reaped, waiters=machinery.waiters
            )
        else:
            self.owners = OwnerGrace()
            self.reap_pass = functools.partial(
                reap_unclaimed, machinery.claims, owners=self.owners, known=machinery.claimed
            )

    def on_reaped(self, status: ExitStatus) -> None:
        """Record one reaped orphan."""
        machinery = self.machinery
        if not machinery.owns_all:
            machinery.reaped_orphans.append(status)
        machinery.emit(events.zombie_reaped(status, machinery.reap_level))


def _leftovers_of(machinery: Machinery) -> set[int]:
    """What the library's block ends: see :func:`library_leftovers`."""
    live = [p.pid for p in machinery.processes.values() if not p.exited]
    orphans = machinery.reap_orphans or machinery.subreaper
    return library_leftovers(live, machinery.claims, orphans=orphans)


def library_leftovers(
    workloads: Iterable[int], claims: Callable[[], set[int]], *, orphans: bool
) -> set[int]:
    """The live processes a library block ends: its running ``workloads``,
    with ``orphans`` the children of this process that nobody ``claims``
    (re-parented here as subreaper), and every descendant of those."""
    roots = set(workloads)
    if orphans:
        with contextlib.suppress(ClaimsUnknown):
            claimed = claims()
            roots |= {pid for pid in list_children() if pid not in claimed}
    found = set(roots)
    for root in roots:
        found |= descendants(root)
    return {pid for pid in found if not is_zombie(pid)}


def _popen(
    argv: Sequence[str],
    emit: Callable[[events.Event], None],
    *,
    env: Mapping[str, str] | None = None,
    clean_env: bool = False,
    sd_notify: bool | None = None,
    shown_argv: Sequence[str] | None = None,
    identity: Identity | None = None,
    no_new_privs: bool = False,
    **popen: Any,
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """Build the environment (``env`` added to the inherited one, or with
    ``clean_env`` to the minimal one; ``NOTIFY_SOCKET`` with ``sd_notify``,
    by default when ``env`` names it), start the child, and record it
    (``shown_argv`` in its place in the audit). ``popen``: the keywords of
    :func:`~nucleus_trio.spawn.popen_workload`. An ``exec_failed`` event and
    :class:`~nucleus_trio.SpawnError` when it cannot run."""
    if not argv:
        raise ValueError("argv must not be empty")
    assignments = list((env or {}).items())
    environment: dict[str, str] | None = None  # the inherited one, unchanged
    warnings: list[str] = []
    if clean_env or assignments or "NOTIFY_SOCKET" in os.environ:
        environment, warnings = workload_environment(
            os.environ,
            clean_env=clean_env,
            assignments=assignments,
            sd_notify=("NOTIFY_SOCKET" in (env or {})) if sd_notify is None else sd_notify,
        )
    for warning in warnings:
        emit(events.notify_socket_dropped(warning))
    try:
        child, pipes = popen_workload(
            argv, env=environment, identity=identity, no_new_privs=no_new_privs, **popen
        )
    except OSError as exc:
        cwd = popen.get("cwd")
        directory = os.fspath(cwd) if cwd is not None else None
        named = os.fspath(exc.filename) if exc.filename is not None else None
        missing_cwd = directory is not None and named == directory != argv[0]
        failure = SpawnError(
            argv[0],
            exc.errno if exc.errno is not None else errno.EINVAL,
            "chdir" if missing_cwd else "exec",
            directory if missing_cwd else None,
        )
        emit(events.exec_failed(argv[0], failure.reason, failure.exit_code, failure.message))
        raise failure from None
    emit(
        events.container_exec(
            child.pid,
            shown_argv or argv,
            env_keys=[key for key, _ in assignments],
            uid=identity.uid if identity is not None else None,
            gid=identity.gid if identity is not None else None,
            groups=identity.groups if identity is not None else None,
        )
    )
    if no_new_privs:
        emit(events.no_new_privs_set(child.pid))
    return child, pipes


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
