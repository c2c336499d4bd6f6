"""The init's face of the machinery: a supervisor with one workload.

The workload was already started (see :mod:`nucleus_trio.spawn`) with every
forwarded signal blocked, or :func:`run_command` starts it here. A
:class:`~nucleus_trio.Supervisor` with the init's policies runs it: the
init owns every child (one ``waitid`` per exit, woken by a signalfd), every
signal it can catch is forwarded (after ``--rewrite``), and when the
workload has exited, the shutdown ends every process left in its namespace
or subtree. The forwarded signals are unblocked once the receiver is up (the
ones that arrived meanwhile are delivered now) and blocked again before it
closes, so a late SIGTERM cannot kill the init on its way out (README,
"Signals" and "Shutdown").
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

from nucleus_trio import events
from nucleus_trio.audit import EventLog
from nucleus_trio.backend import loop
from nucleus_trio.config import Config
from nucleus_trio.exits import EXIT_STATUS_LOST
from nucleus_trio.forwarding import Target
from nucleus_trio.kernel import open_signalfd
from nucleus_trio.levels import DEBUG, INFO, WARNING
from nucleus_trio.machinery import FLUSH_TIMEOUT, Machinery, sigchld_receiver
from nucleus_trio.pidfd import PidFd, StatusLostError
from nucleus_trio.process import Process
from nucleus_trio.proctree import leftovers
from nucleus_trio.signals import FORWARDED, STARTUP_BLOCKED, signal_name
from nucleus_trio.status import ExitStatus, init_exit_code
from nucleus_trio.stderr import report_fault

#: Signals that stop pause mode, and that start the ``--kill-after`` timer.
_STOPPERS = frozenset({signal.SIGINT, signal.SIGTERM})


class _Init:
    """The init's policies on one supervisor, for one run."""

    def __init__(self, config: Config, log: EventLog, *, owns_all_children: bool) -> None:
        self.config = config
        self.log = log
        self.stop = loop().Event()
        self.kill_after_armed = False
        self.workload: Process | None = None
        self.machinery = Machinery(
            grace=config.grace,
            log=log,
            reap_orphans=True,
            owns_all=owns_all_children,
            reap_level=WARNING if config.warn_reap else DEBUG,
            runs_log=False,
            find_leftovers=leftovers,
            report_fault=report_fault,
            sigchld=_signalfd_wakeups if owns_all_children else sigchld_receiver,
        )

    async def start(self, workload: PidFd | None) -> None:
        """Adopt the workload (or, for run_command, start it) and forward."""
        config = self.config
        machinery = self.machinery
        if config.pause:
            assert machinery.forwarder is not None
            machinery.forwarder.add(Target(FORWARDED, self._pause_signal))
            return
        if workload is not None:
            self.workload = machinery.adopt(workload, config.argv)
        else:
            self.workload = await machinery.spawn(
                config.argv,
                env=dict(config.env),
                clean_env=config.clean_env,
                sd_notify=config.sd_notify,
                shown_argv=config.shown_argv(),
                identity=config.identity,
                no_new_privs=config.no_new_privs,
                close_fds=False,
            )
        machinery.forward(
            self.workload,
            FORWARDED,
            group=config.pgroup,
            rewrites=config.rewrite_map(),
            after=self._after_forward,
            until_exit=False,
        )

    def _pause_signal(self, signo: int) -> None:
        if signo in _STOPPERS:
            self.log.log(INFO, f"received {signal_name(signo)}, leaving pause")
            self.stop.set()
        else:
            self.log.log(DEBUG, f"received {signal_name(signo)} in pause mode, ignored")

    def _after_forward(self, received: int) -> None:
        """Start the ``--kill-after`` timer once, at the first SIGTERM or SIGINT."""
        seconds = self.config.kill_after
        if received not in _STOPPERS or seconds is None or self.kill_after_armed:
            return
        self.kill_after_armed = True
        self.machinery.task_group().start_soon(self._kill_after, seconds)

    async def _kill_after(self, seconds: float) -> None:
        assert self.workload is not None
        await loop().sleep(seconds)
        group = self.config.pgroup
        try:
            self.workload.pidfd.send_signal(signal.SIGKILL, group=group)
        except OSError:
            return  # it has exited (and been reaped) meanwhile
        pid = self.workload.pid
        where = f"{'group' if group else 'pid'} {pid}"
        detail = (
            f"workload still running {seconds:g} s after the stop signal: sent SIGKILL to {where}"
        )
        self.log.emit(
            events.signal_forwarded(
                signal.SIGKILL,
                -pid if group else pid,
                reason="kill_after",
                level=WARNING,
                detail=detail,
            )
        )

    async def wait_workload(self) -> ExitStatus | None:
        """Wait for the workload's exit (or, in pause mode, a stop signal)."""
        if self.workload is None:
            await self.stop.wait()
            return None
        try:
            return await self.workload.wait()
        except StatusLostError:
            return None  # the watcher has said so (status_lost)

    def exit_code(self, status: ExitStatus | None) -> int:
        """The init's exit code for the workload's ``status``."""
        if self.config.pause:
            return 0
        if status is None:
            return EXIT_STATUS_LOST
        return init_exit_code(status, self.config.remap_exit)


@contextlib.contextmanager
def _signalfd_wakeups() -> Iterator[AsyncIterator[object]]:
    """The command line's SIGCHLD source: a signalfd, one epoll event per
    exit without Python's signal handler and trio's entry queue in between
    (a third of the CPU of a storm). SIGCHLD stays blocked so that only the
    signalfd takes it."""
    from nucleus_trio.backend import notify_closing

    fd = open_signalfd({signal.SIGCHLD})
    try:
        yield _DrainEachReadiness(fd)
    finally:
        notify_closing(fd)
        os.close(fd)


class _DrainEachReadiness:
    """Yields once per readiness of a signalfd, after draining it. A class,
    not an async generator: a wait cancelled by the reaper's timer must
    leave it usable."""

    def __init__(self, fd: int) -> None:
        from nucleus_trio.backend import loop

        self._fd = fd
        self._wait_readable = loop().wait_readable

    def __aiter__(self) -> _DrainEachReadiness:
        return self

    async def __anext__(self) -> object:
        await self._wait_readable(self._fd)
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass
        return None


async def run_init(
    config: Config,
    workload: PidFd | None,
    log: EventLog,
    *,
    started: float | None = None,
    owns_all_children: bool = True,
) -> int:
    """Supervise the workload (started already, or here when ``workload`` is
    ``None`` outside pause mode) and return the init's exit code.

    Must run in the main thread, with :data:`STARTUP_BLOCKED` blocked.
    ``started`` is the ``time.monotonic()`` of the workload's start, for the
    runtime in the ``container_stop`` event. ``owns_all_children`` (the
    command line) reaps any child with one ``waitid``; otherwise the
    children that others claim are left to them.
    """
    from nucleus_trio.spawn import SpawnError

    init = _Init(config, log, owns_all_children=owns_all_children)
    unblock = STARTUP_BLOCKED - {signal.SIGCHLD} if owns_all_children else STARTUP_BLOCKED
    status: ExitStatus | None = None
    try:
        async with init.machinery.running():
            try:
                await init.start(workload)
                if started is None and not config.pause:
                    started = time.monotonic()
                # Only now may the signals that arrived during start-up be
                # delivered: the receiver is what catches them.
                signal.pthread_sigmask(signal.SIG_UNBLOCK, unblock)
                status = await init.wait_workload()
            finally:
                # Pending from now on, and they die with the process.
                signal.pthread_sigmask(signal.SIG_BLOCK, STARTUP_BLOCKED)
    except SpawnError as exc:
        return exc.exit_code  # exec_failed is recorded
    code = init.exit_code(status)
    runtime = time.monotonic() - started if started is not None else None
    log.emit(events.container_stop(code, status, pause=config.pause, runtime=runtime))
    return code


async def run_with_log(
    config: Config,
    workload: PidFd | None,
    log: EventLog,
    started: float | None = None,
    owns_all_children: bool = True,
) -> int:
    """:func:`run_init` with the event writer running beside it."""
    code = None
    async with loop().open_task_group() as group:
        group.start_soon(log.run)
        try:
            code = await run_init(
                config, workload, log, started=started, owns_all_children=owns_all_children
            )
        finally:
            log.close()
            group.cancel_scope.deadline = loop().current_time() + FLUSH_TIMEOUT
    assert code is not None
    return code
