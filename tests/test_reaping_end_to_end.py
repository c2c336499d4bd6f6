"""Reaping orphans, as PID 1 and as subreaper, through the real command.

A zombie is looked for among the init's descendants (``State: Z``), from
outside; the workloads that make orphans live in ``tests/workloads``.
"""

from __future__ import annotations

import os
import signal
import time

from tests.support.launch import launch, receiver_up, workload
from tests.support.procfs import (
    children_of,
    ctxt_switches,
    proc_status,
    state_of,
    wait_for,
    zombies_under,
)

#: What the storm test measured (printed; run with -s to see it).
STORM_TIMES: dict[str, str] = {}


def test_orphans_are_reaped_promptly_while_the_workload_runs(mode: str) -> None:
    count = 20
    with launch(workload("reap_orphans.py", str(count)), mode) as init:
        assert init.readline().startswith("ready")
        pid = init.init_pid
        child = init.workload_pid()
        holder: list[list[int]] = []

        def adopted() -> bool:
            orphans = [kid for kid in children_of(pid) if kid != child]
            holder[:] = [orphans]
            return len(orphans) == count

        wait_for(adopted, 10, f"{count} orphans re-parented to the init")
        orphans = holder[0]
        assert all(state_of(orphan) not in (None, "Z") for orphan in orphans)

        os.kill(child, signal.SIGUSR1)  # the orphans exit now, all at once
        released = time.monotonic()
        assert init.readline() == "released\n"
        while any(state_of(orphan) is not None for orphan in orphans) or zombies_under(pid):
            assert time.monotonic() - released < 5, "orphans not reaped within 5 s"
            time.sleep(0.001)
        took = time.monotonic() - released
        print(f"\n{mode}: {count} orphans reaped {took * 1000:.1f} ms after their release")
        assert children_of(pid) == [child]
        assert state_of(child) == "S"  # the workload runs on
        assert init.alive()
        init.send(signal.SIGTERM)
        assert init.wait(10) == 7


def settle(pid: int, quiet: float = 0.5, timeout: float = 15.0) -> None:
    """Wait until the init has had no context switch for ``quiet`` seconds."""
    last = ctxt_switches(pid)
    steady_since = time.monotonic()
    deadline = steady_since + timeout
    while time.monotonic() - steady_since < quiet:
        assert time.monotonic() < deadline, "the init never settled"
        time.sleep(0.05)
        now = ctxt_switches(pid)
        if now != last:
            last, steady_since = now, time.monotonic()


def idle_wakeups(pid: int, seconds: float) -> int:
    """Context switches of every thread of ``pid`` over ``seconds`` (sleeps that long)."""
    threads = sorted(os.listdir(f"/proc/{pid}/task"))
    before = ctxt_switches(pid)
    time.sleep(seconds)
    after = ctxt_switches(pid)
    assert sorted(os.listdir(f"/proc/{pid}/task")) == threads, "threads came or went"
    return after - before


def test_idle_init_wakes_for_nothing(mode: str) -> None:
    """Idle after start-up, and idle again after forwarding, logging and reaping."""
    with launch(["-v", *workload("reap_orphans.py", "3")], mode) as init:
        assert init.readline().startswith("ready")
        pid = init.init_pid
        child = init.workload_pid()

        wait_for(lambda: receiver_up(pid), 15, "the init's signal receiver")
        wait_for(lambda: len(children_of(pid)) == 4, 10, "the orphans' adoption")
        settle(pid)
        assert idle_wakeups(pid, 2.0) == 0
        assert state_of(pid) == "S"

        init.send(signal.SIGUSR1)  # forwarded and logged; the 3 orphans exit, reaped
        assert init.readline() == "released\n"
        wait_for(lambda: children_of(pid) == [child], 10, "the orphans reaped")
        settle(pid)
        assert idle_wakeups(pid, 2.0) == 0

        init.send(signal.SIGTERM)
        assert init.wait(10) == 7


def test_orphan_storm_is_fully_reaped(mode: str) -> None:
    count = 10_000
    with launch(workload("reap_storm.py", str(count), "42"), mode) as init:
        line = init.readline(90)
        assert line.startswith("done"), line
        made = time.monotonic()
        pid = init.init_pid
        child = init.workload_pid()
        try:
            wait_for(
                lambda: children_of(pid) == [child] and not zombies_under(pid),
                20,
                "every orphan of the storm reaped",
            )
        except AssertionError:
            left = [(kid, state_of(kid)) for kid in children_of(pid)]
            status = proc_status(pid)
            raise AssertionError(
                f"left after 20 s: {len(left)} children of the init, e.g. {left[:5]}; "
                f"init State={status['State']} ShdPnd={status['ShdPnd']} "
                f"SigBlk={status['SigBlk']} SigCgt={status['SigCgt']}"
            ) from None
        total = time.monotonic() - init.started
        after_done = time.monotonic() - made
        STORM_TIMES[mode] = (
            f"{count} orphans: made in {line.split()[1]} s, "
            f"all reaped {after_done * 1000:.0f} ms after the last, {total:.2f} s in all"
        )
        print(f"\n{mode}: {STORM_TIMES[mode]}")
        assert init.alive()
        init.send(signal.SIGUSR1)
        assert init.wait(10) == 42


def test_workload_status_never_lost_to_the_orphan_reaper(mode: str) -> None:
    """The orphans exit at the very moment the workload does: its outcome wins."""
    iterations = 50
    wrong: list[tuple[str, int]] = []
    for i in range(iterations):
        if i % 10 == 9:
            outcome, expected = f"sig:{int(signal.SIGUSR2)}", 128 + signal.SIGUSR2
        else:
            outcome = str(i * 5 + 1)
            expected = int(outcome)
        with launch(workload("reap_race.py", outcome, "8"), mode) as init:
            code = init.wait(20)
            if code != expected:
                wrong.append((outcome, code))
    assert wrong == []


def test_workload_status_kept_when_the_init_inherits_sigchld_ignored(mode: str) -> None:
    """A parent that set SIGCHLD to SIG_IGN before exec'ing the init (as some do)."""
    launcher = workload("sig_launch.py", "ignore=CHLD", "--")
    results = []
    for _ in range(5):
        with launch(["sh", "-c", "exit 9"], mode, prefix=launcher) as init:
            code = init.wait(20)
            results.append((code, init.stderr().strip().splitlines()[-1:]))
    assert [code for code, _ in results] == [9] * 5, results


STALL_ORPHANS = 3_000  # ~250 kB of reap warnings: far more than a pipe holds


def test_reaping_not_held_up_by_a_stalled_stderr(mode: str) -> None:
    """-w logs every reaped orphan to a stderr pipe nobody reads: reaping goes on."""
    args = ["-w", *workload("reap_storm.py", str(STALL_ORPHANS), "42")]
    with launch(args, mode) as init:
        line = init.readline(90)
        assert line.startswith("done"), line
        pid = init.init_pid
        child = init.workload_pid()
        wait_for(
            lambda: children_of(pid) == [child] and not zombies_under(pid),
            10,
            "every orphan reaped despite the stalled stderr",
        )
        assert init.alive()
        init.send(signal.SIGUSR1)  # forwarding is not held up either: the workload exits
        wait_for(lambda: state_of(child) is None, 10, "the workload to exit and be reaped")


def test_stalled_stderr_never_keeps_the_init_alive(mode: str) -> None:
    """Dropped log lines are reported, but a full stderr must not stop the exit."""
    args = ["-w", *workload("reap_storm.py", str(STALL_ORPHANS), "42")]
    with launch(args, mode) as init:
        line = init.readline(90)
        assert line.startswith("done"), line
        child = init.workload_pid()
        init.send(signal.SIGUSR1)
        wait_for(lambda: state_of(child) is None, 10, "the workload to exit and be reaped")
        assert init.wait(5) == 42
