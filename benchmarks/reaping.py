"""The reaping phases: a storm of orphans one after another, and a burst of
zombies re-parented at once, each under an init as PID 1."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence

from benchmarks.harness import BUILD, Init, Session, rotated, settle
from benchmarks.model import BurstRun, Params, Raw, StormRun
from benchmarks.phases import stop, warm_up
from benchmarks.procfs import children, cpu_ns, only_child_left, status_fields


def phase_storm(init: Init, raw: Raw, p: Params) -> None:
    """20,000 double-forked orphans, one after another, under PID 1."""
    with Session(
        [*init.command, str(BUILD / "storm"), str(p.storm)], pid1=True, label=f"{init.name}-storm"
    ) as session:
        session.start()
        session.expect("R", 10)
        (workload,) = children(session.pid) or [0]
        warm_up(session)  # the init's own start-up stays out of its CPU count
        settle(0.05)
        cpu0 = cpu_ns(session.pid)
        os.kill(session.pid, signal.SIGUSR1)
        (t_storm,) = session.expect("S", 30)
        peak = 0
        t_forked: int | None = None
        failures = 0
        t_clear: int | None = None
        deadline = time.monotonic() + 120
        left = 0
        while time.monotonic() < deadline:
            line = session.poll_line(0.002)
            if line is not None and line.startswith("D "):
                t_forked, failures = (int(word) for word in line.split()[1:3])
            left = len([pid for pid in children(session.pid) if pid != workload])
            peak = max(peak, left)
            if t_forked is not None and left == 0:
                t_clear = time.monotonic_ns()
                break
        cpu1 = cpu_ns(session.pid)
        hwm = status_fields(session.pid).get("VmHWM", 0)
        if t_forked is None or t_clear is None:
            raw.failures.append(f"{init.name}: storm not over in 120 s ({left} zombies left)")
            t_clear = time.monotonic_ns()
            t_forked = t_forked or t_clear
        raw.storm.setdefault(init.name, []).append(
            StormRun(
                seconds=(t_clear - t_storm) / 1e9,
                fork_seconds=(t_forked - t_storm) / 1e9,
                peak_zombies=peak,
                cpu_us_per_orphan=(cpu1 - cpu0) / 1e3 / p.storm,
                left=left,
                hwm_kib=hwm,
                fork_failures=failures,
            )
        )
        stop(session)


def phase_burst(init: Init, raw: Raw, p: Params) -> None:
    """10,000 zombies re-parented to PID 1 at the same moment."""
    with Session(
        [*init.command, str(BUILD / "burst"), str(p.burst)], pid1=True, label=f"{init.name}-burst"
    ) as session:
        session.start()
        session.expect("R", 10)
        (workload,) = children(session.pid) or [0]
        warm_up(session)  # the init's own start-up stays out of its CPU count
        settle(0.05)
        cpu0 = cpu_ns(session.pid)
        os.kill(session.pid, signal.SIGUSR1)
        t_burst, made = session.expect("B", 60)
        session.expect("X", 30)
        deadline = time.monotonic_ns() + 60 * 10**9
        t_clear: int | None = None
        while time.monotonic_ns() < deadline:
            if only_child_left(session.pid, workload):
                t_clear = time.monotonic_ns()
                break
            time.sleep(0.0001)
        cpu1 = cpu_ns(session.pid)
        left = len([pid for pid in children(session.pid) if pid != workload])
        if t_clear is None:
            raw.failures.append(f"{init.name}: burst not reaped in 60 s ({left} zombies left)")
            t_clear = time.monotonic_ns()
        seconds = (t_clear - t_burst) / 1e9
        raw.burst.setdefault(init.name, []).append(
            BurstRun(
                zombies=made,
                seconds=seconds,
                reaps_per_s=(made - left) / seconds if seconds > 0 else 0.0,
                cpu_us_per_reap=(cpu1 - cpu0) / 1e3 / max(made, 1),
                left=left,
            )
        )
        stop(session)


def phase_reaping(
    one: Callable[[Init, Raw, Params], None],
    inits: Sequence[Init],
    raw: Raw,
    p: Params,
    rounds: int,
) -> None:
    for round_no in range(rounds):
        for init in rotated(inits, round_no):
            one(init, raw, p)
