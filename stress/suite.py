"""The suite: the sizes of the short and the long mode (:func:`plan_for`) and
every scenario run at them, in both modes of the init (:func:`run_suite`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from stress.fuzz import bad_inputs_figures, fuzz_cli
from stress.procfs import Figures
from stress.soak import soak
from stress.stdio import STDIO_CASES, stdio_faults
from stress.storms import signal_storm, stop_cont, zombie_storm

MODES = ("pid1", "subreaper")


@dataclass
class Plan:
    """Sizes of one run of the suite."""

    mode: str
    orphans: int
    signals: int
    soak_seconds: float
    fuzz: int
    stop_orphans: int
    stdio_orphans: int
    flood_bytes: int


def plan_for(
    mode: str,
    *,
    orphans: int | None = None,
    signals: int | None = None,
    soak_seconds: float | None = None,
    fuzz: int | None = None,
) -> Plan:
    """Short mode (CI, a few minutes) or long mode (the published figures)."""
    if mode == "short":
        base = Plan("short", 5_000, 5_000, 20.0, 40, 5_000, 1_000, 8 << 20)
    elif mode == "long":
        base = Plan("long", 100_000, 100_000, 3600.0, 400, 50_000, 10_000, 256 << 20)
    else:
        raise ValueError(mode)
    if orphans is not None:
        base.orphans = orphans
        base.stop_orphans = max(1, orphans // 2)
        base.stdio_orphans = max(1, orphans // 10)
    if signals is not None:
        base.signals = signals
    if soak_seconds is not None:
        base.soak_seconds = soak_seconds
    if fuzz is not None:
        base.fuzz = fuzz
    return base


def run_suite(plan: Plan, log: Callable[[str], None], only: Sequence[str] = ()) -> list[Figures]:
    """Every scenario at the plan's sizes (or those whose label contains one of
    ``only``); a scenario that cannot finish is a failure."""
    steps: list[tuple[str, Callable[[], Figures]]] = []
    for mode in MODES:
        steps.append((f"zombie storm {mode}", partial(zombie_storm, mode, plan.orphans)))
    for mode in MODES:
        steps.append((f"signal storm {mode}", partial(signal_storm, mode, plan.signals)))
    for mode in MODES:
        steps.append((f"stop/cont {mode}", partial(stop_cont, mode, plan.stop_orphans)))
    for case in STDIO_CASES:
        run = partial(
            stdio_faults, case, "subreaper", plan.stdio_orphans, flood_bytes=plan.flood_bytes
        )
        steps.append((f"stdio {case}", run))
    steps.append(("bad inputs", bad_inputs_figures))
    steps.append(("fuzz", lambda: fuzz_cli(plan.fuzz)))
    steps.append(("soak pid1", lambda: soak("pid1", plan.soak_seconds, progress=log)))
    if only:
        steps = [(label, step) for label, step in steps if any(o in label for o in only)]
    results: list[Figures] = []
    for label, step in steps:
        log(f"{label} ...")
        began = time.monotonic()
        try:
            fig = step()
        except Exception as exc:  # the harness goes on to the next scenario
            fig = {"scenario": label, "mode": "-", "failures": [f"{type(exc).__name__}: {exc}"]}
        fig["wall_seconds"] = round(time.monotonic() - began, 1)
        verdict = "ok" if not fig["failures"] else f"FAIL {fig['failures']}"
        log(f"{label}: {fig['wall_seconds']} s, {verdict}")
        results.append(fig)
    return results
