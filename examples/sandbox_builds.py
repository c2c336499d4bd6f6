"""Twenty build steps at once, each in a sandbox of its own (README, "Sandboxes").

Every step runs under nucleus-trio as PID 1 of its own PID namespace, with
its own hostname and no network but loopback. The init's audit events of
all the steps stream into one log; the first step that fails cancels the
others, and leaving their blocks ends every process they started (here a
helper each step leaves running in the background, in a session of its
own).

    python examples/sandbox_builds.py               # all twenty succeed
    python examples/sandbox_builds.py --fail 7      # step 7 fails: the rest are cancelled

Needs root, or unprivileged user namespaces (a rootless sandbox).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import trio

from nucleus_trio import Sandbox, open_sandbox

STEPS = 20


class StepFailed(Exception):
    """A build step ended with a code other than 0."""

    def __init__(self, step: str, code: int | None) -> None:
        super().__init__(f"{step} failed with exit code {code}")
        self.step = step


def script(index: int, fail: int | None) -> str:
    """A step: start a helper that outlives it, work a while, then succeed
    (or fail, for the chosen one, sooner than the others finish)."""
    work = "0.2" if index == fail else f"{3.0 + index * 0.05:.2f}"
    ending = "echo 'error: link failed' >&2; exit 3" if index == fail else "echo built"
    return f"setsid sleep 917 & echo compiling on $(hostname); sleep {work}; {ending}"


async def follow(box: Sandbox, step: str, log: list[str]) -> None:
    """Stream this step's events into the one log."""
    async for record in box.events():
        line = f"{step:8} {record['event_type']:24} {record['detail']}"
        log.append(line)
        print(line, flush=True)


async def build(index: int, fail: int | None, log: list[str], done: list[str]) -> None:
    step = f"step-{index:02}"
    async with open_sandbox(
        ["sh", "-c", script(index, fail)],
        hostname=step,
        network="none",
        container_name=step,
        grace=0.5,
        stdout=subprocess.DEVNULL,
    ) as box:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, box, step, log)
            status = await box.wait()
        if status.code != 0:
            raise StepFailed(step, status.code)
        done.append(step)


async def main(fail: int | None) -> int:
    log: list[str] = []
    done: list[str] = []
    failed: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            for index in range(STEPS):
                nursery.start_soon(build, index, fail, log, done)
    except* StepFailed as group:
        failed = [str(exc) for exc in group.exceptions]
    stopped = [line for line in log if "container_stop" in line]
    cancelled = STEPS - len(done) - len(failed)
    print(f"built: {len(done)}, failed: {len(failed)}, cancelled: {cancelled}")
    for reason in failed:
        print(f"failure: {reason}")
    print(f"events: {len(log)}, inits stopped: {len(stopped)}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fail", type=int, default=None, help="the step that fails")
    sys.exit(trio.run(main, parser.parse_args().fail))
