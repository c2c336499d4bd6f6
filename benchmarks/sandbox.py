"""The time to start a sandbox and run ``true`` in it, against the tools that
do the same from a shell.

Run it with ``make bench-sandbox`` (also part of ``make bench``), or as
``python -m benchmarks.sandbox [--rounds N]``. Needs root (or unprivileged
user namespaces) for the sandbox and ``unshare``; podman where it runs.

One sample of each, per round, in an order rotated per round:

* ``open_sandbox``: ``async with nucleus_trio.open_sandbox(["true"]) as box:
  await box.wait()``, from the call to the end of the block, in one
  ``trio.run`` that stays up (the program that drives sandboxes is running
  already);
* ``unshare``: ``unshare --pid --fork --mount-proc true`` (util-linux), from
  the spawn to its exit: a PID namespace with its own ``/proc`` and no init;
* ``unshare + nucleus-trio``: ``unshare --pid --fork --mount-proc
  nucleus-trio -- true``, what a caller assembles by hand today;
* ``podman run``: ``podman run --rm IMAGE true`` with the end-to-end tests'
  image and configuration (``e2e/``), when that image exists; otherwise the
  row says why it was not measured.

Results go to ``benchmarks/results/sandbox.md`` and ``sandbox.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

import nucleus_trio
from benchmarks.machine import git_revision, load_average

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
IMAGE = "localhost/nucleus-e2e:latest"
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "e2e" / "containers.conf")}

SANDBOX = "open_sandbox"
UNSHARE = "unshare"
UNSHARE_INIT = "unshare + nucleus-trio"
PODMAN = "podman run"


def command_runner(argv: Sequence[str], env: dict[str, str] | None = None) -> Callable[[], float]:
    """A sampler that runs ``argv`` to its end and returns its wall time (s)."""

    def run() -> float:
        began = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
        elapsed = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode()[-500:]}")
        return elapsed

    return run


async def sandbox_sample() -> float:
    began = time.perf_counter()
    async with nucleus_trio.open_sandbox(["true"]) as box:
        status = await box.wait()
    elapsed = time.perf_counter() - began
    if status.code != 0:
        raise RuntimeError(f"the sandbox's true exited {status.code}")
    return elapsed


def podman_blocker() -> str | None:
    """Why podman cannot be measured here, or ``None``."""
    if shutil.which("podman") is None:
        return "podman is not installed (make e2e installs it)"
    found = subprocess.run(
        ["podman", "image", "exists", IMAGE], env=PODMAN_ENV, capture_output=True, check=False
    )
    if found.returncode != 0:
        return f"no image {IMAGE} (make e2e builds it)"
    return None


def nucleus_command() -> str:
    """The installed command beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "nucleus-trio"
    return str(beside) if beside.exists() else shutil.which("nucleus-trio") or "nucleus-trio"


async def measure(rounds: int, podman: bool) -> dict[str, list[float]]:
    unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
    runners: dict[str, Callable[[], float]] = {
        UNSHARE: command_runner([*unshare, "true"]),
        UNSHARE_INIT: command_runner([*unshare, nucleus_command(), "--", "true"]),
    }
    if podman:
        runners[PODMAN] = command_runner(["podman", "run", "--rm", IMAGE, "true"], PODMAN_ENV)
    names = [SANDBOX, *runners]
    samples: dict[str, list[float]] = {name: [] for name in names}
    await sandbox_sample()  # warm: the first sandbox loads what the others reuse
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            if name == SANDBOX:
                samples[name].append(await sandbox_sample())
            else:
                samples[name].append(await trio.to_thread.run_sync(runners[name]))
    return samples


def render(samples: dict[str, list[float]], blocker: str | None, rounds: int) -> str:
    base = statistics.median(samples[SANDBOX])
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Starting a sandbox and running `true` in it",
        "",
        f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, trio {trio.__version__}, "
        f"nucleus-trio {nucleus_trio.__version__} ({git_revision()}); {now}.",
        f"Load average at the end {load_average()}. {rounds} interleaved rounds; "
        "wall time from the start to the end, medians (range); ratio to `open_sandbox`.",
        "",
        "| method | wall ms, median (range) | ratio |",
        "|---|---:|---:|",
    ]
    for name, values in samples.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median * 1e3:.1f} ({min(values) * 1e3:.1f} to "
            f"{max(values) * 1e3:.1f}) | x{median / base:.2f} |"
        )
    if blocker is not None:
        lines.append(f"| {PODMAN} | not measured: {blocker} | |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20, help="rounds (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    if shutil.which("unshare") is None:
        print("sandbox.py needs unshare (util-linux)", file=sys.stderr)
        return 2
    blocker = podman_blocker()
    samples = trio.run(measure, args.rounds, blocker is None)
    table = render(samples, blocker, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sandbox.md").write_text(table)
    raw = {"rounds": args.rounds, "podman": blocker or "measured", "seconds": samples}
    (args.out / "sandbox.json").write_text(json.dumps(raw, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
