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
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable

import attrs
import trio

from nucleus_trio.reaper import list_children

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

    @property
    def clean(self) -> bool:
        """True when nothing needed SIGKILL and nothing survived."""
        return not self.killed and not self.survivors


def own_namespace_proc() -> bool:
    """Whether this process is PID 1 and ``/proc`` shows its own namespace."""
    if os.getpid() != 1:
        return False
    try:
        return os.readlink("/proc/self") == "1"
    except OSError:
        return False


def namespace_processes() -> set[int]:
    """Every process of the PID namespace but the init (``/proc`` must be ours)."""
    return {int(name) for name in os.listdir("/proc") if name.isdigit()} - {os.getpid()}


def descendants(root: int | None = None) -> set[int]:
    """Every descendant of ``root`` (default: this process)."""
    me = os.getpid()
    start = me if root is None else root
    found: set[int] = set()
    frontier = [start]
    while frontier:
        parent = frontier.pop()
        kids = list_children(None if parent == me else parent)
        for kid in kids:
            if kid not in found and kid != me:
                found.add(kid)
                frontier.append(kid)
    return found


def is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (or is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True
    # The command name may hold spaces and parentheses: the state follows the last ')'.
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")


def leftovers() -> set[int]:
    """The live processes the shutdown must end (see the module's docstring).

    Zombies are left out: they have nothing to end, and their reaping is the
    reaper's (or their own parent's) business.
    """
    found = namespace_processes() if own_namespace_proc() else descendants()
    return {pid for pid in found if not is_zombie(pid)}


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
        async with trio.open_nursery() as nursery:

            async def one(fd: int) -> None:
                await trio.lowlevel.wait_readable(fd)
                nursery.cancel_scope.cancel()

            for pid in pids:
                nursery.start_soon(one, self.fds[pid])

    async def wait_all(self, pids: Iterable[int]) -> None:
        """Return once every process of ``pids`` has exited."""
        async with trio.open_nursery() as nursery:
            for pid in pids:
                nursery.start_soon(trio.lowlevel.wait_readable, self.fds[pid])

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
    """
    started = trio.current_time()
    deadline = started + grace
    tracked = _Tracked()
    terminated: list[int] = []
    killed: list[int] = []
    if kill_everything is None:
        kill_everything = os.getpid() == 1
    try:
        while True:
            new = tracked.add(find())
            if new:
                sent = tracked.signal(new, signal.SIGTERM)
                terminated += sent
                if sent and on_signal is not None:
                    on_signal("terminate", signal.SIGTERM, sent)
            alive = tracked.alive()
            if not alive and not new:
                break
            # Any exit may have re-parented a child to the init, or a
            # SIGTERM handler may have forked: look again after each exit
            # (no more often than RELIST_INTERVAL, so a crowd that exits one
            # by one does not cost a listing each).
            listed_at = trio.current_time()
            with trio.move_on_at(deadline):
                await tracked.wait_any(alive)
                if tracked.alive():
                    await trio.sleep_until(min(listed_at + RELIST_INTERVAL, deadline))
            if trio.current_time() >= deadline:
                break
        rounds = 0
        while trio.current_time() >= deadline and rounds < KILL_ROUNDS:
            # Kill the whole current set, not only the ones tracked so far.
            rounds += 1
            tracked.add(find())
            alive = tracked.alive()
            if not alive:
                break
            if kill_everything:
                try:
                    os.kill(-1, signal.SIGKILL)
                except OSError:
                    pass
            sent = tracked.signal(alive, signal.SIGKILL)
            killed += sent
            if sent and on_signal is not None:
                on_signal("kill", signal.SIGKILL, sent)
            with trio.move_on_after(KILL_WAIT):
                await tracked.wait_all(alive)
        survivors = tuple(tracked.alive())
    finally:
        tracked.close()
    return ShutdownReport(
        tuple(terminated), tuple(killed), survivors, trio.current_time() - started
    )
