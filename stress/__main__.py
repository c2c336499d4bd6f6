"""Reliability under load, faults and bad input: the stress suite of nucleus-trio.

The command line of the suite, run from the repository's root::

    python -m stress --mode short|long [--orphans N] [--signals N]
        [--soak-seconds S] [--fuzz N] [--json OUT] [--markdown OUT]
    python -m stress --bad-inputs-table [--markdown stress/bad_inputs.md]

The scenarios, and the modules they are in: see :mod:`stress`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from stress.fuzz import bad_inputs_figures
from stress.harness import build_workload
from stress.procfs import Figures
from stress.report import bad_inputs_markdown, machine, report_json, summary_markdown, totals_of
from stress.suite import plan_for, run_suite


def main(argv: Sequence[str] | None = None) -> int:
    # Python 3.11 names a package's __main__ after its file ("__main__.py").
    parser = argparse.ArgumentParser(
        prog="python -m stress",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--mode", choices=("short", "long"), default="short")
    parser.add_argument("--orphans", type=int, help="orphans per zombie storm")
    parser.add_argument("--signals", type=int, help="signals in the signal storm")
    parser.add_argument("--soak-seconds", type=float, help="duration of the soak")
    parser.add_argument("--fuzz", type=int, help="random command lines to try")
    parser.add_argument(
        "--only", action="append", default=[], help="run only the scenarios whose label has this"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", type=Path, help="write the summary table here")
    parser.add_argument(
        "--bad-inputs-table",
        action="store_true",
        help="only run the bad-input table and print it (Markdown, for the README)",
    )
    options = parser.parse_args(argv)

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    if options.bad_inputs_table:
        figures = bad_inputs_figures()
        table = bad_inputs_markdown(figures["rows"])
        if options.markdown:
            options.markdown.parent.mkdir(parents=True, exist_ok=True)
            options.markdown.write_text(table)
        print(table, end="")
        for failure in figures["failures"]:
            log(f"FAIL {failure}")
        return 1 if figures["failures"] else 0

    plan = plan_for(
        options.mode,
        orphans=options.orphans,
        signals=options.signals,
        soak_seconds=options.soak_seconds,
        fuzz=options.fuzz,
    )
    build_workload()
    began = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    log(f"plan: {plan}")
    results = run_suite(plan, log, options.only)
    meta: Figures = {
        "mode": plan.mode,
        "plan": plan.__dict__,
        "date": started,
        "machine": machine(),
        "seconds": time.monotonic() - began,
    }
    meta["totals"] = totals_of(results)
    table = summary_markdown(results, meta)
    print(table, end="")
    if options.markdown:
        options.markdown.parent.mkdir(parents=True, exist_ok=True)
        options.markdown.write_text(table)
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(report_json(results, meta))
    return 1 if any(fig["failures"] for fig in results) else 0


if __name__ == "__main__":
    sys.exit(main())
