"""A fan-out of short processes: the supervisor against ``trio.run_process``.

Run it with ``make bench-fanout`` (also part of ``make bench``), or as
``python -m benchmarks.fanout [--processes N] [--rounds N]``. No root needed.

Each sample starts ``--processes`` short processes at once, one trio task
each, in a nursery, and waits for all of them, in one of these ways:

* ``trio.run_process``: ``await trio.run_process(argv, check=True)``;
* ``sup.run_process``: inside ``async with nucleus_trio.open_supervisor() as
  sup``, ``await sup.run_process(argv, check=True)``;
* ``sup.start+wait``: in the same block, ``p = await sup.start(argv)`` then
  ``await p.wait()`` (only for the workload without output).

for two workloads: ``true`` (no output) and ``echo x`` with its stdout and
stderr captured (``capture_stdout``/``capture_stderr`` for trio,
``capture_output`` for the supervisor).

Two figures per sample:

* wall time of the fan-out: for the supervisor, the whole ``async with``
  block (its opening and its shutdown included), and beside it the fan-out
  inside the block alone;
* the event loop's longest stall: a ticker task sleeps ``--tick`` (1 ms) in a
  loop and records how late each wake-up is; the stall is the greatest
  lateness of a wake-up that was due inside the sample's window.

Rounds interleave: every round runs every (workload, method) pair once, in an
order rotated per round, so load noise on a shared machine hits all alike.
Every process of a sample is waited for (and so reaped) before the next one.
The target: the supervisor within 1.2x of ``trio.run_process``, medians of
the same run, on both figures. Results go to ``benchmarks/results/fanout.md``
and ``fanout.json`` (every raw sample).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import trio

import nucleus_trio
from benchmarks.machine import git_revision, load_average

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

TARGET = 1.2
BASELINE = "trio.run_process"


@dataclass(frozen=True)
class Workload:
    """What each process of a fan-out runs, and whether its output is captured."""

    name: str
    argv: tuple[str, ...]
    capture: bool


@dataclass
class Sample:
    """One fan-out."""

    round: int
    workload: str
    method: str
    wall: float  # seconds: the whole measured window
    fanout: float  # seconds: the fan-out alone (inside the supervisor's block)
    stall: float  # seconds: the longest lateness of a tick due in the window
    ticks: int  # ticks due in the window
    cpu: float  # seconds of CPU time (all threads of this process) in the window


@dataclass
class Summary:
    """The medians and ranges of one (workload, method) pair."""

    workload: str
    method: str
    samples: int
    wall: list[float] = field(default_factory=list)  # median, min, max
    fanout: list[float] = field(default_factory=list)
    stall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    wall_ratio: float | None = None  # median over trio.run_process's median
    stall_ratio: float | None = None
    paired_wall_ratio: list[float] = field(default_factory=list)  # per round: median, min, max
    paired_stall_ratio: list[float] = field(default_factory=list)


class Ticker:
    """Sleeps ``interval`` in a loop and records how late each wake-up is."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        #: (due, lateness) of every wake-up, on ``time.perf_counter``.
        self.ticks: list[tuple[float, float]] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        clock = time.perf_counter
        task_status.started()
        while True:
            due = clock() + self.interval
            await trio.sleep(self.interval)
            self.ticks.append((due, clock() - due))

    def window(self, start: float, end: float) -> tuple[float, int]:
        """The longest lateness of a wake-up due in [start, end], and how many."""
        late = [lateness for due, lateness in self.ticks if start <= due <= end]
        return (max(late) if late else 0.0), len(late)


Fanout = Callable[[Workload, int], Awaitable[None]]


async def trio_run_process(workload: Workload, count: int) -> None:
    async def one() -> None:
        await trio.run_process(
            workload.argv,
            check=True,
            capture_stdout=workload.capture,
            capture_stderr=workload.capture,
        )

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


async def sup_run_process(sup: nucleus_trio.Supervisor, workload: Workload, count: int) -> None:
    async def one() -> None:
        await sup.run_process(workload.argv, check=True, capture_output=workload.capture)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


async def sup_start_wait(sup: nucleus_trio.Supervisor, workload: Workload, count: int) -> None:
    async def one() -> None:
        process = await sup.start(workload.argv)
        status = await process.wait()
        if status.shell_code != 0:
            raise subprocess.CalledProcessError(status.shell_code, list(workload.argv))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


SupervisorFanout = Callable[[nucleus_trio.Supervisor, Workload, int], Awaitable[None]]

SUPERVISED: dict[str, SupervisorFanout] = {
    "sup.run_process": sup_run_process,
    "sup.start+wait": sup_start_wait,
}


async def measure(
    method: str, workload: Workload, count: int, tick: float, round_no: int
) -> Sample:
    """One fan-out with the ticker running beside it."""
    gc.collect()
    ticker = Ticker(tick)
    clock = time.perf_counter
    cpu = time.process_time
    async with trio.open_nursery() as nursery:
        await nursery.start(ticker.run)
        await trio.sleep(10 * tick)  # the ticker is in its stride
        cpu0 = cpu()
        start = clock()
        if method == BASELINE:
            await trio_run_process(workload, count)
            inner = clock() - start
        else:
            async with nucleus_trio.open_supervisor() as sup:
                inner_start = clock()
                await SUPERVISED[method](sup, workload, count)
                inner = clock() - inner_start
        end = clock()
        cpu1 = cpu()
        # Let a wake-up that was due in the window, and held up, come in.
        await trio.sleep(10 * tick)
        nursery.cancel_scope.cancel()
    stall, ticks = ticker.window(start, end)
    return Sample(round_no, workload.name, method, end - start, inner, stall, ticks, cpu1 - cpu0)


async def idle_stall(tick: float, seconds: float) -> float:
    """The ticker's longest lateness with nothing else running: the floor."""
    ticker = Ticker(tick)
    async with trio.open_nursery() as nursery:
        await nursery.start(ticker.run)
        start = time.perf_counter()
        await trio.sleep(seconds)
        end = time.perf_counter()
        await trio.sleep(10 * tick)
        nursery.cancel_scope.cancel()
    return ticker.window(start, end)[0]


def plan(workloads: Sequence[Workload], round_no: int) -> list[tuple[Workload, str]]:
    """This round's order: every pair once, rotated by the round's number."""
    pairs: list[tuple[Workload, str]] = []
    for workload in workloads:
        methods = [BASELINE, "sup.run_process"]
        if not workload.capture:
            methods.append("sup.start+wait")
        pairs += [(workload, method) for method in methods]
    shift = round_no % len(pairs)
    return pairs[shift:] + pairs[:shift]


def spread(values: Sequence[float]) -> list[float]:
    return [statistics.median(values), min(values), max(values)]


def summarize(samples: Sequence[Sample]) -> list[Summary]:
    keys: list[tuple[str, str]] = []
    for sample in samples:
        if (sample.workload, sample.method) not in keys:
            keys.append((sample.workload, sample.method))
    summaries: dict[tuple[str, str], Summary] = {}
    for key in keys:
        chosen = [s for s in samples if (s.workload, s.method) == key]
        summaries[key] = Summary(
            workload=key[0],
            method=key[1],
            samples=len(chosen),
            wall=spread([s.wall for s in chosen]),
            fanout=spread([s.fanout for s in chosen]),
            stall=spread([s.stall for s in chosen]),
            cpu=spread([s.cpu for s in chosen]),
        )
    for (workload, method), summary in summaries.items():
        base = summaries.get((workload, BASELINE))
        if base is None or method == BASELINE:
            continue
        summary.wall_ratio = summary.wall[0] / base.wall[0]
        summary.stall_ratio = summary.stall[0] / base.stall[0] if base.stall[0] > 0 else None
        ours = {s.round: s for s in samples if (s.workload, s.method) == (workload, method)}
        theirs = {s.round: s for s in samples if (s.workload, s.method) == (workload, BASELINE)}
        rounds = sorted(set(ours) & set(theirs))
        summary.paired_wall_ratio = spread([ours[r].wall / theirs[r].wall for r in rounds])
        stalls = [ours[r].stall / theirs[r].stall for r in rounds if theirs[r].stall > 0]
        if stalls:
            summary.paired_stall_ratio = spread(stalls)
    return list(summaries.values())


def ms(value: float) -> str:
    return f"{value * 1000:.1f}" if value >= 0.01 else f"{value * 1000:.2f}"


def ranged(values: Sequence[float]) -> str:
    median, low, high = values
    return f"{ms(median)} ({ms(low)} to {ms(high)})"


def ratio(value: float | None, paired: Sequence[float]) -> str:
    if value is None:
        return "n/a"
    verdict = "yes" if value <= TARGET else "**no**"
    text = f"x{value:.2f} {verdict}"
    if paired:
        text += f" <br>per round x{paired[0]:.2f} (x{paired[1]:.2f} to x{paired[2]:.2f})"
    return text


def table(summaries: Sequence[Summary]) -> list[str]:
    lines = [
        "| workload | method | wall ms, median (range) | wall ratio ≤ 1.2 | "
        "longest stall ms, median (range) | stall ratio ≤ 1.2 | "
        "fan-out alone ms | CPU ms |",
        "|---|---|---:|---|---:|---|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.workload} | {s.method} | {ranged(s.wall)} | "
            f"{ratio(s.wall_ratio, s.paired_wall_ratio) if s.method != BASELINE else '—'} | "
            f"{ranged(s.stall)} | "
            f"{ratio(s.stall_ratio, s.paired_stall_ratio) if s.method != BASELINE else '—'} | "
            f"{ms(s.fanout[0])} | {ms(s.cpu[0])} |"
        )
    return lines


def plain_table(summaries: Sequence[Summary]) -> str:
    """The table for a terminal."""
    rows = [("workload", "method", "wall ms med (min-max)", "x", "stall ms med (min-max)", "x")]
    for s in summaries:
        rows.append(
            (
                s.workload,
                s.method,
                f"{ms(s.wall[0])} ({ms(s.wall[1])}-{ms(s.wall[2])})",
                "" if s.wall_ratio is None else f"{s.wall_ratio:.2f}",
                f"{ms(s.stall[0])} ({ms(s.stall[1])}-{ms(s.stall[2])})",
                "" if s.stall_ratio is None else f"{s.stall_ratio:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=500, help="processes per fan-out")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--tick", type=float, default=0.001, help="the ticker's sleep, seconds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    parser.add_argument(
        "--no-capture", action="store_true", help="only the workload without output"
    )
    args = parser.parse_args(argv)
    if args.processes < 1 or args.rounds < 1 or args.tick <= 0:
        parser.error("--processes and --rounds must be at least 1, --tick positive")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    true = shutil.which("true") or "/bin/true"
    echo = shutil.which("echo") or "/bin/echo"
    workloads = [Workload("true", (true,), False)]
    if not args.no_capture:
        workloads.append(Workload("echo x, captured", (echo, "x"), True))
    raise_fd_limit(8 * args.processes + 256)

    started = datetime.datetime.now(datetime.UTC)
    load_start = load_average()
    floor = trio.run(idle_stall, args.tick, 0.5)
    # One unmeasured fan-out of each kind: imports, thread pool, page cache.
    for workload in workloads:
        for method in dict.fromkeys(m for _, m in plan(workloads, 0)):
            if method == "sup.start+wait" and workload.capture:
                continue
            trio.run(measure, method, workload, min(args.processes, 50), args.tick, -1)

    samples: list[Sample] = []
    for round_no in range(args.rounds):
        for workload, method in plan(workloads, round_no):
            sample = trio.run(measure, method, workload, args.processes, args.tick, round_no)
            samples.append(sample)
            print(
                f"round {round_no + 1}/{args.rounds} {workload.name:18} {method:16} "
                f"wall {ms(sample.wall):>7} ms  stall {ms(sample.stall):>6} ms",
                file=sys.stderr,
                flush=True,
            )
    load_end = load_average()
    summaries = summarize(samples)

    machine = {
        "system": f"{platform.system()} {platform.release()}",
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "trio": trio.__version__,
        "nucleus_trio": f"{nucleus_trio.__version__} ({git_revision()})",
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "load_start": load_start,
        "load_end": load_end,
    }
    settings = {"processes": args.processes, "rounds": args.rounds, "tick": args.tick}
    met = all(
        s.wall_ratio is not None
        and s.wall_ratio <= TARGET
        and (s.stall_ratio is None or s.stall_ratio <= TARGET)
        for s in summaries
        if s.method == "sup.run_process"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fanout.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "settings": settings,
                "idle_stall": floor,
                "target": TARGET,
                "met": met,
                "summaries": [asdict(s) for s in summaries],
                "samples": [asdict(s) for s in samples],
            },
            indent=1,
        )
        + "\n"
    )
    markdown = [
        f"# Fan-out of {args.processes} processes: supervisor vs `trio.run_process`",
        "",
        f"Machine: {machine['system']}, {machine['cpus']} CPUs; Python {machine['python']}, "
        f"trio {machine['trio']}, nucleus-trio {machine['nucleus_trio']}; {machine['date']}.",
        f"Load average at start {load_start}, at the end {load_end}. "
        f"{args.rounds} interleaved rounds; ticker {ms(args.tick)} ms, "
        f"its longest stall over 0.5 s idle: {ms(floor)} ms.",
        "",
        "Wall: the fan-out (for the supervisor, the whole `async with open_supervisor()` "
        "block, its opening and shutdown included; *fan-out alone* is the part inside it). "
        "Longest stall: the greatest lateness of a 1 ms ticker's wake-up due in that window. "
        "Ratios: the supervisor's median over `trio.run_process`'s (same workload, same run); "
        "*per round*: the ratio within each round, median (range). "
        "CPU: this process's CPU time, all threads, median.",
        "",
        *table(summaries),
        "",
        f"Target (`sup.run_process` within {TARGET}x of `trio.run_process` on wall time "
        f"and longest stall, medians): {'met' if met else '**not met**'}.",
        "",
    ]
    (args.out / "fanout.md").write_text("\n".join(markdown))
    print(plain_table(summaries))
    print(f"target {TARGET}x: {'met' if met else 'NOT met'}; idle stall floor {ms(floor)} ms")
    print(f"results: {args.out / 'fanout.md'}, {args.out / 'fanout.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
