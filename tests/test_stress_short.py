"""The stress suite's short mode, as CI runs it (the scenarios of ``stress/``).

Each scenario runs the real init, as PID 1 of a fresh namespace and as a
subreaper, at the short mode's sizes, and its invariants are asserted here:
every orphan reaped, the init alive throughout, every signal kind sent
received by the workload, the workload's exit code, RSS growth under 5 MiB,
descriptors and threads flat, no traceback on stderr, no process left.
The long mode (``make soak``) runs the same functions at 100,000 and an hour.
"""

from __future__ import annotations

import pytest
from stress.procfs import Figures
from stress.soak import soak
from stress.stdio import STDIO_CASES, stdio_faults
from stress.storms import signal_storm, stop_cont, zombie_storm
from stress.suite import plan_for

SHORT = plan_for("short")
RSS_MARGIN_KIB = 5 * 1024

pytestmark = pytest.mark.timeout(600)


def common(fig: Figures) -> None:
    """What every scenario must show, whatever it measured."""
    print(f"\n{fig['scenario']} ({fig['mode']}): {fig}")
    assert fig["failures"] == [], fig["failures"]
    assert fig["exit_code"] == fig["expected_code"]
    assert fig["tracebacks"] == 0
    assert fig["processes_left"] == 0
    assert fig["zombies_left"] == 0


def test_zombie_storm(mode: str) -> None:
    fig = zombie_storm(mode, SHORT.orphans)
    common(fig)
    assert fig["made"] == SHORT.orphans
    assert fig["alive"]
    assert fig["rss_after_kib"] - fig["rss_before_kib"] < RSS_MARGIN_KIB
    assert fig["fds_after"] == fig["fds_before"]
    assert fig["threads_after"] == fig["threads_before"]
    assert fig["reap_rate"] > 0
    assert fig["backlog_zombies"] == 2000  # made while the init was stopped, then reaped
    assert fig["rss_after_backlog_kib"] - fig["rss_before_kib"] < RSS_MARGIN_KIB


def test_signal_storm(mode: str) -> None:
    fig = signal_storm(mode, SHORT.signals)
    common(fig)
    assert fig["sent"] >= SHORT.signals
    assert fig["alive_after_burst"] and fig["alive"]
    assert fig["kinds_missing"] == []
    assert fig["kinds_unexpected"] == []
    assert fig["kinds_received"] == fig["kinds_forwardable"]
    assert fig["orphans_made"] > 0
    assert fig["rss_after_kib"] - fig["rss_before_kib"] < RSS_MARGIN_KIB
    assert fig["fds_after"] == fig["fds_before"]


def test_stop_and_continue_mid_storm(mode: str) -> None:
    fig = stop_cont(mode, SHORT.stop_orphans)
    common(fig)
    assert fig["orphans_made"] == SHORT.stop_orphans
    assert fig["cycles"] >= 5  # every stop mid-storm
    assert fig["kinds_missing"] == []
    assert fig["alive"]


@pytest.mark.parametrize("case", STDIO_CASES)
def test_stdout_and_stderr_faults(case: str) -> None:
    fig = stdio_faults(case, "subreaper", SHORT.stdio_orphans, flood_bytes=SHORT.flood_bytes)
    common(fig)
    assert fig["kinds_missing"] == []
    assert fig["alive"]
    assert fig["exit_after_term_s"] < 15


@pytest.mark.pid1
def test_init_with_stdout_and_stderr_closed_as_pid1() -> None:
    fig = stdio_faults("init-closed", "pid1", SHORT.stdio_orphans)
    common(fig)
    assert fig["kinds_missing"] == []


@pytest.mark.pid1
def test_soak() -> None:
    fig = soak("pid1", SHORT.soak_seconds)
    common(fig)
    assert fig["alive"]
    assert fig["children"] > 0 and fig["daemons"] > 0
    assert fig["rss_max_kib"] - fig["rss_after_warmup_kib"] < RSS_MARGIN_KIB
    assert fig["fds_range"][0] == fig["fds_range"][1]
    assert fig["threads_range"][0] == fig["threads_range"][1]
    assert fig["kinds_missing"] == [] and fig["kinds_unexpected"] == []
