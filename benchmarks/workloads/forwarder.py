"""Reference forwarders: the least a Python forwarder on trio can do.

``python forwarder.py trio|signalfd PROGRAM [ARGS...]`` starts PROGRAM with
SIGUSR1 and SIGTERM blocked, then sends every SIGUSR1 or SIGTERM it receives
to PROGRAM through a pidfd; after a SIGTERM it waits for PROGRAM and exits
with its code. No reaping, no logging, no rewriting.

* ``trio`` takes the signals from ``trio.open_signal_receiver``, the
  receiver the spec gives nucleus-trio: Python's C handler, trio's Python
  handler, its entry queue, then the receiving task.
* ``signalfd`` keeps them blocked and reads a signalfd(2) when trio's epoll
  says it is readable: one loop turn per signal.

The benchmark runs both beside nucleus-trio to show how much of its
forwarding latency is its own code and how much the receiver's path (see
``signal_profile.py``).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable

SIGNALS = {signal.SIGUSR1, signal.SIGTERM}


def from_receiver(pidfd: int) -> Callable[[], Awaitable[None]]:
    import trio

    async def forward() -> None:
        with trio.open_signal_receiver(*SIGNALS) as receiver:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            async for signo in receiver:
                signal.pidfd_send_signal(pidfd, signo)
                if signo == signal.SIGTERM:
                    return

    return forward


def from_signalfd(pidfd: int) -> Callable[[], Awaitable[None]]:
    import trio

    from nucleus_trio.kernel import open_signalfd

    signalfd = open_signalfd(SIGNALS)

    async def forward() -> None:
        while True:
            await trio.lowlevel.wait_readable(signalfd)
            # struct signalfd_siginfo is 128 bytes; ssi_signo comes first.
            info = os.read(signalfd, 128)
            signo = int.from_bytes(info[:4], sys.byteorder)
            signal.pidfd_send_signal(pidfd, signo)
            if signo == signal.SIGTERM:
                return

    return forward


def main(argv: list[str]) -> int:
    modes = {"trio": from_receiver, "signalfd": from_signalfd}
    if len(argv) < 2 or argv[0] not in modes:
        print("usage: forwarder.py trio|signalfd PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.execv(argv[1], argv[1:])
    import trio

    trio.run(modes[argv[0]](os.pidfd_open(pid)))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) & 0xFF


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
