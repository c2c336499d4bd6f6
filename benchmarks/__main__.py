"""Measure nucleus-trio against tini, dumb-init and catatonit.

Run it with ``make bench`` (which installs matplotlib for the chart), or from
the repository's root as ``python -m benchmarks [--early N] [--quick]``. It
needs root (PID namespaces, apt-get), gcc and util-linux's ``unshare``.

What it does:

* installs the peers from Debian's packages when they are missing, compiles
  the C workloads of ``benchmarks/workloads/`` into ``benchmarks/build/``,
  and installs nucleus-trio from the repository root into
  ``benchmarks/build/venv`` as users would (``pip install``, not editable):
  the command measured is that venv's ``bin/nucleus-trio``;
* starts every init through ``launch``, a tiny C program that waits on a gate
  (so the harness knows the PID and holds a pidfd before anything happens),
  prints CLOCK_MONOTONIC and execs the init in the same process: every
  latency below starts at the exec of the init;
* runs each init as PID 1 of a fresh PID namespace (``unshare --pid --fork
  --kill-child --mount-proc``), except the early-signal test, where the init
  is an ordinary child so that "killed by the signal" can be told apart;
* interleaves: every round runs each init once (order rotated per round), so
  load noise hits all alike. Idle cost and signal latency run the four inits
  side by side, idle, and alternate the signals among them.

The modules it is made of: see :mod:`benchmarks`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.early import phase_early
from benchmarks.harness import (
    LOGS,
    RESULTS,
    T_START,
    VENV,
    WORKLOADS,
    BenchError,
    Init,
    become_subreaper,
    clean_up_everything,
    note,
    run_quiet,
)
from benchmarks.install import (
    PEER_PACKAGES,
    build_pyz,
    build_workloads,
    ensure_peers,
    install_nucleus,
)
from benchmarks.machine import git_revision, load_average, machine_info, package_version
from benchmarks.model import (
    NUCLEUS,
    NUCLEUS_PYZ,
    SIGNALFD_FLOOR,
    TINI,
    TRIO_FLOOR,
    Params,
    Raw,
)
from benchmarks.phases import phase_lifecycle, phase_signal_path, phase_steady, phase_true
from benchmarks.reaping import phase_burst, phase_reaping, phase_storm
from benchmarks.report import write_results

PROG = "python -m benchmarks"


def parse(argv: Sequence[str]) -> tuple[Params, argparse.Namespace]:
    # Python 3.11 names a package's __main__ after its file ("__main__.py").
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--early",
        type=int,
        default=Params.early,
        help="early SIGTERM trials per init (default %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=Params.rounds,
        help="rounds of start/shutdown latency (default %(default)s)",
    )
    parser.add_argument(
        "--signals",
        type=int,
        default=Params.signals,
        help="signals sent to each init (default %(default)s)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=Params.idle,
        help="idle window in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few rounds of everything, to check the harness"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="measure only this init (repeatable; tini is always kept)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    params = Params(early=args.early, rounds=args.rounds, signals=args.signals, idle=args.idle)
    if args.quick:
        params = Params(
            rounds=4,
            true_rounds=3,
            signals=100,
            idle=2.0,
            storm=2000,
            storm_rounds=1,
            burst=2000,
            burst_rounds=1,
            early=min(args.early, 10),
            reference_signals=50,
            profile_signals=50,
        )
    return params, args


@dataclass
class Setup:
    """What the set-up leaves for the phases and the report."""

    inits: list[Init]
    start_up: list[Init]
    references: list[Init]
    floor: list[str]
    machine: dict[str, str]
    versions: dict[str, str]


def set_up(only: Sequence[str]) -> Setup:
    """Install the peers, build the workloads, install nucleus-trio; the inits
    to measure (all but tini left out unless in ``only``, when it is given)."""
    peers = ensure_peers()
    build_workloads()
    nucleus = install_nucleus()
    LOGS.mkdir(parents=True, exist_ok=True)
    inits = [
        Init(TINI, (peers["tini"], "--")),
        Init("dumb-init", (peers["dumb-init"], "--")),
        Init("catatonit", (peers["catatonit"], "--")),
        Init(NUCLEUS, (str(nucleus), "--")),
    ]
    if only:
        inits = [init for init in inits if init.name in {TINI, *only}]
    python = VENV / "bin" / "python3"
    # The .pyz starts the python3 on PATH: this venv's (a real binary,
    # where PATH's first may be a version manager's shell shim).
    os.environ["PATH"] = f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"
    start_up = [*inits, Init(NUCLEUS_PYZ, (str(build_pyz()), "--"))]
    references = [
        Init(TRIO_FLOOR, (str(python), str(WORKLOADS / "forwarder.py"), "trio")),
        Init(SIGNALFD_FLOOR, (str(python), str(WORKLOADS / "forwarder.py"), "signalfd")),
    ]
    floor = [str(python), "-I", "-S", "-c", "pass"]
    machine = machine_info(python)
    nucleus_version = run_quiet([str(nucleus), "--version"], "nucleus-trio --version").split()
    versions = {name: package_version(name) for name in PEER_PACKAGES}
    versions[NUCLEUS] = (nucleus_version[-1] if nucleus_version else "?") + (
        f" ({git_revision()})"
    )
    return Setup(inits, start_up, references, floor, machine, versions)


def plan(setup: Setup, raw: Raw, params: Params) -> list[tuple[str, Callable[[], None]]]:
    """The phases in the order they run, each with the title it is noted under."""
    inits, start_up = setup.inits, setup.start_up
    return [
        (
            f"1+4. start and shutdown latency, {params.rounds} rounds",
            lambda: phase_lifecycle(start_up, setup.floor, raw, params),
        ),
        (
            f"2. INIT -- true, {params.true_rounds} rounds",
            lambda: phase_true(start_up, raw, params),
        ),
        (
            f"6+7+3. side by side: RSS, {params.idle:g} s idle, signals",
            lambda: phase_steady(inits, raw, params),
        ),
        (
            "3. signal path: reference forwarders, then stage by stage",
            lambda: phase_signal_path(inits, setup.references, raw, params),
        ),
        (
            f"5. storm of {params.storm} orphans, {params.storm_rounds} rounds",
            lambda: phase_reaping(phase_storm, inits, raw, params, params.storm_rounds),
        ),
        (
            f"5. burst of {params.burst} zombies, {params.burst_rounds} rounds",
            lambda: phase_reaping(phase_burst, inits, raw, params, params.burst_rounds),
        ),
        (f"8. early SIGTERM, {params.early} per init", lambda: phase_early(inits, raw, params)),
    ]


def run_phases(phases: Sequence[tuple[str, Callable[[], None]]]) -> dict[str, float]:
    """Run each phase; return the seconds each took, by title."""
    timings: dict[str, float] = {}
    for title, phase in phases:
        note(title)
        began = time.monotonic()
        phase()
        timings[title] = round(time.monotonic() - began, 1)
    return timings


def main(argv: Sequence[str]) -> int:
    params, args = parse(argv)
    if os.geteuid() != 0:
        print(f"{PROG} needs root: PID namespaces (unshare --pid) and apt-get.", file=sys.stderr)
        return 2
    for tool in ("unshare",):
        if shutil.which(tool) is None:
            print(f"{PROG} needs {tool} (util-linux)", file=sys.stderr)
            return 2
    try:
        become_subreaper()
        note("set-up: peers, workloads, nucleus-trio in benchmarks/build/venv")
        setup = set_up(args.only)
        names = [init.name for init in setup.inits]
        raw = Raw()
        timings = run_phases(plan(setup, raw, params))
        setup.machine["load_at_end"] = load_average()
        table, written = write_results(
            raw, params, names, setup.machine, setup.versions, timings, args.out
        )
        print(table)
        for failure in raw.failures:
            print(f"warning: {failure}")
        note(
            f"done in {time.monotonic() - T_START:.0f} s; wrote "
            + ", ".join(str(args.out / name) for name in written)
        )
        return 0
    except BenchError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    finally:
        clean_up_everything()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
