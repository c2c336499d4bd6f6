"""A pool of workers that share the program's signals, their output read
through pipes, and a one-shot command run to its end.

    python examples/pool_and_pipes.py

Prints what each worker said after the program received one SIGHUP (every
worker gets it: one receiver serves them all), then the pool's exit codes
once the supervisor's block has ended it (SIGTERM, SIGKILL after the grace).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import trio

import nucleus_trio
from nucleus_trio import FdStream

WORKER = """
import signal, sys
signal.signal(signal.SIGHUP, lambda *_: print("reloaded", flush=True))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready", flush=True)
while True:
    signal.pause()
"""


async def read_line(stream: FdStream) -> str:
    """One line of a worker's stdout (the workers write a line at a time)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


async def main() -> None:
    async with nucleus_trio.open_supervisor(grace=2) as supervisor:
        # A one-shot command, as trio.run_process or subprocess.run would run it.
        result = await supervisor.run_process(["uname", "-s"], capture_output=True)
        print("kernel:", result.stdout.decode().strip())

        pool = [
            await supervisor.start([sys.executable, "-c", WORKER], stdout=subprocess.PIPE)
            for _ in range(3)
        ]
        for worker in pool:
            assert worker.stdout is not None
            assert await read_line(worker.stdout) == "ready"
        supervisor.forward_signals(pool, [signal.SIGHUP, signal.SIGTERM])

        os.kill(os.getpid(), signal.SIGHUP)  # as `kill -HUP <this program>` would
        for worker in pool:
            assert worker.stdout is not None
            print(f"worker {worker.pid}:", await read_line(worker.stdout))
    # Leaving the block ended the pool: SIGTERM, which the workers obey.
    print("exit codes:", [worker.returncode for worker in pool])


if __name__ == "__main__":
    trio.run(main)
