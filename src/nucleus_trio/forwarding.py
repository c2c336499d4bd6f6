"""What a received signal becomes, and sending it to the workload."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from nucleus_trio.signals import signal_name


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
