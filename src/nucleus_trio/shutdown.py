"""Orderly shutdown: the processes left behind get SIGTERM, a grace, then SIGKILL.

Which processes: as PID 1 with its own ``/proc``, every process of the PID
namespace, found by listing ``/proc`` (this includes processes that entered
the namespace from outside, such as ``docker exec``, which are nobody's
descendants here); otherwise every descendant, found through the kernel's
``/proc/PID/task/TID/children`` lists. A walk of the children lists finds
double-forked daemons whatever session or process group they moved to,
because they were re-parented to the init (PID 1 or subreaper) and so are
its children. A cgroup would need the init to own one, which neither Docker
nor a plain subreaper gives it.

How it waits: one pidfd per process, each waited on by its own task; the
grace ends the moment the last pidfd reports an exit, and no timer is
waited out when nothing is left. The list is taken again after each round,
so a process forked or re-parented during the shutdown is caught too.

One schedule for both faces (README, "Shutdown" and "Library"): the command
line ends the leftovers of its workload, a supervisor's block ends its
workloads and theirs, on trio or asyncio. Nothing interrupts it halfway: it
runs shielded from cancellation, and a KeyboardInterrupt (a second Ctrl-C)
during the grace only cuts the grace short. The SIGKILL is sent all the
same, and the interrupt is raised again once the schedule is over.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable

import attrs

from nucleus_trio.backend import loop, wait_readable
from nucleus_trio.proctree import leftovers

#: After SIGKILL, how long to wait for the kernel to finish the processes off
#: before giving up on them (a process in uninterruptible sleep can take a
#: while; the init must still exit).
KILL_WAIT = 5.0

#: How many times the SIGKILL round is repeated for processes forked meanwhile.
KILL_ROUNDS = 3

#: The shortest time between two listings of the leftovers during the grace.
RELIST_INTERVAL = 0.02


@attrs.frozen
class ShutdownReport:
    """What the shutdown did: who got which signal, and how long it took."""

    terminated: tuple[int, ...] = ()
    killed: tuple[int, ...] = ()
    survivors: tuple[int, ...] = ()
    seconds: float = 0.0


class _Tracked:
    """A pidfd per leftover: signalled and waited on by identity, not by PID."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}

    def add(self, pids: Iterable[int]) -> list[int]:
        """Open pidfds for the new ones among ``pids``; return the PIDs added.

        A PID whose tracked process has exited may belong to a new process by
        now: it is tracked afresh.
        """
        added = []
        exited: set[int] | None = None
        for pid in sorted(pids):
            if pid in self.fds:
                if exited is None:
                    exited = set(self.fds) - set(self.alive())
                if pid not in exited:
                    continue
                os.close(self.fds.pop(pid))
            try:
                self.fds[pid] = os.pidfd_open(pid)
            except OSError:
                continue  # gone already
            added.append(pid)
        return added

    def alive(self) -> list[int]:
        """PIDs whose process has not exited (its pidfd is not readable)."""
        import select

        poller = select.poll()
        for fd in self.fds.values():
            poller.register(fd, select.POLLIN)
        exited = {fd for fd, _ in poller.poll(0)}
        return [pid for pid, fd in self.fds.items() if fd not in exited]

    def signal(self, pids: Iterable[int], signo: int) -> list[int]:
        """Send ``signo`` to each of ``pids``; return those it reached."""
        sent = []
        for pid in pids:
            try:
                signal.pidfd_send_signal(self.fds[pid], signo, None, 0)
            except OSError:
                continue
            sent.append(pid)
        return sent

    async def wait_any(self, pids: Iterable[int]) -> None:
        """Return once at least one process of ``pids`` has exited."""
        async with loop().open_task_group() as group:

            async def one(fd: int) -> None:
                await wait_readable(fd)
                group.cancel_scope.cancel()

            for pid in pids:
                group.start_soon(one, self.fds[pid])

    async def wait_all(self, pids: Iterable[int]) -> None:
        """Return once every process of ``pids`` has exited."""
        async with loop().open_task_group() as group:
            for pid in pids:
                group.start_soon(wait_readable, self.fds[pid])

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


async def shutdown_leftovers(
    grace: float,
    *,
    find: Callable[[], set[int]] = leftovers,
    on_signal: Callable[[str, int, list[int]], None] | None = None,
    kill_everything: bool | None = None,
) -> ShutdownReport:
    """End every process ``find`` returns: SIGTERM, up to ``grace`` s, SIGKILL.

    ``on_signal(phase, signo, pids)`` is told of each batch signalled.
    ``kill_everything`` (default: when PID 1) also sends the SIGKILL with
    ``kill(-1)``, which in a PID namespace reaches exactly its processes.
    Shielded from cancellation; a KeyboardInterrupt ends the grace early and
    comes out once every process got its SIGKILL (see the module's doc).
    """
    state = _Shutdown(
        find, on_signal, os.getpid() == 1 if kill_everything is None else kill_everything
    )
    interrupted: BaseException | None = None
    calls = loop()
    with calls.CancelScope(shield=True):
        started = calls.current_time()
        try:
            try:
                await state.terminate(started + grace)
            except BaseException as exc:
                if not is_interruption(exc):
                    raise
                interrupted = exc
            try:
                if interrupted is not None or calls.current_time() >= started + grace:
                    await state.kill()
            except BaseException as exc:
                if not is_interruption(exc):
                    raise
                # SIGKILL is sent; only the wait for the kernel is cut short.
                interrupted = interrupted or exc
            survivors = tuple(state.tracked.alive())
        finally:
            state.tracked.close()
        report = ShutdownReport(
            tuple(state.terminated), tuple(state.killed), survivors, calls.current_time() - started
        )
    if interrupted is not None:
        raise interrupted
    return report


def is_interruption(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C as the loop delivers it: a KeyboardInterrupt
    (trio raises it where the main task waits, so a task group may wrap it),
    or on asyncio the main task's cancellation by ``asyncio.Runner``."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_interruption(inner) for inner in exc.exceptions)
    return isinstance(exc, (KeyboardInterrupt, loop().cancelled))


class _Shutdown:
    """The two phases of one shutdown, and who got which signal."""

    def __init__(
        self,
        find: Callable[[], set[int]],
        on_signal: Callable[[str, int, list[int]], None] | None,
        kill_everything: bool,
    ) -> None:
        self.find = find
        self.on_signal = on_signal
        self.kill_everything = kill_everything
        self.tracked = _Tracked()
        self.terminated: list[int] = []
        self.killed: list[int] = []

    async def terminate(self, deadline: float) -> None:
        """SIGTERM to each process found, until all are gone or ``deadline``."""
        while True:
            new = self.tracked.add(self.find())
            if new:
                sent = self.tracked.signal(new, signal.SIGTERM)
                self.terminated += sent
                if sent and self.on_signal is not None:
                    self.on_signal("terminate", signal.SIGTERM, sent)
            alive = self.tracked.alive()
            if not alive and not new:
                return
            # Any exit may have re-parented a child to the init, or a
            # SIGTERM handler may have forked: look again after each exit
            # (no more often than RELIST_INTERVAL, so a crowd that exits one
            # by one does not cost a listing each).
            calls = loop()
            listed_at = calls.current_time()
            with calls.move_on_after(max(deadline - listed_at, 0)):
                await self.tracked.wait_any(alive)
                if self.tracked.alive():
                    await calls.sleep_until(min(listed_at + RELIST_INTERVAL, deadline))
            if calls.current_time() >= deadline:
                return

    async def kill(self) -> None:
        """SIGKILL to whatever is left, a few rounds (for late forks)."""
        for _ in range(KILL_ROUNDS):
            # Kill the whole current set, not only the ones tracked so far.
            self.tracked.add(self.find())
            alive = self.tracked.alive()
            if not alive:
                return
            if self.kill_everything:
                try:
                    os.kill(-1, signal.SIGKILL)
                except OSError:
                    pass
            sent = self.tracked.signal(alive, signal.SIGKILL)
            self.killed += sent
            if sent and self.on_signal is not None:
                self.on_signal("kill", signal.SIGKILL, sent)
            with loop().move_on_after(KILL_WAIT):
                await self.tracked.wait_all(alive)
