"""The same minimal forwarder as ``trio_forwarder.py``, but on a signalfd.

The signals stay blocked and a signalfd(2) is read when trio's epoll says it
is readable: one loop turn per signal, without Python's signal handler and
trio's entry queue in between. The benchmark runs it as the other reference
point for nucleus-trio's forwarding latency (see ``signal_profile.py``).
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

    from nucleus_trio.kernel import open_signalfd

    pidfd = os.pidfd_open(pid)
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

    trio.run(forward)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) & 0xFF


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
