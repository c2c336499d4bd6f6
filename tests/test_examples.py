"""The examples run as documented: the worker server's self-test and the
fixture's example tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_worker_server_self_test() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "worker_server.py"), "--self-test"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"HELLO" in result.stdout


def test_fixture_examples_pass() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"4 passed" in result.stdout


def test_pool_and_pipes() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "pool_and_pipes.py")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert out.count(": reloaded") == 3, out
    assert "exit codes: [0, 0, 0]" in out


def test_restarting_worker() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "restarting_worker.py")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert out.count("crashing") == 2 and "run 3: serving" in out, out
    assert out.count("event workload_restarting") == 2, out
    assert "restarts: 2, last run: exited with 0" in out, out


def test_sandbox_builds() -> None:
    """Twenty steps in sandboxes: all built; then step 7 fails early, the
    others still running are cancelled, and no process of any sandbox
    remains."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "sandbox_builds.py")],
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "built: 20, failed: 0, cancelled: 0" in out, out
    assert out.count("container_stop") == 20, out
    failing = subprocess.run(
        [sys.executable, str(EXAMPLES / "sandbox_builds.py"), "--fail", "7"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = failing.stdout.decode()
    assert failing.returncode == 1, out + failing.stderr.decode()
    # The others work 3 s or more: on a loaded machine some may finish first.
    summary = re.search(r"built: (\d+), failed: 1, cancelled: (\d+)", out)
    assert summary is not None, out
    built, cancelled = int(summary[1]), int(summary[2])
    assert built + cancelled == 19 and cancelled > 0, out
    assert "failure: step-07 failed with exit code 3" in out, out
    assert "step-07  container_stop" in out, out
    leftovers = subprocess.run(["pgrep", "-f", "sleep 917"], capture_output=True, check=False)
    assert leftovers.stdout == b"", leftovers.stdout
