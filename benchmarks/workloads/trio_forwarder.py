"""The floor of trio's signal receiver: the least a forwarder built on
``trio.open_signal_receiver`` can do.

``python trio_forwarder.py PROGRAM [ARGS...]`` starts PROGRAM with SIGUSR1
and SIGTERM blocked until the receiver is open, then sends every SIGUSR1 or
SIGTERM it receives to PROGRAM through a pidfd; after a SIGTERM it waits for
PROGRAM and exits. No reaping, no logging, no rewriting: the benchmark runs it
beside nucleus-trio to show how much of nucleus-trio's forwarding latency is
the receiver's own path (see ``signal_profile.py``).
"""

from __future__ import annotations

import os
import signal
import sys

SIGNALS = {signal.SIGUSR1, signal.SIGTERM}


def main(argv: list[str]) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.execv(argv[0], argv)
    import trio

    pidfd = os.pidfd_open(pid)

    async def forward() -> None:
        with trio.open_signal_receiver(*SIGNALS) as receiver:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            async for signo in receiver:
                signal.pidfd_send_signal(pidfd, signo)
                if signo == signal.SIGTERM:
                    return

    trio.run(forward)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) & 0xFF


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
