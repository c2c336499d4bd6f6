"""The rows of the table, built from a run's samples.

Each section of the table (numbered as in ``README.md``'s method) is a small
function that adds its rows to a :class:`RowTable`; :data:`SECTIONS` lists
them in the table's order.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.model import NUCLEUS, NUCLEUS_PYZ, TINI, BurstRun, Params, Raw, StormRun

LOSSES = ("lost_init_killed", "lost_alive", "lost_hung", "other")


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def p99(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[98]


@dataclass
class Row:
    """One line of the table: a value per init, and a target for nucleus-trio."""

    key: str
    label: str
    short: str
    unit: str
    values: dict[str, float | None]
    p99: dict[str, float | None] = field(default_factory=dict)
    higher_is_better: bool = False
    chart: bool = True
    target: str = ""
    met: bool | None = None
    shown: dict[str, str] = field(default_factory=dict)


@dataclass
class RowTable:
    """The rows built so far from one run, and the ways to read its samples."""

    raw: Raw
    p: Params
    names: Sequence[str]
    rows: list[Row] = field(default_factory=list)

    @property
    def floor(self) -> float | None:
        """The bare interpreter's median run, the start-up rows' reference."""
        return median(self.raw.floor_ms)

    def per(self, fn: Callable[[str], float | None]) -> dict[str, float | None]:
        return {name: fn(name) for name in self.names}

    def med_of(self, table: dict[str, list[float]]) -> dict[str, float | None]:
        return self.per(lambda name: median(table.get(name, [])))

    def storm_med(self, fn: Callable[[StormRun], float]) -> dict[str, float | None]:
        return self.per(lambda name: median([fn(run) for run in self.raw.storm.get(name, [])]))

    def burst_med(self, fn: Callable[[BurstRun], float]) -> dict[str, float | None]:
        return self.per(lambda name: median([fn(run) for run in self.raw.burst.get(name, [])]))

    def counted(self, table: dict[str, int] | dict[str, float]) -> dict[str, float | None]:
        return self.per(lambda name: float(table[name]) if name in table else None)

    def early_count(self, name: str, *outcomes: str) -> int:
        return sum(1 for trial in self.raw.early.get(name, []) if trial.outcome in outcomes)

    def nucleus_only(self, value: float | None) -> dict[str, float | None]:
        """A row's values with ``value`` in nucleus-trio's column alone."""
        return {name: value if name == NUCLEUS else None for name in self.names}

    def add(
        self,
        key: str,
        label: str,
        short: str,
        unit: str,
        values: dict[str, float | None],
        *,
        chart: bool = True,
        target: str = "",
        higher_is_better: bool = False,
    ) -> Row:
        row = Row(
            key,
            label,
            short,
            unit,
            values,
            chart=chart,
            target=target,
            higher_is_better=higher_is_better,
        )
        self.rows.append(row)
        return row

    def pyz_row(
        self, key: str, label: str, samples: dict[str, list[float]], base: Row, factor: float
    ) -> None:
        """The single-file build's figure beside the installed command's row."""
        value = median(samples.get(NUCLEUS_PYZ, []))
        if value is None:
            return
        row = self.add(key, label, "", "ms", self.nucleus_only(value), chart=False)
        floor = self.floor
        if floor is not None:
            row.target = base.target
            row.met = value <= factor * floor


def versus_tini(row: Row, factor: float, unit: str, digits: int) -> None:
    """Target: nucleus-trio within ``factor`` times tini's value."""
    base = row.values.get(TINI)
    nucleus = row.values.get(NUCLEUS)
    if base is None:
        return
    sign = "≥" if row.higher_is_better else "≤"
    row.target = f"{sign} {factor:g}x tini = {factor * base:,.{digits}f} {unit}"
    if nucleus is not None:
        limit = factor * base
        row.met = nucleus >= limit if row.higher_is_better else nucleus <= limit


def start_rows(t: RowTable) -> None:
    """1. start latency, with the bare interpreter and the single-file build."""
    floor = t.floor
    start = t.add(
        "start",
        "1. start latency, exec of the init → workload's first instruction",
        "start latency",
        "ms",
        t.med_of(t.raw.start_ms),
    )
    start.p99 = t.per(lambda name: p99(t.raw.start_ms.get(name, [])))
    if floor is not None:
        start.target = f"≤ 1.5x bare interpreter = {1.5 * floor:.1f} ms"
        nucleus = start.values.get(NUCLEUS)
        start.met = nucleus is not None and nucleus <= 1.5 * floor
    t.add(
        "floor",
        "   bare interpreter `python3 -I -S -c pass`, exec → exit",
        "",
        "ms",
        t.nucleus_only(floor),
        chart=False,
        target="(Python's floor)",
    )
    t.pyz_row(
        "start_pyz",
        "   start latency of `dist/nucleus-trio.pyz` (the single-file build)",
        t.raw.start_ms,
        start,
        1.5,
    )


def true_rows(t: RowTable) -> None:
    """2. ``INIT -- true``, and the single-file build's."""
    floor = t.floor
    true = t.add(
        "true", "2. wall time of `INIT -- true`", "INIT -- true", "ms", t.med_of(t.raw.true_ms)
    )
    if floor is not None:
        # A workload that ends before trio is up costs the init its start-up
        # and its exit, not trio's import (README, "Benchmarks").
        true.target = f"≤ 2x bare interpreter = {2 * floor:.1f} ms"
        nucleus = true.values.get(NUCLEUS)
        true.met = nucleus is not None and nucleus <= 2 * floor
    t.pyz_row("true_pyz", "   wall time of `nucleus-trio.pyz -- true`", t.raw.true_ms, true, 2)


def signal_rows(t: RowTable) -> None:
    """3. signal forwarding latency, and the signals lost."""
    versus_tini(
        t.add(
            "signal_p50",
            f"3. signal forwarding latency, p50 of {t.p.signals:,}",
            "signal p50",
            "µs",
            t.med_of(t.raw.signal_us),
        ),
        3,
        "µs",
        0,
    )
    t.add(
        "signal_p99",
        "   signal forwarding latency, p99",
        "signal p99",
        "µs",
        t.per(lambda name: p99(t.raw.signal_us.get(name, []))),
    )
    lost = t.add(
        "signal_lost",
        "   signals that never arrived",
        "",
        "count",
        t.counted(t.raw.signal_lost),
        chart=False,
        target="0",
    )
    lost.met = lost.values.get(NUCLEUS) == 0


def shutdown_rows(t: RowTable) -> None:
    """4. shutdown latency, and its part after the workload's receipt."""
    versus_tini(
        t.add(
            "shutdown",
            "4. shutdown latency, SIGTERM → init exit",
            "shutdown",
            "ms",
            t.med_of(t.raw.shutdown_ms),
        ),
        10,
        "ms",
        1,
    )
    t.add(
        "shutdown_tail",
        "   of which from the workload's receipt of SIGTERM to the init's exit",
        "",
        "ms",
        t.med_of(t.raw.shutdown_tail_ms),
        chart=False,
    )


def storm_rows(t: RowTable) -> None:
    """5. the storm of orphans."""
    t.add(
        "storm_time",
        f"5. storm of {t.p.storm:,} orphans: until all reaped",
        "storm time",
        "s",
        t.storm_med(lambda run: run.seconds),
    )
    t.add(
        "storm_peak",
        "   storm: peak zombies (adopted, not yet reaped)",
        "storm peak zombies",
        "count",
        t.storm_med(lambda run: float(run.peak_zombies)),
    )
    versus_tini(
        t.add(
            "storm_cpu",
            "   storm: init CPU per orphan",
            "storm CPU/orphan",
            "µs",
            t.storm_med(lambda run: run.cpu_us_per_orphan),
        ),
        5,
        "µs",
        1,
    )
    storm = t.raw.storm
    left = t.add(
        "storm_left",
        "   storm: zombies left",
        "",
        "count",
        t.per(
            lambda name: float(max(run.left for run in storm[name])) if storm.get(name) else None
        ),
        chart=False,
        target="0",
    )
    left.met = left.values.get(NUCLEUS) == 0


def burst_rows(t: RowTable) -> None:
    """5. the burst of zombies."""
    versus_tini(
        t.add(
            "burst",
            f"   burst of {t.p.burst:,} zombies at once: reaps per second",
            "burst reaps/s\n(higher is better)",
            "/s",
            t.burst_med(lambda run: run.reaps_per_s),
            higher_is_better=True,
        ),
        0.9,
        "/s",
        0,
    )
    t.add(
        "burst_cpu",
        "   burst: init CPU per reap",
        "burst CPU/reap",
        "µs",
        t.burst_med(lambda run: run.cpu_us_per_reap),
    )


def memory_rows(t: RowTable) -> None:
    """6. RSS at rest, and its high-water mark after the storm."""
    rss_kib = t.raw.rss_rest_kib
    rss = t.add(
        "rss",
        "6. RSS at rest",
        "RSS at rest",
        "MiB",
        t.per(lambda name: rss_kib[name] / 1024 if name in rss_kib else None),
        target="≤ 28 MiB",
    )
    rss.met = (rss.values.get(NUCLEUS) or float("inf")) <= 28
    t.add(
        "hwm",
        "   RSS high-water mark after the storm",
        "RSS high-water",
        "MiB",
        t.storm_med(lambda run: run.hwm_kib / 1024),
    )


def idle_rows(t: RowTable) -> None:
    """7. the idle cost: context switches and CPU time."""
    ctx = t.add(
        "idle_ctx",
        f"7. idle: context switches in {t.p.idle:g} s",
        "",
        "count",
        t.counted(t.raw.idle_ctx),
        chart=False,
        target="0",
    )
    ctx.met = ctx.values.get(NUCLEUS) == 0
    t.add(
        "idle_cpu",
        f"   idle: CPU time in {t.p.idle:g} s",
        "",
        "ms",
        t.counted(t.raw.idle_cpu_ms),
        chart=False,
    )


def early_rows(t: RowTable) -> None:
    """8. early SIGTERMs lost, told apart per init in the cells shown."""
    p = t.p
    early = t.add(
        "early_lost",
        f"8. early SIGTERMs lost, of {p.early} sent 0-{p.early_window * 1000:g} ms after the exec",
        "",
        "count",
        t.per(lambda name: float(t.early_count(name, *LOSSES)) if name in t.raw.early else None),
        chart=False,
        target="0 after its first line",
    )
    for name in t.names:
        if name not in t.raw.early:
            continue
        killed = t.early_count(name, "lost_init_killed")
        dropped = t.early_count(name, "lost_alive", "lost_hung")
        other = t.early_count(name, "other")
        extra = f", {other} other" if other else ""
        if name == NUCLEUS:
            latest = max(
                (
                    trial.offset_ms
                    for trial in t.raw.early[name]
                    if trial.outcome == "lost_init_killed"
                ),
                default=None,
            )
            window = f" (all ≤ {latest:.1f} ms)" if latest is not None else ""
            early.shown[name] = (
                f"{killed + dropped + other} ({killed} before its first line{window}, "
                f"{dropped + other} after)"
            )
            early.met = dropped + other == 0
        else:
            early.shown[name] = (
                f"{killed + dropped + other} ({killed} init killed, {dropped} dropped{extra})"
            )


#: The sections of the table, in its order.
SECTIONS: tuple[Callable[[RowTable], None], ...] = (
    start_rows,
    true_rows,
    signal_rows,
    shutdown_rows,
    storm_rows,
    burst_rows,
    memory_rows,
    idle_rows,
    early_rows,
)


def build_rows(raw: Raw, p: Params, names: Sequence[str]) -> list[Row]:
    table = RowTable(raw, p, names)
    for section in SECTIONS:
        section(table)
    return table.rows
