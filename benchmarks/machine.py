"""The machine and the revision a run is recorded with.

:func:`git_revision` and :func:`load_average` are shared with ``fanout.py``
and ``sandbox.py``.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from pathlib import Path

from benchmarks.harness import ROOT, run_quiet


def package_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"



def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}" if head else "?"


def cpu_busy(seconds: float = 0.5) -> float:
    """The share of CPU time, all CPUs together, not idle over ``seconds``."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(word) for word in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    if total1 == total0:
        return 0.0
    return 1 - (idle1 - idle0) / (total1 - total0)


def load_average() -> str:
    try:
        with open("/proc/loadavg") as loadavg:
            return " ".join(loadavg.read().split()[:3])
    except OSError:
        return "?"


def machine_info(python: Path) -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    version = run_quiet(
        [str(python), "-c", "import sys; print(sys.version.split()[0])"], "python --version"
    ).strip()
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "nproc": str(len(os.sched_getaffinity(0))),
        "python": version,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_at_start": load_average(),
        "busy_at_start": f"{cpu_busy():.0%}",
    }
