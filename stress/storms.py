"""The storms: orphans as fast as the workload forks (:func:`zombie_storm`),
signals of mixed kinds in a burst (:func:`signal_storm`), and the init
stopped and continued from outside mid-storm (:func:`stop_cont`).

Each takes its size and returns a dict of figures, with the broken
invariants listed under ``"failures"``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Sequence

from stress.harness import (
    DEFAULT_CAP,
    MIB,
    finish_figures,
    forwarded_signals,
    launch,
    only_workload_left,
    send_signal,
    signal_label,
    signal_mix,
)
from stress.procfs import (
    Figures,
    Sampler,
    census,
    children_of,
    cpu_seconds,
    footprint,
    settled_footprint,
    state_of,
    wait_until,
)


def zombie_storm(
    mode: str,
    orphans: int,
    *,
    batch: int = 8,
    cap: int = DEFAULT_CAP,
    code: int = 3,
    init_args: Sequence[str] = (),
    rss_margin_kib: int = 5 * MIB,
    backlog: int | None = None,
) -> Figures:
    """N orphans as fast as the workload forks; the init reaps every one.

    Figures: fork and reap rates, peak zombies and children (sampled), RSS,
    descriptors and threads before and after, the init's CPU time. The reap
    rate of the storm is bounded by the fork rate; then a backlog (default
    N/10, 2,000 to 10,000) is made while the init is stopped, and the time it
    takes to reap them all once continued gives the reap rate of a backlog.
    """
    fig: Figures = {"scenario": "zombie storm", "mode": mode, "orphans": orphans}
    failures: list[str] = []
    go = int(signal.SIGUSR1)
    if backlog is None:
        backlog = max(1, min(max(orphans // 10, 2000), 10_000, orphans))
    args = [
        f"orphans={orphans}",
        f"batch={batch}",
        f"cap={cap}",
        f"go={go}",
        f"code={code}",
        f"again={backlog}",
    ]
    with launch(mode, init_args, args) as run:
        run.ready()
        time.sleep(0.3)
        before = footprint(run.init_pid)
        cpu0 = cpu_seconds(run.init_pid)
        sampler = Sampler(run.init_pid)
        sampler.start()
        try:
            began = time.monotonic()
            run.send(go)
            line = run.report.expect("storm", 120 + orphans / 200)
            made_at = time.monotonic()
            _, made, micros, eagain, throttled = line.split()
            wait_until(only_workload_left(run), 60 + orphans / 1000, "every orphan reaped")
            reaped_at = time.monotonic()
        finally:
            sampler.stop()
        fig["alive"] = run.alive()
        time.sleep(0.5)
        after = settled_footprint(run.init_pid, before)
        fig["init_cpu_s"] = round(cpu_seconds(run.init_pid) - cpu0, 2)
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        # The backlog: zombies made while the init is stopped, reaped at once.
        os.kill(run.init_pid, signal.SIGSTOP)
        try:
            wait_until(lambda: state_of(run.init_pid) in ("T", "t"), 10, "the init stopped")
            os.kill(run.workload_pid, signal.SIGUSR2)
            run.report.expect("storm", 120 + backlog / 200)
            wait_until(
                lambda: census(run.init_pid)[1] >= backlog, 30, "the backlog's zombies", 0.05
            )
            fig["backlog_zombies"] = census(run.init_pid)[1]
        finally:
            continued = time.monotonic()
            os.kill(run.init_pid, signal.SIGCONT)
        wait_until(only_workload_left(run), 60 + backlog / 1000, "the backlog reaped", 0.001)
        took = time.monotonic() - continued
        fig["backlog_reap_ms"] = round(took * 1000, 1)
        fig["backlog_reap_rate"] = round(backlog / max(took, 1e-6))
        fig["rss_after_backlog_kib"] = footprint(run.init_pid)["rss_kib"]
        code_got = run.finish()
        fig.update(
            made=int(made),
            fork_seconds=round(int(micros) / 1e6, 2),
            fork_rate=round(int(made) / max(int(micros) / 1e6, 1e-6)),
            reap_seconds=round(reaped_at - began, 2),
            reap_rate=round(int(made) / max(reaped_at - began, 1e-6)),
            last_reaped_after_ms=round((reaped_at - made_at) * 1000),
            peak_zombies=sampler.peak_zombies,
            peak_children=sampler.peak_children,
            samples=sampler.samples,
            throttled=int(throttled),
            fork_eagain=int(eagain),
            rss_before_kib=before["rss_kib"],
            rss_after_kib=after["rss_kib"],
            rss_peak_kib=after["hwm_kib"],
            fds_before=before["fds"],
            fds_after=after["fds"],
            fd_targets_after=after.get("fd_targets", []),
            threads_before=before["threads"],
            threads_after=after["threads"],
        )
        if int(made) != orphans:
            failures.append(f"the workload made {made} orphans of {orphans}")
        if not fig["alive"]:
            failures.append("the init died during the storm")
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} orphans left unreaped")
        growth = max(after["rss_kib"], fig["rss_after_backlog_kib"]) - before["rss_kib"]
        if growth > rss_margin_kib:
            failures.append(f"RSS grew by {growth} KiB (margin {rss_margin_kib})")
        if fig["backlog_zombies"] < backlog:
            failures.append(f"backlog of {fig['backlog_zombies']} zombies, {backlog} made")
        if after["fds"] != before["fds"]:
            failures.append(f"descriptors {before['fds']} -> {after['fds']}")
        assert code_got == run.exit_code
        finish_figures(fig, failures, run, code)
    fig["failures"] = failures
    return fig


#: Signals the kernel cancels against each other while pending: a stop signal
#: (SIGTSTP, SIGTTIN, SIGTTOU) discards a pending SIGCONT, and SIGCONT a pending
#: stop signal, whatever the receiver's dispositions. No init can forward a
#: signal that never reached it, so after a burst these are checked apart.
CANCELLING = frozenset({signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})


def signal_storm(
    mode: str,
    signals: int,
    *,
    cap: int = DEFAULT_CAP,
    code: int = 5,
    seed: int = 1,
    rss_margin_kib: int = 5 * MIB,
) -> Figures:
    """N signals of mixed kinds at the init in one burst, while orphans are
    being made and reaped: it stays up, every kind it forwards reaches the
    workload (trio merges repeats, so kinds are compared, not counts), none it
    must keep does, and the last SIGTERM ends the run with the right code.

    SIGCONT and SIGTSTP are in the burst, but the kernel may cancel them
    against each other (:data:`CANCELLING`): after the burst each is sent
    once more, one after the other, and must arrive too."""
    fig: Figures = {"scenario": "signal storm", "mode": mode, "signals": signals}
    failures: list[str] = []
    mix = signal_mix()
    expected = set(mix) & set(forwarded_signals())
    args = ["loop=1", "armed=0", f"cap={cap}", f"code={code}"]
    with launch(mode, (), args) as run:
        run.ready()
        before = footprint(run.init_pid)
        sampler = Sampler(run.init_pid)
        sampler.start()
        time.sleep(0.3)  # the orphans are under way
        rng = random.Random(seed)
        order = list(mix)
        eagain = 0
        sent = 0
        sent_kinds: set[int] = set()
        try:
            began = time.monotonic()
            while sent < signals:
                rng.shuffle(order)
                for signo in order[: signals - sent]:
                    try:
                        eagain += send_signal(run.init_pid, signo)
                    except ProcessLookupError:
                        failures.append(f"the init died after {sent} signals")
                        break
                    sent += 1
                    sent_kinds.add(signo)
                else:
                    continue
                break
            burst = time.monotonic() - began
            fig["alive_after_burst"] = run.alive()
            took = run.report.wait_kinds((expected & sent_kinds) - CANCELLING, 60)
            for signo in (signal.SIGTSTP, signal.SIGCONT):
                if signo not in sent_kinds:
                    continue
                # A stop signal still on its way to the workload from the
                # burst discards a pending SIGCONT there (the kernel's rule),
                # so a lone SIGCONT may need a second try.
                for _ in range(3):
                    run.send(signo)
                    sent += 1
                    run.report.wait_kinds({signo}, 10)
                    if signo in run.report.kinds:
                        break
            run.command("stop")
            line = run.report.expect("storm", 120)
            wait_until(only_workload_left(run), 120, "every orphan reaped")
        finally:
            sampler.stop()
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        time.sleep(0.3)
        after = settled_footprint(run.init_pid, before)
        fig["alive"] = run.alive()
        received = set(run.report.kinds)
        run.finish()
        final = run.report.expect("final", 10).split()
        missing = (expected & sent_kinds) - received
        unexpected = received - expected
        fig.update(
            sent=sent,
            burst_seconds=round(burst, 2),
            burst_rate=round(sent / max(burst, 1e-6)),
            queue_full_retries=eagain,
            kinds_sent=len(sent_kinds),
            kinds_forwardable=len(expected & sent_kinds),
            kinds_received=len(received & expected),
            kinds_missing=sorted(signal_label(s) for s in missing),
            kinds_unexpected=sorted(signal_label(s) for s in unexpected),
            all_kinds_after_s=round(took, 2),
            workload_deliveries=int(final[1]),
            orphans_made=int(line.split()[1]),
            peak_zombies=sampler.peak_zombies,
            peak_children=sampler.peak_children,
            rss_before_kib=before["rss_kib"],
            rss_after_kib=after["rss_kib"],
            fds_before=before["fds"],
            fds_after=after["fds"],
            fd_targets_after=after.get("fd_targets", []),
            threads_before=before["threads"],
            threads_after=after["threads"],
        )
        if not fig["alive_after_burst"] or not fig["alive"]:
            failures.append("the init died in the signal storm")
        if missing:
            failures.append(f"kinds sent but never received: {fig['kinds_missing']}")
        if unexpected:
            failures.append(f"kinds received but not to be forwarded: {fig['kinds_unexpected']}")
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} orphans left unreaped")
        if after["rss_kib"] - before["rss_kib"] > rss_margin_kib:
            failures.append(f"RSS {before['rss_kib']} -> {after['rss_kib']} KiB")
        finish_figures(fig, failures, run, code)
    fig["failures"] = failures
    return fig


def stop_cont(
    mode: str,
    orphans: int,
    *,
    min_cycles: int = 5,
    hold: float = 0.5,
    cap: int = 500,
    code: int = 6,
) -> Figures:
    """The init stopped from outside (SIGSTOP), signals sent to it meanwhile,
    then continued (SIGCONT), again and again until the storm is over (at
    least ``min_cycles`` times): nothing is lost once it resumes.

    While the init is stopped its zombies pile up until the workload's
    throttle (``cap``) holds the storm, so every stop lands mid-storm. Stop
    signals (SIGTSTP...) are not sent while it is stopped: the SIGCONT that
    resumes it makes the kernel discard them (see :data:`CANCELLING`)."""
    fig: Figures = {"scenario": "SIGSTOP/SIGCONT mid-storm", "mode": mode, "orphans": orphans}
    failures: list[str] = []
    go = int(signal.SIGUSR1)
    forwarded = forwarded_signals()
    while_stopped = sorted(forwarded - CANCELLING - {signal.SIGUSR1})
    # Small enough a throttle that the storm needs several stops to get through.
    cap = max(1, min(cap, orphans // (3 * min_cycles)))
    args = [f"orphans={orphans}", f"cap={cap}", f"go={go}", "armed=0", f"code={code}"]
    sent_kinds: set[int] = {signal.SIGUSR1, signal.SIGCONT}
    stopped_total = 0.0
    cycles = 0
    with launch(mode, (), args) as run:
        run.ready()
        sampler = Sampler(run.init_pid)
        sampler.start()
        try:
            run.send(go)
            while cycles < 1000:
                time.sleep(0.02)
                if run.report.peek("storm"):
                    break  # the storm is over

                os.kill(run.init_pid, signal.SIGSTOP)
                wait_until(
                    lambda: state_of(run.init_pid) in ("T", "t"), 10, "the init to be stopped"
                )
                began = time.monotonic()
                # A different slice of the kinds at each stop; SIGTERM and
                # SIGINT every time: the workload is not armed.
                part = while_stopped[cycles % min_cycles :: min_cycles]
                for signo in [*part, signal.SIGTERM, signal.SIGINT]:
                    send_signal(run.init_pid, signo)
                    sent_kinds.add(signo)
                time.sleep(hold)
                stopped_total += time.monotonic() - began
                os.kill(run.init_pid, signal.SIGCONT)
                cycles += 1
            line = run.report.expect("storm", 120 + orphans / 200)
            wait_until(only_workload_left(run), 60 + orphans / 1000, "every orphan reaped")
            took = run.report.wait_kinds(sent_kinds & forwarded, 60)
        finally:
            sampler.stop()
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        fig["alive"] = run.alive()
        received = set(run.report.kinds)
        run.finish()
        missing = (sent_kinds & forwarded) - received
        fig.update(
            cycles=cycles,
            cap=cap,
            stopped_seconds=round(stopped_total, 2),
            orphans_made=int(line.split()[1]),
            throttled=int(line.split()[4]),
            peak_zombies=sampler.peak_zombies,
            kinds_sent=len(sent_kinds),
            kinds_received=len(received & sent_kinds),
            kinds_missing=sorted(signal_label(s) for s in missing),
            all_kinds_after_s=round(took, 2),
        )
        if missing:
            failures.append(f"kinds sent while stopped never received: {fig['kinds_missing']}")
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} orphans left unreaped")
        if not fig["alive"]:
            failures.append("the init died")
        if int(line.split()[1]) != orphans:
            failures.append(f"made {line.split()[1]} orphans of {orphans}")
        if cycles < min_cycles:
            failures.append(f"the storm was over after {cycles} stops ({min_cycles} wanted)")
        finish_figures(fig, failures, run, code)
    fig["failures"] = failures
    return fig
