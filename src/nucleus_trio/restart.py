"""Restart policies for long-running workers, as supervisors of every
ecosystem have them (OTP's restart intensity, systemd's ``Restart=``, s6's
backoff).

The decision is a pure function, :func:`decide`, of the policy, the worker's
history, its last status and the clock: tests call it without a process.
:class:`Worker` is the thin loop around it, one task in the supervisor's
task group: wait for the exit, decide, emit the event, sleep the backoff,
start again (README, "Restarting workers").
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any, Literal

import attrs

from nucleus_trio import events
from nucleus_trio.backend import loop
from nucleus_trio.pidfd import StatusLostError
from nucleus_trio.spawn import SpawnError
from nucleus_trio.status import ExitStatus

if TYPE_CHECKING:
    from nucleus_trio.machinery import Machinery
    from nucleus_trio.process import Process

#: Ends that ``on-failure`` counts as clean, as systemd does: exit code 0, or
#: death by one of the signals a program is asked to stop with.
CLEAN_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE})


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


@attrs.frozen
class RestartPolicy:
    """When a worker is started again, and how soon.

    ``when``: ``"on-failure"`` restarts after a non-zero exit or a death by
    a signal other than HUP, INT, TERM and PIPE; ``"always"`` after any
    exit. The n-th restart in a row waits ``initial_delay * factor**(n-1)``
    seconds, at most ``max_delay``; a run that lasted ``reset_after``
    seconds or more starts the series again. More than ``burst`` restarts
    within ``window`` seconds and the worker is given up (systemd's
    ``StartLimitBurst`` and ``StartLimitIntervalSec``, whose defaults these
    are). A worker stopped with :meth:`Worker.stop`, or by the end of the
    supervisor's block, is never restarted.
    """

    when: Literal["on-failure", "always"] = attrs.field(
        default="on-failure", validator=attrs.validators.in_(("on-failure", "always"))
    )
    initial_delay: float = attrs.field(default=0.1, validator=_non_negative)
    factor: float = attrs.field(default=2.0)
    max_delay: float = attrs.field(default=30.0, validator=_non_negative)
    burst: int = attrs.field(default=5, validator=_non_negative)
    window: float = attrs.field(default=10.0, validator=_non_negative)
    reset_after: float = attrs.field(default=10.0, validator=_non_negative)

    @factor.validator
    def _factor_at_least_one(self, _: attrs.Attribute[float], value: float) -> None:
        if value < 1:
            raise ValueError(f"factor must be >= 1, not {value!r}")

    def wants_restart(self, status: ExitStatus) -> bool:
        """Whether an exit with ``status`` calls for a restart at all."""
        if self.when == "always":
            return True
        if status.signal is not None:
            return status.signal not in CLEAN_SIGNALS
        return status.code != 0


@attrs.frozen
class RestartHistory:
    """What :func:`decide` remembers of a worker: its ``restarts`` so far,
    the times of those within the policy's window, and the ``streak`` of
    restarts since the last long run (the backoff's exponent)."""

    restarts: int = 0
    recent: tuple[float, ...] = ()
    streak: int = 0


@attrs.frozen
class Decision:
    """What follows an exit: ``"restart"`` after ``delay`` seconds, ``"stop"``
    (the policy wants no restart) or ``"give_up"`` (the burst limit)."""

    action: Literal["restart", "stop", "give_up"]
    delay: float
    history: RestartHistory


def decide(
    policy: RestartPolicy,
    history: RestartHistory,
    status: ExitStatus,
    *,
    started_at: float,
    now: float,
) -> Decision:
    """The decision after a run that started at ``started_at`` ended with
    ``status`` at ``now`` (both on one monotonic clock)."""
    if not policy.wants_restart(status):
        return Decision("stop", 0.0, history)
    streak = 0 if now - started_at >= policy.reset_after else history.streak
    recent = tuple(at for at in history.recent if now - at < policy.window)
    if len(recent) >= policy.burst:
        return Decision("give_up", 0.0, attrs.evolve(history, recent=recent))
    delay = min(policy.max_delay, policy.initial_delay * policy.factor**streak)
    return Decision(
        "restart", delay, RestartHistory(history.restarts + 1, (*recent, now), streak + 1)
    )


class Worker:
    """A workload that a :class:`RestartPolicy` starts again: made by
    :meth:`Supervisor.start_worker <nucleus_trio.Supervisor.start_worker>`.

    ``process`` is the current run's :class:`~nucleus_trio.Process` (a new
    one after each restart, with new streams when pipes were asked for).
    """

    def __init__(
        self,
        machinery: Machinery,
        process: Process,
        policy: RestartPolicy,
        options: dict[str, Any],
    ) -> None:
        self._machinery = machinery
        self.process = process
        self.policy = policy
        self._options = options
        self._history = RestartHistory()
        self._started_at = loop().current_time()
        self._stopped = False
        self._done = loop().Event()
        self._next_run = loop().Event()
        self._error: BaseException | None = None
        self._forwards: list[tuple[frozenset[int], bool | None]] = []
        #: The status of every run so far, in order.
        self.statuses: list[ExitStatus] = []
        #: Whether the burst limit ended the restarts.
        self.gave_up = False

    @property
    def argv(self) -> tuple[str, ...]:
        """The command every run starts."""
        return self.process.argv

    @property
    def restarts(self) -> int:
        """How many times the worker was started again."""
        return self._history.restarts

    @property
    def done(self) -> bool:
        """Whether the worker has stopped for good (no run and no restart to come)."""
        return bool(self._done.is_set())

    async def wait(self) -> ExitStatus:
        """Wait until the worker stops for good; return its last run's status.

        Raises what ended the restarts when it was not an exit: the
        :class:`~nucleus_trio.SpawnError` of a restart that could not run,
        or :class:`~nucleus_trio.StatusLostError`.
        """
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self.statuses[-1]

    async def next_run(self) -> Process | None:
        """Wait until the next run starts and return it, or ``None`` when the
        worker stops for good first."""
        current, started = self.process, self._next_run
        await started.wait()
        return None if self.process is current else self.process

    def stop(self, signo: int = signal.SIGTERM) -> None:
        """Restart no more, and send ``signo`` to the current run (0: none)."""
        self._stopped = True
        if signo:
            self.process.send_signal(signo)

    def send_signal(self, signo: int, *, group: bool | None = None) -> None:
        """Send ``signo`` to the current run (see :meth:`Process.send_signal
        <nucleus_trio.Process.send_signal>`); a run that exits of it is
        restarted as the policy says."""
        self.process.send_signal(signo, group=group)

    def forward(self, signals: frozenset[int], group: bool | None) -> None:
        """Forward ``signals`` to the current run and to every later one."""
        self._forwards.append((signals, group))
        if not self.process.exited:
            self._machinery.forward(self.process, signals, group=group)

    async def supervise(self) -> None:
        """The worker's task: wait, decide, back off, start again."""
        try:
            while (delay := await self._run_ended()) is not None:
                await loop().sleep(delay)
                if self._stopped or self._machinery.stopping:
                    return
                self.process = await self._machinery.spawn(self.argv, **self._options)
                self._started_at = loop().current_time()
                for signals, group in self._forwards:
                    self._machinery.forward(self.process, signals, group=group)
                started, self._next_run = self._next_run, loop().Event()
                started.set()
        except (SpawnError, StatusLostError) as exc:
            self._error = exc
        finally:
            self._done.set()
            self._next_run.set()

    async def _run_ended(self) -> float | None:
        """Wait for the current run's end; the delay before starting it
        again, or ``None`` for no restart."""
        # Shielded: the block's end cancels this task, but the run's status
        # belongs in ``statuses``; the shutdown ends the run (or closes its
        # pidfd), so the wait ends too.
        with loop().CancelScope(shield=True):
            status = await self.process.wait()
        self.statuses.append(status)
        if self._stopped or self._machinery.stopping:
            return None
        now = loop().current_time()
        decision = decide(
            self.policy, self._history, status, started_at=self._started_at, now=now
        )
        self._history = decision.history
        if decision.action == "give_up":
            self.gave_up = True
            self._machinery.emit(
                events.restart_limit_reached(status, self.restarts, self.policy.window)
            )
        elif decision.action == "restart":
            self._machinery.emit(
                events.workload_restarting(status, self.restarts, decision.delay)
            )
            return decision.delay
        return None

    def __repr__(self) -> str:
        return (
            f"<Worker argv={list(self.argv)!r} pid={self.process.pid} "
            f"restarts={self.restarts} done={self.done}>"
        )

