"""The report: ``latest.md`` (the table and the signal section),
``latest.png`` (ratios to tini) and ``latest.json`` (every raw sample)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import signal_profile
from benchmarks.harness import T_START, note
from benchmarks.model import NUCLEUS, TINI, Params, Raw
from benchmarks.rows import Row, build_rows, median, p99


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("count", ""):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def render_table(
    rows: Sequence[Row], names: Sequence[str], machine: dict[str, str], versions: dict[str, str]
) -> str:
    lines = [
        "# nucleus-trio benchmark",
        "",
        f"Machine: Linux {machine['kernel']}, {machine['cpu']}, {machine['nproc']} CPUs; "
        f"Python {machine['python']}; {machine['date']}.",
        f"Load average at start {machine['load_at_start']} (CPUs {machine['busy_at_start']} "
        f"busy just before the first phase), at the end {machine.get('load_at_end', '?')}.",
        "Versions: " + ", ".join(f"{name} {versions.get(name, '?')}" for name in names) + ".",
        "",
        "Medians unless marked; (xN) is the ratio to tini. Every init runs as PID 1 of a fresh "
        "PID namespace, except in 8 (an ordinary child, so a signal that kills the init shows).",
        "",
        "| metric | " + " | ".join(names) + " | nucleus-trio target | met |",
        "|---|" + "---:|" * len(names) + "---|:-:|",
    ]
    for row in rows:
        base = row.values.get(TINI)
        cells = []
        for name in names:
            if name in row.shown:
                cells.append(row.shown[name])
                continue
            value = row.values.get(name)
            text = fmt(value, row.unit)
            r = ratio(value, base)
            if r is not None and name != TINI and row.chart:
                text += f" (x{r:.2f})"
            cells.append(text)
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {row.target} | {met} |")
    return "\n".join(lines) + "\n"


def render_signal_section(raw: Raw, p: Params) -> str:
    """Signal forwarding beside the two reference forwarders, and the
    profiled path stage by stage."""
    if not raw.reference_us:
        return ""
    base = median(raw.reference_us.get(TINI, []))
    lines = [
        "",
        "## 3. Signal forwarding: where the time goes",
        "",
        "A second interleaved run of four, as in row 3: tini, nucleus-trio and two "
        "reference forwarders (`benchmarks/workloads/forwarder.py`) that do nothing "
        "but forward. The *trio-receiver floor* takes the signal from "
        "`trio.open_signal_receiver`, as the spec has nucleus-trio do; the *signalfd "
        "floor* reads a signalfd that trio's epoll watches.",
        "",
        f"| forwarder ({p.reference_signals:,} signals each) | p50 | p99 | p50 ratio to tini |",
        "|---|---:|---:|---:|",
    ]
    for name, values in raw.reference_us.items():
        r = ratio(median(values), base)
        lines.append(
            f"| {name} | {fmt(median(values), 'µs')} | {fmt(p99(values), 'µs')} | "
            + (f"x{r:.2f}" if r is not None else "n/a")
            + " |"
        )
    profiled = list(raw.profile)
    if profiled:
        lines += [
            "",
            f"Stage by stage: medians of {p.profile_signals:,} signals in a third run of "
            "the same four, each forwarder but tini instrumented by "
            "`benchmarks/signal_profile.py` (its hooks add a few µs to every stage; the "
            "total is the median of the totals, not the sum of the medians):",
            "",
            "| stage | " + " | ".join(profiled) + " |",
            "|---|" + "---:|" * len(profiled),
        ]
        for key, label in signal_profile.STAGES:
            cells = [fmt(raw.profile[name].get(key), "µs") for name in profiled]
            lines.append(f"| {label} | " + " | ".join(cells).replace("n/a", "—") + " |")
    return "\n".join(lines) + "\n"


def render_chart(
    rows: Sequence[Row], names: Sequence[str], machine: dict[str, str], path: Path
) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        note("matplotlib is not installed (the 'bench' extra): no chart")
        return False
    charted = [row for row in rows if row.chart and row.values.get(TINI)]
    others = [name for name in names if name != TINI]
    fig, ax = plt.subplots(figsize=(13, 6.5))
    width = 0.8 / max(len(others), 1)
    colors = {"dumb-init": "#8c8c8c", "catatonit": "#5b8bd0", NUCLEUS: "#d0622b"}
    for index, name in enumerate(others):
        xs: list[float] = []
        ys: list[float] = []
        for position, row in enumerate(charted):
            r = ratio(row.values.get(name), row.values.get(TINI))
            if r is not None and r > 0:
                xs.append(position + (index - (len(others) - 1) / 2) * width)
                ys.append(r)
        ax.bar(xs, ys, width=width, label=name, color=colors.get(name))
    ax.axhline(1.0, color="black", linewidth=1, label="tini = 1")
    ax.set_yscale("log")
    ax.set_xticks(range(len(charted)))
    ax.set_xticklabels([row.short for row in charted], rotation=30, ha="right", fontsize=9)
    ax.set_ylabel("ratio to tini (log scale; lower is better unless noted)")
    ax.set_title(
        f"Inits compared with tini — Linux {machine['kernel']}, {machine['cpu']}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}, {machine['date']}",
        fontsize=10,
    )
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True




def results_document(
    rows: Sequence[Row],
    raw: Raw,
    params: Params,
    machine: dict[str, str],
    versions: dict[str, str],
    timings: dict[str, float],
) -> dict[str, Any]:
    """What ``latest.json`` holds: the rows' figures, and every raw sample."""
    summary = {
        row.key: {
            "label": row.label.strip(),
            "unit": row.unit,
            "values": row.values,
            **({"p99": row.p99} if row.p99 else {}),
            "target": row.target,
            "met": row.met,
        }
        for row in rows
    }
    return {
        "machine": machine,
        "versions": versions,
        "params": asdict(params),
        "phase_seconds": timings,
        "total_seconds": round(time.monotonic() - T_START, 1),
        "summary": summary,
        "raw": asdict(raw),
    }


def write_results(
    raw: Raw,
    params: Params,
    names: Sequence[str],
    machine: dict[str, str],
    versions: dict[str, str],
    timings: dict[str, float],
    out: Path,
) -> tuple[str, list[str]]:
    """Write ``latest.md``, ``latest.png`` and ``latest.json`` into ``out``;
    return the Markdown and the names of the files written."""
    rows = build_rows(raw, params, names)
    table = render_table(rows, names, machine, versions)
    table += render_signal_section(raw, params)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(table)
    charted = render_chart(rows, names, machine, out / "latest.png")
    document = results_document(rows, raw, params, machine, versions, timings)
    (out / "latest.json").write_text(json.dumps(document, indent=1) + "\n")
    return table, ["latest.md", "latest.json", *(["latest.png"] if charted else [])]
