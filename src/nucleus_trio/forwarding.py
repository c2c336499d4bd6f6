"""One forwarding rule: what a received signal becomes, and who receives it.

The pure part decides (:func:`route_signal`, :func:`check_library_signals`);
:class:`Forwarder` only waits and acts. One receiver serves every target that
asked for a signal, so several workloads share one signal (trio hands a
signal to the most recently opened receiver only, so two receivers for one
signal would starve the first). The command line forwards every signal it
can catch to its workload; the library forwards a safe default set, never
the host program's own SIGPIPE (README, "Signals" and "Library").
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import attrs

from nucleus_trio import events
from nucleus_trio.levels import DEBUG, ERROR
from nucleus_trio.signals import FORWARDED, signal_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nucleus_trio.audit import EventLog
    from nucleus_trio.process import Process

#: What the library forwards when asked for no set: the seed's six and WINCH.
LIBRARY_DEFAULT: frozenset[int] = frozenset(
    {
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
    }
)


@attrs.frozen
class SignalRoute:
    """The decision for one received signal: ``signo`` 0 means it is dropped."""

    received: int
    signo: int

    @property
    def dropped(self) -> bool:
        """True when a rewrite to 0 swallows the signal."""
        return self.signo == 0

    @property
    def rewritten(self) -> bool:
        """True when the signal sent differs from the one received."""
        return self.signo != self.received

    def describe(self) -> str:
        """``SIGTERM``, or ``SIGQUIT (rewritten from SIGTERM)``, for logs."""
        if self.dropped:
            return f"{signal_name(self.received)} (dropped by a rewrite)"
        if self.rewritten:
            return f"{signal_name(self.signo)} (rewritten from {signal_name(self.received)})"
        return signal_name(self.signo)


def route_signal(received: int, rewrites: Mapping[int, int]) -> SignalRoute:
    """Decide what a received signal becomes under the rewrite table."""
    return SignalRoute(received, rewrites.get(received, received))


def check_library_signals(signals: Iterable[int], refused: Iterable[int] = ()) -> frozenset[int]:
    """The set a library caller may forward, or ``ValueError`` naming the first
    signal that it may not: one the init never forwards (SIGCHLD, SIGKILL,
    the faults' own), the host program's SIGPIPE (its own broken-pipe writes
    raise it), or one of ``refused`` (the loop's receiver cannot take it)."""
    wanted = frozenset(int(s) for s in signals)
    refused_set = frozenset(refused)
    for signo in sorted(wanted):
        if signo == signal.SIGPIPE:
            raise ValueError("SIGPIPE is never forwarded: the program's own writes raise it")
        if signo not in FORWARDED:
            raise ValueError(f"{signal_name(signo)} cannot be forwarded")
        if signo in refused_set:
            raise ValueError(f"{signal_name(signo)} cannot be received on this event loop")
    return wanted


class Target:
    """A receiver of forwarded signals: the signals it wants, and what to do
    with each (``deliver``, which may raise; the fault is reported)."""

    def __init__(self, signals: frozenset[int], deliver: Callable[[int], None]) -> None:
        self.signals = signals
        self.deliver = deliver


class ProcessTarget(Target):
    """The one forwarding rule, for one process: route the received signal
    (``rewrites``), send it through the pidfd (to the process group with
    ``group``, by default when the process has its own), record it; then
    ``after(received)``, the init's hook for ``--kill-after``."""

    def __init__(
        self,
        process: Process,
        signals: frozenset[int],
        log: EventLog,
        *,
        group: bool | None = None,
        rewrites: Mapping[int, int] | None = None,
        after: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(signals, self.forward)
        self.process = process
        self.group = process.process_group if group is None else group
        self.rewrites = dict(rewrites or {})
        self.after = after
        self.log = log

    def forward(self, received: int) -> None:
        """Forward one received signal."""
        route = route_signal(received, self.rewrites)
        if route.dropped:
            self.log.emit(events.signal_dropped(received))
            return
        try:
            self.process.pidfd.send_signal(route.signo, group=self.group)
        except ProcessLookupError:
            self.log.log(DEBUG, f"workload gone, {route.describe()} not forwarded")
            return
        except OSError as exc:
            self.log.log(ERROR, f"forwarding {route.describe()} failed: {exc.strerror}")
            return
        pid = self.process.pid
        self.log.emit(
            events.signal_forwarded(route.signo, -pid if self.group else pid, received=received)
        )
        if self.after is not None:
            self.after(received)


class Forwarder:
    """Opens the receivers and hands each signal to every target that wants it.

    A receiver is opened at once by :meth:`add` (a signal sent right after
    the call is not lost) and closed when no target wants its signals any
    more, which gives the signals back to the program.
    """

    def __init__(self, task_group: Any, on_fault: Callable[[Exception], None]) -> None:
        self._task_group = task_group
        self._on_fault = on_fault
        self._targets: list[Target] = []
        self._receivers: list[tuple[frozenset[int], Any]] = []

    def add(self, target: Target) -> None:
        """Start forwarding ``target.signals`` to ``target``."""
        from nucleus_trio.backend import open_signal_receiver

        covered = frozenset().union(*(signals for signals, _ in self._receivers))
        self._targets.append(target)
        missing = target.signals - covered
        if not missing:
            return
        stack = contextlib.ExitStack()
        receiver = stack.enter_context(open_signal_receiver(missing))
        from nucleus_trio.backend import loop

        scope = loop().CancelScope()
        self._receivers.append((missing, scope))
        self._task_group.start_soon(self._dispatch, receiver, scope, stack)

    def remove(self, target: Target) -> None:
        """Stop forwarding to ``target``; close the receivers nobody needs."""
        if target in self._targets:
            self._targets.remove(target)
        wanted = frozenset().union(*(t.signals for t in self._targets))
        for signals, scope in list(self._receivers):
            if not signals & wanted:
                self._receivers.remove((signals, scope))
                scope.cancel()

    async def _dispatch(
        self, receiver: AsyncIterator[int], scope: Any, stack: contextlib.ExitStack
    ) -> None:
        with stack, scope:
            async for signo in receiver:
                self.dispatch(signo)

    def dispatch(self, signo: int) -> None:
        """Hand ``signo`` to every target that wants it."""
        for target in list(self._targets):
            if signo in target.signals:
                try:
                    target.deliver(signo)
                except Exception as exc:
                    self._on_fault(exc)
