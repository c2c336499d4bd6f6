"""The init's daily work checked end to end: once, under a fault of the
caller's making (:func:`exercise`, which tests/test_faults.py drives), and
for S seconds while children, daemons and signals keep coming (:func:`soak`).
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Mapping, Sequence

from stress.harness import (
    MIB,
    finish_figures,
    forwarded_signals,
    launch,
    only_workload_left,
    send_signal,
    signal_label,
)
from stress.procfs import (
    Figures,
    StressError,
    census,
    children_of,
    cpu_seconds,
    footprint,
    wait_until,
)
from stress.storms import CANCELLING


def exercise(
    mode: str,
    init_args: Sequence[str] = (),
    *,
    orphans: int = 2000,
    code: int = 13,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    kinds: Sequence[int] | None = None,
    lost_ok: frozenset[int] = frozenset(),
    reap_timeout: float = 30.0,
    tracebacks_allowed: bool = False,
    init: Sequence[str] | None = None,
) -> Figures:
    """The init's daily work under a fault of the caller's making: a storm of
    ``orphans``, then one signal of every kind in ``kinds`` (default: every
    forwarded kind but those the kernel cancels), then the final SIGTERM.

    Figures: orphans made, zombies left once the storm is over (after
    ``reap_timeout`` at most), kinds received and missing, the exit code, and
    the init's stderr (``stderr``) for the caller to look into. Kinds in
    ``lost_ok`` are sent but not required (a fault may eat them). ``init``:
    as :func:`launch` takes it.
    """
    fig: Figures = {"scenario": "exercise", "mode": mode, "orphans": orphans}
    failures: list[str] = []
    go = int(signal.SIGUSR1)
    wanted = sorted(forwarded_signals() - CANCELLING) if kinds is None else list(kinds)
    args = [f"orphans={orphans}", f"go={go}", "armed=0", f"code={code}"]
    with launch(mode, init_args, args, env=env, pass_fds=pass_fds, init=init) as run:
        run.ready()
        run.send(go)
        line = run.report.expect("storm", 120 + orphans / 200)
        fig["orphans_made"] = int(line.split()[1])
        try:
            fig["reaped_after_s"] = round(
                wait_until(only_workload_left(run), reap_timeout, "every orphan reaped"), 2
            )
        except StressError as exc:
            failures.append(str(exc))
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} orphans left unreaped")
        for signo in wanted:
            run.send(signo)
        required = set(wanted) - lost_ok
        fig["all_kinds_after_s"] = round(run.report.wait_kinds(required, 30), 2)
        missing = required - run.report.kinds
        fig["kinds_sent"] = len(wanted)
        fig["kinds_missing"] = sorted(signal_label(s) for s in missing)
        if missing:
            failures.append(f"kinds never received: {fig['kinds_missing']}")
        fig["alive"] = run.alive()
        if not fig["alive"]:
            failures.append("the init died")
        began = time.monotonic()
        run.finish(code_timeout=60)
        fig["exit_after_term_s"] = round(time.monotonic() - began, 2)
        fig["stderr"] = run.stderr_text()[-200_000:]
        finish_figures(fig, failures, run, code)
        if tracebacks_allowed:
            failures[:] = [f for f in failures if not f.startswith("traceback on")]
    fig["failures"] = failures
    return fig


def soak(
    mode: str,
    seconds: float,
    *,
    rate: float = 50.0,
    daemon_rate: float = 5.0,
    signal_interval: float = 0.1,
    code: int = 11,
    seed: int = 7,
    rss_margin_kib: int = 5 * MIB,
    progress: Callable[[str], None] | None = None,
) -> Figures:
    """``seconds`` of a workload that forks short-lived children and daemons
    (double-forked, living 0.1 to 5 s) while signals of every kind arrive at
    random; the init audits to /dev/null all along. RSS, descriptors and
    threads must stay flat after the warm-up (the first tenth, 3 s at least)."""
    fig: Figures = {"scenario": "soak", "mode": mode, "seconds": seconds}
    failures: list[str] = []
    forwarded = forwarded_signals()
    kinds = sorted(forwarded | {signal.SIGCHLD})
    args = [
        f"soak={seconds + 3600}",
        f"rate={rate}",
        f"drate={daemon_rate}",
        "armed=0",
        f"code={code}",
    ]
    init_args = ["--audit", "/dev/null", "-t", "2"]
    rng = random.Random(seed)
    warmup = max(3.0, seconds / 10)
    sample_every = max(1.0, seconds / 300)
    samples: list[Figures] = []
    sent = 0
    sent_kinds: set[int] = set()
    peak_children = peak_zombies = 0
    with launch(mode, init_args, args) as run:
        run.ready()
        cpu0 = cpu_seconds(run.init_pid)
        began = time.monotonic()
        next_sample = began
        next_note = began + 60
        deadline = began + seconds
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if not run.alive():
                failures.append(f"the init died after {now - began:.0f} s")
                break
            if now >= next_sample:
                sample = footprint(run.init_pid)
                children, zombies = census(run.init_pid)
                sample.update(t=round(now - began, 1), children=children, zombies=zombies)
                samples.append(sample)
                peak_children = max(peak_children, children)
                peak_zombies = max(peak_zombies, zombies)
                next_sample += sample_every
            if progress is not None and now >= next_note:
                last = samples[-1] if samples else {}
                progress(
                    f"soak {now - began:.0f}/{seconds:.0f} s: {sent} signals, "
                    f"rss {last.get('rss_kib')} KiB, fds {last.get('fds')}, "
                    f"threads {last.get('threads')}"
                )
                next_note += 60
            signo = rng.choice(kinds)
            send_signal(run.init_pid, signo)
            sent += 1
            sent_kinds.add(signo)
            run.report.drain(0)
            time.sleep(rng.uniform(0, 2 * signal_interval))
        fig["init_cpu_s"] = round(cpu_seconds(run.init_pid) - cpu0, 2)
        run.command("stop")
        line = run.report.expect("soak", 60)
        wait_until(only_workload_left(run), 30, "the daemons to end and be reaped")
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        took = run.report.wait_kinds(sent_kinds & forwarded, 30)
        received = set(run.report.kinds)
        fig["alive"] = run.alive()
        run.finish()
        steady = [s for s in samples if s["t"] >= warmup] or samples[-1:]
        base = steady[0] if steady else {"rss_kib": 0, "fds": 0, "threads": 0}
        rss_max = max(s["rss_kib"] for s in steady) if steady else 0
        missing = (sent_kinds & forwarded) - received
        fig.update(
            children=int(line.split()[1]),
            daemons=int(line.split()[2]),
            signals_sent=sent,
            kinds_sent=len(sent_kinds),
            kinds_forwardable=len(sent_kinds & forwarded),
            kinds_received=len(received & sent_kinds),
            kinds_missing=sorted(signal_label(s) for s in missing),
            kinds_unexpected=sorted(signal_label(s) for s in received - forwarded),
            all_kinds_after_s=round(took, 2),
            samples=len(samples),
            rss_first_kib=samples[0]["rss_kib"] if samples else 0,
            rss_after_warmup_kib=base["rss_kib"],
            rss_max_kib=rss_max,
            rss_last_kib=steady[-1]["rss_kib"] if steady else 0,
            fds_range=[min(s["fds"] for s in steady), max(s["fds"] for s in steady)]
            if steady
            else [],
            threads_range=[min(s["threads"] for s in steady), max(s["threads"] for s in steady)]
            if steady
            else [],
            peak_children=peak_children,
            peak_zombies_sampled=peak_zombies,
        )
        if rss_max - base["rss_kib"] > rss_margin_kib:
            failures.append(f"RSS grew {base['rss_kib']} -> {rss_max} KiB after the warm-up")
        if steady and len({s["fds"] for s in steady}) > 1:
            failures.append(f"descriptors varied: {fig['fds_range']}")
        if steady and len({s["threads"] for s in steady}) > 1:
            failures.append(f"threads varied: {fig['threads_range']}")
        if missing:
            failures.append(f"kinds never received: {fig['kinds_missing']}")
        if fig["kinds_unexpected"]:
            failures.append(f"kinds received but not to be forwarded: {fig['kinds_unexpected']}")
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} processes left under the init")
        if not fig["alive"]:
            failures.append("the init died")
        finish_figures(fig, failures, run, code)
        fig["rss_series_kib"] = [s["rss_kib"] for s in samples[:: max(1, len(samples) // 60)]]
    fig["failures"] = failures
    return fig
