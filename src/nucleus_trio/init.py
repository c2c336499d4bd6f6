"""The init's trio layer: one nursery, a task per concern.

The workload was already started (see :mod:`nucleus_trio.spawn`) with every
forwarded signal blocked. Here the signal receiver opens, the signals are
unblocked (those that arrived meanwhile are delivered now), and three tasks
run until the workload exits: signal dispatch, orphan reaping and event
writing. Then the forwarded signals are blocked again before the receiver
closes, so a late SIGTERM cannot kill the init on its way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator

import trio

from nucleus_trio.audit import Event, EventLog
from nucleus_trio.config import Config
from nucleus_trio.forwarding import route_signal
from nucleus_trio.kernel import open_signalfd
from nucleus_trio.levels import DEBUG, ERROR, INFO, WARNING
from nucleus_trio.pidfd import PidFd, StatusLostError
from nucleus_trio.reaper import BATCH, Reaper
from nucleus_trio.shutdown import ShutdownReport, shutdown_leftovers
from nucleus_trio.signals import FORWARDED, STARTUP_BLOCKED, signal_name
from nucleus_trio.status import ExitStatus, init_exit_code
from nucleus_trio.stderr import write_stderr

#: How long the init waits for its last log lines on the way out; a stalled
#: stderr must not keep the container alive.
FLUSH_TIMEOUT = 1.0

#: Exit code when the workload's status was taken by someone else (never in
#: CLI mode, where the init owns every child).
EXIT_STATUS_LOST = 255

#: Signals that stop pause mode, and that start the ``--kill-after`` timer.
_STOPPERS = frozenset({signal.SIGINT, signal.SIGTERM})


class _Init:
    """State shared by the tasks of one run of the init."""

    def __init__(
        self, config: Config, workload: PidFd | None, log: EventLog, *, owns_all_children: bool
    ) -> None:
        self.config = config
        self.workload = workload
        self.log = log
        self.rewrites = config.rewrite_map()
        self.claimed: set[int] = {workload.pid} if workload is not None else set()
        self.reap_level = WARNING if config.warn_reap else DEBUG
        self.reaper = Reaper(
            lambda: self.claimed,
            self._on_reaped,
            self.on_fault,
            reap=self._reap_owned if owns_all_children else None,
        )
        self.stop = trio.Event()
        self.kill_after_armed = False
        self.nursery: trio.Nursery | None = None

    def on_fault(self, exc: Exception) -> None:
        """A side task failed: say so (with the traceback) and carry on."""
        report_fault(exc)
        self.log.log(ERROR, f"internal error (carrying on): {exc!r}", "init_error", is_error=True)

    def _reap_owned(self, limit: int = 4 * BATCH) -> tuple[list[ExitStatus], bool]:
        """Reap whatever exited (the init owns every child): one ``waitid``
        each, and a status object only for whoever reads it. The workload's
        status goes to its waiter if this pass is the one that saw it.

        1,024 between checkpoints: a burst of zombies goes at nearly the
        kernel's pace, and a signal waits at most about 3 ms behind it."""
        workload = self.workload
        workload_pid = workload.pid if workload is not None and workload.status is None else 0
        keep = self.log.wants_event(self.reap_level)
        reaped: list[ExitStatus] = []
        for _ in range(limit):
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                return reaped, False
            if info is None:
                return reaped, False
            if info.si_pid == workload_pid:
                assert workload is not None
                workload.mark_reaped(ExitStatus.from_siginfo(info))
                workload_pid = 0
            elif keep:
                reaped.append(ExitStatus.from_siginfo(info))
        return reaped, True

    def _on_reaped(self, status: ExitStatus) -> None:
        level = self.reap_level
        if not self.log.wants_event(level):
            return  # nothing would show it: build nothing (storms)
        self.log.log(
            level,
            f"reaped zombie process with pid={status.pid} ({status.describe()})",
            "zombie_reaped",
            is_error=False,
            **status_fields(status),
        )

    async def dispatch_signals(self, receiver: AsyncIterator[int]) -> None:
        """Route every received signal: SIGCHLD to the reaper, the rest onward."""
        async for signo in receiver:
            try:
                if self.workload is None:
                    self._pause_signal(signo)
                else:
                    self.forward(signo)
            except Exception as exc:
                self.on_fault(exc)

    def _pause_signal(self, signo: int) -> None:
        if signo in _STOPPERS:
            self.log.log(INFO, f"received {signal_name(signo)}, leaving pause")
            self.stop.set()
        else:
            self.log.log(DEBUG, f"received {signal_name(signo)} in pause mode, ignored")

    def forward(self, received: int) -> None:
        """Send ``received`` (after rewriting) to the workload or its group."""
        assert self.workload is not None
        route = route_signal(received, self.rewrites)
        if route.dropped:
            self.log.log(
                DEBUG,
                f"received {route.describe()}",
                "signal_dropped",
                signal=signal_name(received),
                signo=received,
            )
            return
        group = self.config.pgroup
        target = -self.workload.pid if group else self.workload.pid
        try:
            self.workload.send_signal(route.signo, group=group)
        except ProcessLookupError:
            self.log.log(DEBUG, f"workload gone, {route.describe()} not forwarded")
            return
        except OSError as exc:
            self.log.log(ERROR, f"forwarding {route.describe()} failed: {exc.strerror}")
            return
        fields: dict[str, object] = {
            "signal": signal_name(route.signo),
            "signo": route.signo,
            "target": target,
        }
        if route.rewritten:
            fields["rewritten_from"] = signal_name(received)
        self.log.emit(
            Event(
                "signal_forwarded",
                f"forwarded {route.describe()} to {'group' if group else 'pid'} {abs(target)}",
                INFO,
                False,
                fields,
            )
        )
        if received in _STOPPERS and self.config.kill_after is not None:
            self._arm_kill_after(self.config.kill_after)

    def _arm_kill_after(self, seconds: float) -> None:
        """Start the ``--kill-after`` timer once, at the first SIGTERM or SIGINT."""
        if self.kill_after_armed or self.nursery is None:
            return
        self.kill_after_armed = True
        self.nursery.start_soon(self._kill_after, seconds)

    async def _kill_after(self, seconds: float) -> None:
        assert self.workload is not None
        await trio.sleep(seconds)
        group = self.config.pgroup
        try:
            self.workload.send_signal(signal.SIGKILL, group=group)
        except OSError:
            return  # it has exited (and been reaped) meanwhile
        pid = self.workload.pid
        self.log.log(
            WARNING,
            f"workload still running {seconds:g} s after the stop signal: "
            f"sent SIGKILL to {'group' if group else 'pid'} {pid}",
            "signal_forwarded",
            is_error=False,
            signal="SIGKILL",
            signo=signal.SIGKILL,
            target=-pid if group else pid,
            reason="kill_after",
        )

    async def shut_down(self) -> ShutdownReport:
        """End the processes left behind: SIGTERM, the grace, then SIGKILL."""

        def on_signal(phase: str, signo: int, pids: list[int]) -> None:
            shown = " ".join(str(pid) for pid in pids[:50])
            more = f" (+{len(pids) - 50} more)" if len(pids) > 50 else ""
            level = WARNING if phase == "kill" else INFO
            self.log.log(
                level,
                f"shutdown: sent {signal_name(signo)} to {len(pids)} "
                f"process{'es' if len(pids) != 1 else ''} left behind: {shown}{more}",
                f"shutdown_{phase}",
                is_error=False,
                signal=signal_name(signo),
                pids=pids,
            )

        report = await shutdown_leftovers(self.config.grace, on_signal=on_signal)
        if report.terminated or report.survivors:
            self.log.log(
                INFO,
                f"shutdown: done in {report.seconds:.3f} s "
                f"({len(set(report.terminated) - set(report.killed))} ended on SIGTERM, "
                f"{len(report.killed)} killed, {len(report.survivors)} survived)",
                "shutdown_complete",
                seconds=round(report.seconds, 6),
                terminated=len(report.terminated),
                killed=len(report.killed),
                survivors=list(report.survivors),
            )
        for pid in report.survivors:
            self.log.log(
                ERROR, f"shutdown: pid {pid} survived SIGKILL", "shutdown_survivor", pid=pid
            )
        return report

    async def wait_workload(self) -> ExitStatus | None:
        """Wait for the workload's exit (or, in pause mode, a stop signal)."""
        if self.workload is None:
            await self.stop.wait()
            return None
        try:
            status = await self.workload.wait()
        except StatusLostError as exc:
            self.log.log(ERROR, str(exc), "status_lost", pid=self.workload.pid)
            return None
        finally:
            self.claimed.discard(self.workload.pid)
        self.log.log(INFO, f"workload pid={status.pid} {status.describe()}")
        return status


def report_fault(exc: BaseException) -> None:
    """Write ``exc`` with its traceback to stderr, directly (the log may be the
    part that failed); never raises."""
    import traceback

    try:
        text = "".join(traceback.format_exception(exc))
        lines = "".join(f"nucleus-trio: {line}\n" for line in text.rstrip().splitlines())
        write_stderr(lines.encode(errors="replace"))
    except Exception:
        pass


def _close_watched(fd: int) -> None:
    """Close a descriptor trio may have watched (trio must hear of it first)."""
    trio.lowlevel.notify_closing(fd)
    os.close(fd)


async def _signalfd_wakeups(fd: int) -> AsyncIterator[object]:
    """Yield once per readiness of a signalfd, after draining it."""
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass
        yield None


def status_fields(status: ExitStatus) -> dict[str, object]:
    """Audit fields of an exit status: ``pid`` and ``exit_code`` or ``signal``."""
    if status.signal is not None:
        return {"pid": status.pid, "signal": signal_name(status.signal), "signo": status.signal}
    return {"pid": status.pid, "exit_code": status.code}


async def run_init(
    config: Config,
    workload: PidFd | None,
    log: EventLog,
    *,
    started: float | None = None,
    owns_all_children: bool = True,
) -> int:
    """Supervise an already started workload (or pause); return the exit code.

    Must run in the main thread, with :data:`STARTUP_BLOCKED` blocked.
    ``started`` is the ``time.monotonic()`` of the workload's start, for the
    runtime in the ``container_stop`` event. ``owns_all_children`` (the
    command line) lets the reaper reap any child with one ``waitid``;
    otherwise it leaves alone the children that others claim.
    """
    state = _Init(config, workload, log, owns_all_children=owns_all_children)
    status: ExitStatus | None = None
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(trio.open_signal_receiver(*FORWARDED))
        sigchld: AsyncIterator[object]
        unblock = STARTUP_BLOCKED
        if owns_all_children:
            # The command line's reaper wakes from a signalfd: one epoll
            # event per exit, without Python's signal handler and trio's
            # entry queue in between (a third of the CPU of a storm).
            # SIGCHLD stays blocked so that only the signalfd takes it.
            fd = open_signalfd({signal.SIGCHLD})
            stack.callback(_close_watched, fd)
            sigchld = _signalfd_wakeups(fd)
            unblock = STARTUP_BLOCKED - {signal.SIGCHLD}
        else:
            sigchld = stack.enter_context(trio.open_signal_receiver(signal.SIGCHLD))
        # Only now may the signals that arrived during start-up be delivered:
        # the receiver is what catches them.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, unblock)
        try:
            async with trio.open_nursery() as nursery:
                state.nursery = nursery
                nursery.start_soon(state.reaper.run, sigchld)
                nursery.start_soon(state.dispatch_signals, receiver)
                status = await state.wait_workload()
                # The reaper keeps running: the leftovers' zombies are its job.
                try:
                    await state.shut_down()
                except Exception as exc:
                    # The workload's status is known: keep it, whatever failed.
                    state.on_fault(exc)
                nursery.cancel_scope.cancel()
            # Leave no zombie that exited before the workload did.
            try:
                state.reaper.reap_now()
            except Exception as exc:
                state.on_fault(exc)
        finally:
            # Leaving the receiver re-raises the signals it has not handed
            # out; blocked, they stay pending and die with the process.
            signal.pthread_sigmask(signal.SIG_BLOCK, STARTUP_BLOCKED)
    if workload is None:
        code = 0
    elif status is None:
        code = EXIT_STATUS_LOST
    else:
        code = init_exit_code(status, config.remap_exit)
    fields: dict[str, object] = {"exit_code": code}
    if status is not None:
        fields["workload"] = status_fields(status)
        if status.signal is not None:
            fields["signal"] = signal_name(status.signal)
    if started is not None:
        fields["runtime"] = round(time.monotonic() - started, 3)
    what = (
        "pause ended"
        if workload is None
        else (f"workload {status.describe()}" if status is not None else "workload status lost")
    )
    log.log(INFO, f"stopping: {what}; exit code {code}", "container_stop", is_error=False, **fields)
    return code


async def run_with_log(
    config: Config,
    workload: PidFd | None,
    log: EventLog,
    started: float | None = None,
    owns_all_children: bool = True,
) -> int:
    """:func:`run_init` with the event writer running beside it."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.run)
        try:
            return await run_init(
                config, workload, log, started=started, owns_all_children=owns_all_children
            )
        finally:
            log.close()
            nursery.cancel_scope.deadline = trio.current_time() + FLUSH_TIMEOUT
