"""Reaping orphans without ever taking a status that belongs to someone else.

A naive ``waitpid(-1)`` reaps whatever exits first, including the workload or
a child that another part of the program waits for, whose status is then lost
(CPython turns the resulting ``ECHILD`` into a return code of 0). This reaper
peeks with ``WNOWAIT``, works out who claims each zombie, and reaps only the
unclaimed ones, by PID. It wakes only when told to (on SIGCHLD): no polling.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Collection, Iterator

import trio

from nucleus_trio.status import ExitStatus

#: Reaps between two checkpoints, so a storm of exits never holds up the
#: forwarding of a signal for long.
BATCH = 256

#: After a reaping pass raised, how long before the next try.
RETRY_AFTER_FAULT = 0.5


def list_children(pid: int | None = None) -> list[int]:
    """The PIDs of the children of ``pid`` (default: this process).

    Read from every thread's ``children`` list; for this process, on a kernel
    without those lists, from a walk of ``/proc/*/stat``.
    """
    base = "/proc/self" if pid is None else f"/proc/{pid}"
    kids: list[int] = []
    try:
        tids = os.listdir(f"{base}/task")
    except OSError:
        tids = []
    found_file = False
    for tid in tids:
        try:
            with open(f"{base}/task/{tid}/children", "rb") as handle:
                found_file = True
                kids.extend(int(word) for word in handle.read().split())
        except OSError:
            continue
    if found_file or pid is not None:
        return kids
    return list(_children_from_stat())


def _children_from_stat() -> Iterator[int]:
    """Fallback for kernels without ``children`` files: walk ``/proc/*/stat``."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            yield int(entry)


def reap_pid(pid: int) -> ExitStatus | None:
    """Reap ``pid`` if it has exited; ``None`` if it runs or is already gone."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        return None
    if info is None:
        return None
    return ExitStatus.from_siginfo(info)


def reap_unclaimed(
    claimed: Callable[[], Collection[int]], limit: int = BATCH
) -> tuple[list[ExitStatus], bool]:
    """Reap up to ``limit`` exited children that nobody claims.

    Returns what was reaped and whether more may be waiting. ``claimed`` is
    asked *after* each zombie is seen: a zombie seen at one moment existed
    then, so whoever owns it is registered by the time of the question.
    """
    reaped: list[ExitStatus] = []
    while len(reaped) < limit:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped, False
        if info is None:
            return reaped, False
        if info.si_pid not in claimed():
            status = reap_pid(info.si_pid)
            if status is not None:
                reaped.append(status)
            continue
        # The oldest zombie is claimed, and P_ALL cannot see past it: list the
        # children first, then ask for the claims, then reap the others by PID.
        children = list_children()
        claims = claimed()
        for pid in children:
            if len(reaped) >= limit:
                return reaped, True
            if pid not in claims:
                status = reap_pid(pid)
                if status is not None:
                    reaped.append(status)
        return reaped, False
    return reaped, True


class Reaper:
    """A task that reaps unclaimed children each time :meth:`wake` is called.

    ``reap`` replaces the default pass (:func:`reap_unclaimed` with
    ``claimed``), e.g. with a plain ``waitid`` loop for a process that owns
    every child.
    """

    def __init__(
        self,
        claimed: Callable[[], Collection[int]],
        on_reaped: Callable[[ExitStatus], None],
        on_error: Callable[[Exception], None] | None = None,
        *,
        reap: Callable[[], tuple[list[ExitStatus], bool]] | None = None,
    ) -> None:
        self._claimed = claimed
        self._reap = reap if reap is not None else self._reap_unclaimed
        self._on_reaped = on_reaped
        self._on_error = on_error
        self._wake_send, self._wake_receive = trio.open_memory_channel[None](1)
        self.reaped_count = 0

    def _reap_unclaimed(self) -> tuple[list[ExitStatus], bool]:
        return reap_unclaimed(self._claimed)

    def wake(self) -> None:
        """Ask for a pass; several calls before the pass runs make one pass."""
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:
            pass

    def reap_now(self) -> int:
        """Reap every unclaimed zombie synchronously; return how many."""
        total = 0
        more = True
        while more:
            reaped, more = self._reap()
            self._report(reaped)
            total += len(reaped)
        return total

    def _report(self, reaped: list[ExitStatus]) -> None:
        self.reaped_count += len(reaped)
        for status in reaped:
            self._on_reaped(status)

    async def run(self, wakeups: AsyncIterator[object] | None = None) -> None:
        """Reap once now, then once per wake-up, until cancelled.

        Wake-ups come from :meth:`wake`, or, when given, from ``wakeups``
        (a SIGCHLD receiver of the reaper's own saves a task hop per exit).
        """
        iterator = wakeups.__aiter__() if wakeups is not None else None
        while True:
            more = True
            while more:
                try:
                    reaped, more = self._reap()
                    self._report(reaped)
                except Exception as exc:
                    # A fault here must not take the init down with it. The
                    # pass is tried again shortly: the zombies it left may
                    # bring no other SIGCHLD. (A timer only while faulty.)
                    if self._on_error is None:
                        raise
                    self._on_error(exc)
                    await trio.sleep(RETRY_AFTER_FAULT)
                    continue
                if more:
                    await trio.lowlevel.checkpoint()
            if iterator is None:
                await self._wake_receive.receive()
            else:
                await iterator.__anext__()
