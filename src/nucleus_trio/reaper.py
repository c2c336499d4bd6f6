"""The one reaper: the only place that calls ``waitid(P_ALL, ...)``.

Two policies, one mechanism (README, "Reaping"):

- the init owns every child (:func:`reap_any`): one ``waitid`` per exit, and
  the status of a child that has a waiter of its own (the workload) goes to
  that waiter, whichever of them sees the exit first;
- the library reaps only the unclaimed (:func:`reap_unclaimed`): a naive
  ``waitpid(-1)`` would take the status of a child that another part of the
  program waits for (CPython turns the resulting ``ECHILD`` into a return
  code of 0), so it peeks with ``WNOWAIT``, asks who claims each zombie
  (:mod:`nucleus_trio.claims`), and reaps only the others, by PID.

:class:`Reaper` runs either pass once per wake-up (a SIGCHLD), on trio or
asyncio. It never polls: a zombie that its owner has not collected yet
costs nothing while nothing else exits. Only while the claims cannot be known
(a ``Popen`` is being built in another thread) does it look again, a few
times, on a backing-off timer.

Standard library only at import: the crash guard uses :func:`reap_any`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping

from nucleus_trio.claims import ClaimsUnknown
from nucleus_trio.proctree import list_children

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nucleus_trio.status import ExitStatus

#: Reaps between two checkpoints, so a storm of exits never holds up the
#: forwarding of a signal for long.
BATCH = 256

#: Reaps between two checkpoints for the init, which owns every child: a
#: burst of zombies goes at nearly the kernel's pace, and a signal waits at
#: most about 3 ms behind it.
OWNED_BATCH = 4 * BATCH

#: After a reaping pass raised, how long before the next try.
RETRY_AFTER_FAULT = 0.5

#: The owner's grace: the library reaps an unclaimed zombie only once it has
#: been seen exited this long before. A bare fork's parent code (``os.system``
#: in a worker thread, above all) waits for its child right after the exit;
#: the reaper's wake-up could otherwise win that race and take the status
#: (README, "Library": the reaping rule).
OWNER_GRACE = 0.02

#: While the claims are unknown (a ``Popen`` under construction), the pass is
#: tried again after each of these delays, then only at the next wake-up.
UNSURE_RETRIES = (0.005, 0.02, 0.05, 0.2, 1.0)


def reap_pid(pid: int) -> ExitStatus | None:
    """Reap ``pid`` if it has exited; ``None`` if it runs or is already gone."""
    from nucleus_trio.status import ExitStatus

    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        return None
    if info is None:
        return None
    return ExitStatus.from_siginfo(info)


def _next_exited(*, keep_zombie: bool) -> os.waitid_result | None:
    """The next exited child (reaped unless ``keep_zombie``), or ``None``."""
    flags = os.WEXITED | os.WNOHANG | (os.WNOWAIT if keep_zombie else 0)
    try:
        return os.waitid(os.P_ALL, 0, flags)
    except ChildProcessError:
        return None


def reap_any(
    limit: int = OWNED_BATCH,
    *,
    keep: bool = True,
    waiters: Mapping[int, Callable[[ExitStatus], None]] | None = None,
) -> tuple[list[ExitStatus], bool]:
    """Reap up to ``limit`` exited children, whoever they are (the init owns
    every child). Returns the statuses (only with ``keep``: in a storm nobody
    may read them) and whether more may be waiting.

    A child named in ``waiters`` has its status handed to that callback
    instead: the workload's status is never lost to the orphan reaper.
    """
    # The storm's and the burst's hot loop: one waitid per exit and nothing
    # else, no call or allocation that a status nobody reads would need.
    reaped: list[ExitStatus] = []
    waitid = os.waitid
    flags = os.WEXITED | os.WNOHANG
    watched = waiters or {}
    for _ in range(limit):
        try:
            info = waitid(os.P_ALL, 0, flags)
        except ChildProcessError:
            return reaped, False
        if info is None:
            return reaped, False
        if watched and info.si_pid in watched:
            watched[info.si_pid](_status(info))
        elif keep:
            reaped.append(_status(info))
    return reaped, True


def _status(info: os.waitid_result) -> ExitStatus:
    from nucleus_trio.status import ExitStatus

    return ExitStatus.from_siginfo(info)


def _has_exited(pid: int) -> bool:
    """Whether child ``pid`` is a zombie (it stays one)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False


class OwnerGrace:
    """When each unclaimed zombie was first seen: it is reaped only once it
    has been a zombie for :data:`OWNER_GRACE`, so that its parent code gets
    the first chance at it."""

    def __init__(self, grace: float = OWNER_GRACE, clock: Callable[[], float] | None = None):
        import time

        self.grace = grace
        self._clock = clock or time.monotonic
        self._seen: dict[int, float] = {}

    def ripe(self, pid: int) -> bool:
        """Whether the zombie ``pid`` may be reaped now (recording a first sighting)."""
        now = self._clock()
        return now - self._seen.setdefault(pid, now) >= self.grace

    def forget_all_but(self, zombies: Collection[int]) -> None:
        """Drop the sightings of the processes that are no longer zombies."""
        self._seen = {pid: at for pid, at in self._seen.items() if pid in zombies}

    @contextlib.contextmanager
    def waived(self) -> Iterator[None]:
        """No grace inside the block: an explicit ``reap_now()`` reaps now."""
        grace, self.grace = self.grace, 0.0
        try:
            yield
        finally:
            self.grace = grace

    def next_look(self) -> float | None:
        """Seconds until the youngest waiting zombie is ripe, or ``None``."""
        if not self._seen:
            return None
        return max(0.0, min(self._seen.values()) + self.grace - self._clock())


def reap_unclaimed(
    claimed: Callable[[], Collection[int]],
    limit: int = BATCH,
    *,
    owners: OwnerGrace | None = None,
    known: Collection[int] = (),
) -> tuple[list[ExitStatus], bool]:
    """Reap up to ``limit`` exited children that nobody claims (and, with
    ``owners``, that have had their owner's grace).

    Returns what was reaped and whether more may be waiting. ``claimed`` is
    asked *after* each zombie is seen: a zombie seen at one moment existed
    then, so whoever owns it is registered by the time of the question.
    """
    reaped: list[ExitStatus] = []
    while len(reaped) < limit:
        info = _next_exited(keep_zombie=True)
        if info is None:
            if owners is not None:
                owners.forget_all_but(())
            return reaped, False
        if (
            info.si_pid not in known
            and info.si_pid not in claimed()
            and (owners is None or owners.ripe(info.si_pid))
        ):
            status = reap_pid(info.si_pid)
            if status is not None:
                reaped.append(status)
            continue
        # The oldest zombie is claimed (or young), and P_ALL cannot see past
        # it: list the children first, then ask for the claims, then reap
        # the others by PID.
        # ``known`` (our own workloads) are claimed for sure: the full
        # claims (every Popen, every pidfd) only for the others, if any.
        children = [pid for pid in list_children() if pid not in known]
        if not children:
            if owners is not None:
                owners.forget_all_but(())
            return reaped, False
        claims = claimed()
        zombies = [pid for pid in children if pid not in claims]
        if owners is not None:
            zombies = [pid for pid in zombies if _has_exited(pid)]
            owners.forget_all_but(zombies)
        for pid in zombies:
            if len(reaped) >= limit:
                return reaped, True
            if owners is None or owners.ripe(pid):
                status = reap_pid(pid)
                if status is not None:
                    reaped.append(status)
        return reaped, False
    return reaped, True


class Reaper:
    """Runs a reaping pass once per wake-up, and reports what it reaped.

    The pass is :func:`reap_unclaimed` with ``claimed`` (the library's
    policy), unless ``reap`` gives another (the init's ``reap_any``).
    ``claimed`` may raise :class:`~nucleus_trio.claims.ClaimsUnknown`.
    With ``owners`` (the :class:`~nucleus_trio.reaper.OwnerGrace` the pass uses), a zombie left
    for its owner is looked at again once its grace is over.
    """

    def __init__(
        self,
        claimed: Callable[[], Collection[int]],
        on_reaped: Callable[[ExitStatus], None],
        on_error: Callable[[Exception], None] | None = None,
        *,
        reap: Callable[[], tuple[list[ExitStatus], bool]] | None = None,
        owners: OwnerGrace | None = None,
    ) -> None:
        self._claimed = claimed
        self._owners = owners
        self._reap = reap if reap is not None else self._reap_unclaimed
        self._on_reaped = on_reaped
        self._on_error = on_error
        self.reaped_count = 0

    def _reap_unclaimed(self) -> tuple[list[ExitStatus], bool]:
        return reap_unclaimed(self._claimed)

    def reap_now(self) -> int:
        """Reap every zombie the policy allows, synchronously; return how many.

        Raises :class:`~nucleus_trio.claims.ClaimsUnknown` when the claims
        cannot be known right now.
        """
        total = 0
        more = True
        with self._owners.waived() if self._owners is not None else contextlib.nullcontext():
            while more:
                reaped, more = self._reap()
                self._report(reaped)
                total += len(reaped)
        return total

    def _report(self, reaped: list[ExitStatus]) -> None:
        self.reaped_count += len(reaped)
        for status in reaped:
            self._on_reaped(status)

    def _batch(self) -> str:
        """One batch of the pass: ``"done"``, ``"more"``, ``"unsure"`` (claims
        unknown) or ``"fault"``. Synchronous: a storm wakes the reaper once
        per orphan, and each wake-up should cost one batch and nothing more."""
        try:
            reaped, more = self._reap()
        except ClaimsUnknown:
            return "unsure"
        except Exception as exc:
            # A fault here must not take the init down with it. The pass is
            # tried again shortly: the zombies it left may bring no other
            # SIGCHLD. (A timer only while faulty.)
            if self._on_error is None:
                raise
            self._on_error(exc)
            return "fault"
        if reaped:
            self._report(reaped)
        return "more" if more else "done"

    async def run(self, wakeups: AsyncIterator[object]) -> None:
        """Reap once now, then once per wake-up (a SIGCHLD), until cancelled."""
        from nucleus_trio.backend import loop

        calls = loop()
        checkpoint = calls.checkpoint
        iterator = wakeups.__aiter__()
        unsure = 0
        while True:
            outcome = self._batch()
            while outcome == "more":
                await checkpoint()
                outcome = self._batch()
            delay: float | None = None
            if outcome == "fault":
                delay = RETRY_AFTER_FAULT
            elif outcome == "unsure" and unsure < len(UNSURE_RETRIES):
                delay = UNSURE_RETRIES[unsure]
                unsure += 1
            elif outcome == "done":
                unsure = 0
                if self._owners is not None:
                    delay = self._owners.next_look()  # a timer only while one waits
            if delay is None:
                await iterator.__anext__()
            else:
                with calls.move_on_after(delay):
                    await iterator.__anext__()
