"""Start latency against Python's floor, as five separate runs: the worst of
them is the figure the start-up target is held to (README, "Benchmarks").

Run it with ``make bench-start`` (also part of ``make bench``), or as
``python -m benchmarks.start [--runs 5] [--rounds 40]``. Needs root (each
sample is PID 1 of its own namespace, as in ``python -m benchmarks``).

One run is ``--rounds`` interleaved rounds; each round measures, in an order
rotated per round:

* the floor: ``python3 -I -S -c pass`` (the venv's interpreter), from its
  exec to its exit;
* nucleus-trio (the installed command), its single-file build and tini, each
  from the exec of the init to the first instruction of a workload that
  reports it (``build/sigwait``), the same sample as ``python -m
  benchmarks``'s start latency.

A run's ratio is the init's median over the floor's median of the same run,
so a machine that is quicker or slower for a while moves both. The five runs
follow one another; the worst ratio is the one set against the target.
Results go to ``benchmarks/results/start.md`` and ``start.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import (
    BUILD,
    LOGS,
    VENV,
    BenchError,
    Init,
    Session,
    become_subreaper,
    rotated,
)
from benchmarks.install import build_pyz, build_workloads, ensure_peers, install_nucleus
from benchmarks.machine import git_revision, load_average
from benchmarks.model import NUCLEUS, NUCLEUS_PYZ, TINI

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FLOOR = "floor"
#: The start-up target: the worst run's ratio to the floor.
TARGET = 1.5


def measure_run(inits: Sequence[Init], floor: Sequence[str], rounds: int) -> dict[str, list[float]]:
    """One run: ``rounds`` samples (ms) of the floor and of each init."""
    sigwait = str(BUILD / "sigwait")
    samples: dict[str, list[float]] = {FLOOR: [], **{init.name: [] for init in inits}}
    for round_no in range(rounds):
        with Session(floor, pid1=True, label=FLOOR) as session:
            t0 = session.start()
            t_end = session.wait_exit(10)
            if t_end is None or session.returncode() != 0:
                raise BenchError(f"the interpreter floor failed{session.tail()}")
            samples[FLOOR].append((t_end - t0) / 1e6)
        for init in rotated(inits, round_no):
            with Session([*init.command, sigwait], pid1=True, label=init.name) as session:
                t0 = session.start()
                (t_first,) = session.expect("R", 10)
                samples[init.name].append((t_first - t0) / 1e6)
                os.kill(session.pid, signal.SIGTERM)
                session.wait_exit(10)
    return samples


def ratios(run: dict[str, list[float]]) -> dict[str, float]:
    """Each init's median over the floor's median, for one run."""
    floor = statistics.median(run[FLOOR])
    return {
        name: statistics.median(values) / floor for name, values in run.items() if name != FLOOR
    }


def render(runs: list[dict[str, list[float]]], names: Sequence[str], rounds: int) -> str:
    """The table: one line per run, then the worst."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Start latency, five runs",
        "",
        f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; nucleus-trio {git_revision()}; {now}. "
        f"Load average at the end {load_average()}.",
        f"{len(runs)} runs of {rounds} interleaved rounds; medians in ms, and the ratio to "
        "the floor of the same run (`python3 -I -S -c pass`, exec → exit).",
        "",
        "| run | floor | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for number, run in enumerate(runs, 1):
        ratio = ratios(run)
        cells = [f"{statistics.median(run[name]):.1f} (x{ratio[name]:.2f})" for name in names]
        lines.append(
            f"| {number} | {statistics.median(run[FLOOR]):.1f} | " + " | ".join(cells) + " |"
        )
    worst = {name: max(ratios(run)[name] for run in runs) for name in names}
    lines.append("| worst | | " + " | ".join(f"x{worst[name]:.2f}" for name in names) + " |")
    verdicts = []
    for name in (NUCLEUS, NUCLEUS_PYZ):
        if name in worst:
            met = "met" if worst[name] <= TARGET else "NOT met"
            verdicts.append(f"{name} x{worst[name]:.2f} ({met})")
    lines += ["", f"Target: the worst run ≤ {TARGET}x the floor: " + "; ".join(verdicts) + "."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs (default %(default)s)")
    parser.add_argument(
        "--rounds", type=int, default=40, help="rounds per run (default %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks.start needs root (PID namespaces)", file=sys.stderr)
        return 2
    peers = ensure_peers()
    build_workloads()
    nucleus = install_nucleus()
    LOGS.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    # The .pyz starts the python3 on PATH: this venv's, as in python -m benchmarks.
    os.environ["PATH"] = f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"
    inits = [
        Init(NUCLEUS, (str(nucleus), "--")),
        Init(NUCLEUS_PYZ, (str(build_pyz()), "--")),
        Init(TINI, (peers["tini"], "--")),
    ]
    floor = [str(VENV / "bin" / "python3"), "-I", "-S", "-c", "pass"]
    runs = [measure_run(inits, floor, args.rounds) for _ in range(args.runs)]
    names = [init.name for init in inits]
    table = render(runs, names, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "start.md").write_text(table)
    raw = {"rounds": args.rounds, "runs": runs, "ratios": [ratios(run) for run in runs]}
    (args.out / "start.json").write_text(json.dumps(raw, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
