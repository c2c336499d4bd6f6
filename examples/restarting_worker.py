"""A worker that crashes on its first two runs, restarted with backoff until
it serves, then stopped.

    python examples/restarting_worker.py

The worker keeps a count of its runs in a temporary file: runs 1 and 2 exit
with code 3, run 3 prints "serving" and waits. The restart events go to the
supervisor's event sink, printed here as they come.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import trio

import nucleus_trio

WORKER = """
import pathlib, signal, sys
runs = pathlib.Path(sys.argv[1])
n = int(runs.read_text() or 0) + 1 if runs.exists() else 1
runs.write_text(str(n))
if n <= 2:
    print(f"run {n}: crashing", flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"run {n}: serving", flush=True)
while True:
    signal.pause()
"""


def show(record: dict[str, object]) -> None:
    """The event sink: one line per restart or give-up."""
    if record["event_type"] in {"workload_restarting", "restart_limit_reached"}:
        print(f"event {record['event_type']}: {record['detail']}", flush=True)


async def main() -> None:
    policy = nucleus_trio.RestartPolicy(when="on-failure", initial_delay=0.05, burst=5)
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "runs"
        async with nucleus_trio.open_supervisor(events=show) as sup:
            worker = await sup.start_worker(
                [sys.executable, "-c", WORKER, str(runs)],
                restart=policy,
                stdout=subprocess.PIPE,
            )
            while True:
                stdout = worker.process.stdout
                assert stdout is not None
                line = (await stdout.receive_some()).decode().strip()
                print(line, flush=True)
                if line.endswith("serving"):
                    break
                # The next run starts after its backoff.
                if await worker.next_run() is None:
                    break
            worker.stop()
            status = await worker.wait()
    print(f"restarts: {worker.restarts}, last run: {status.describe()}")


if __name__ == "__main__":
    trio.run(main)
