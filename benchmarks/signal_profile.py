"""Where the signal forwarding latency goes, stage by stage.

Two halves:

* :func:`install`, run inside a profiled forwarder (nucleus-trio or one of the
  reference forwarders of ``workloads/``) by a ``sitecustomize`` that the
  benchmark puts on its ``PYTHONPATH``. It wraps the Python-level signal
  handlers that trio installs, ``signal.pidfd_send_signal``, and adds a trio
  instrument for the loop's I/O waits and task steps; every mark is a
  CLOCK_MONOTONIC timestamp, the clock the harness and the C workload use
  too. When ``trio.run`` returns, the marks go to the file named by
  ``NUCLEUS_BENCH_PROFILE`` as JSON.
* :func:`stages`, run by the harness: it cuts the marks into one cycle per
  forwarded SIGUSR1 and lines each cycle up with the harness's ``kill()`` and
  the workload's receipt.

The instrument's hooks cost a few microseconds each, so the stages add up to
more than the uninstrumented latency; their proportions are what they show.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

ENV = "NUCLEUS_BENCH_PROFILE"

#: Stage keys in order, with what each one covers.
STAGES: tuple[tuple[str, str], ...] = (
    (
        "kernel_in",
        "harness `kill()` → the init's first Python code for it "
        "(trio's handler; on a signalfd, the return from epoll)",
    ),
    ("handler", "trio's handler (`run_sync_soon`) → the loop leaves epoll"),
    ("entry_queue", "trio's entry-queue task: drains its wakeup socket, hands the signal on"),
    ("turn", "one more loop turn → the forwarding task starts"),
    ("task", "forwarding task → `pidfd_send_signal`"),
    ("kernel_out", "`pidfd_send_signal` → the workload's receipt"),
    ("total", "total, `kill()` → receipt"),
)

Mark = tuple[str, int]


def install() -> None:
    """Record marks in this process (called from ``sitecustomize``)."""
    path = os.environ.get(ENV)
    if not path:
        return
    import trio

    now = time.monotonic_ns
    marks: list[Mark] = []
    set_handler = signal.signal
    send = signal.pidfd_send_signal

    def wrapping_signal(signo: int, handler: Any) -> Any:
        if callable(handler):
            inner: Callable[[int, FrameType | None], Any] = handler

            def handler(number: int, frame: FrameType | None) -> Any:
                marks.append((f"handler:{number}", now()))
                return inner(number, frame)

        return set_handler(signo, handler)

    def timed_send(pidfd: int, sig: int, siginfo: None = None, flags: int = 0) -> None:
        marks.append((f"send:{sig}", now()))
        send(pidfd, sig, siginfo, flags)

    class Marks(trio.abc.Instrument):
        def after_io_wait(self, timeout: float) -> None:
            marks.append(("io", now()))

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            marks.append((f"step:{task.name}", now()))

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            marks.append(("end", now()))

    signal.signal = wrapping_signal  # type: ignore[assignment]
    signal.pidfd_send_signal = timed_send
    run = trio.run

    def profiled_run(*args: Any, **kwargs: Any) -> Any:
        kwargs["instruments"] = [*kwargs.get("instruments", ()), Marks()]
        try:
            return run(*args, **kwargs)
        finally:
            with open(path, "w") as out:
                json.dump(marks, out)

    trio.run = profiled_run  # type: ignore[assignment]


def _cycles(marks: Sequence[Mark], signo: int) -> list[list[Mark]]:
    """The marks between one ``send:signo`` and the next, ending with it."""
    cycles: list[list[Mark]] = []
    current: list[Mark] = []
    for mark in marks:
        current.append(mark)
        if mark[0] == f"send:{signo}":
            cycles.append(current)
            current = []
        elif mark[0].startswith("send:"):
            current = []
    return cycles


def _cycle_stages(cycle: Sequence[Mark], signo: int) -> dict[str, float] | None:
    """Stage boundaries of one cycle (ns), or None when it does not parse."""
    send_at = cycle[-1][1]
    steps = [i for i, m in enumerate(cycle[:-1]) if m[0].startswith("step:")]
    if not steps:
        return None
    task = steps[-1]
    handler = next((i for i, m in enumerate(cycle) if m[0] == f"handler:{signo}"), None)
    if handler is not None:
        io = next((i for i in range(handler, len(cycle)) if cycle[i][0] == "io"), None)
    else:
        # A signalfd: the cycle starts where the loop left the wait that the
        # signal ended, the last one before the forwarding task's step.
        io = max((i for i in range(task) if cycle[i][0] == "io"), default=None)
    if io is None:
        return None
    first = io if handler is None else handler
    marks = {"first": cycle[first][1], "io": cycle[io][1], "task": cycle[task][1], "send": send_at}
    entry = next((i for i in steps if i > io and "run_sync_soon" in cycle[i][0]), None)
    if entry is not None:
        entry_end = next((i for i in range(entry, len(cycle)) if cycle[i][0] == "end"), None)
        if entry_end is None:
            return None
        marks["entry_end"] = cycle[entry_end][1]
    return {key: float(value) for key, value in marks.items()}


def stages(
    marks: Sequence[Mark], kills_ns: Sequence[int], receipts_ns: Sequence[int], signo: int
) -> dict[str, float]:
    """Median microseconds per stage over the last ``len(kills_ns)`` cycles.

    ``kills_ns[i]`` and ``receipts_ns[i]`` are the harness's ``kill()`` and
    the workload's receipt of the i-th measured signal; the forwarder's own
    last cycles are the same signals, in the same order.
    """
    cycles = _cycles(marks, signo)[-len(kills_ns) :] if kills_ns else []
    if len(cycles) != len(kills_ns):
        return {}
    per: dict[str, list[float]] = {key: [] for key, _ in STAGES}
    for cycle, kill, receipt in zip(cycles, kills_ns, receipts_ns, strict=True):
        b = _cycle_stages(cycle, signo)
        if b is None or not kill <= b["first"] <= b["send"] <= receipt:
            continue
        per["kernel_in"].append(b["first"] - kill)
        if "entry_end" in b:
            per["handler"].append(b["io"] - b["first"])
            per["entry_queue"].append(b["entry_end"] - b["io"])
            per["turn"].append(b["task"] - b["entry_end"])
        else:
            per["turn"].append(b["task"] - b["first"])
        per["task"].append(b["send"] - b["task"])
        per["kernel_out"].append(receipt - b["send"])
        per["total"].append(receipt - kill)
    return {key: statistics.median(values) / 1e3 for key, values in per.items() if values}


SITECUSTOMIZE = """\
# Written by benchmarks/phases.py: profile the signal path of this process.
# The process has benchmarks/ on its PYTHONPATH; mypy, which checks this file
# as part of the benchmarks package, does not, hence the ignore.
import signal_profile  # type: ignore[import-not-found]

signal_profile.install()
"""
