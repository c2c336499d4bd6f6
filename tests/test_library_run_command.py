"""The library's ``run_command`` (the command line over a Supervisor): the
exit code passed through, usage and spawn errors, SIGTERM forwarded.

Tests marked ``trio`` run under pytest-trio; the ``anyio`` ones are
parametrized over asyncio and trio. Every test bounds its time with
``fail_after`` (and pytest-timeout), and kills what it started by PID in a
``finally``, only while the PID is still its own child.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.support.launch import PYTHON, WORKLOADS
from tests.support.library import T
from tests.support.procfs import children_of


def _run_command(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, str(WORKLOADS / "lib_run_command.py"), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        **kwargs,
    )


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill the session of a run_command process (and its workload's group)."""
    # The workload, its child, leads a process group of its own.
    for pid in (proc.pid, *children_of(proc.pid)):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        proc.wait(timeout=T)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.mark.parametrize("code", [0, 3, 255])
def test_run_command_passes_the_exit_code_through(code: int) -> None:
    proc = _run_command(["--", "sh", "-c", f"exit {code}"])
    try:
        proc.communicate(timeout=T)
        assert proc.returncode == code
    finally:
        _end(proc)


def test_run_command_killed_workload_gives_128_plus_signal() -> None:
    proc = _run_command(["sh", "-c", "kill -USR1 $$"])
    try:
        proc.communicate(timeout=T)
        assert proc.returncode == 128 + signal.SIGUSR1
    finally:
        _end(proc)


def test_run_command_missing_program_is_127() -> None:
    proc = _run_command(["--", "/nonexistent/nucleus-trio-program"])
    try:
        _, err = proc.communicate(timeout=T)
        assert proc.returncode == 127
        assert "cannot run '/nonexistent/nucleus-trio-program'" in err.decode()
        assert "Traceback" not in err.decode()
    finally:
        _end(proc)


@pytest.mark.parametrize("args", [["--no-such-flag", "true"], [], ["-P", "true"]])
def test_run_command_usage_error_is_2(args: list[str]) -> None:
    proc = _run_command(args)
    try:
        _, err = proc.communicate(timeout=T)
        assert proc.returncode == 2
        assert "Traceback" not in err.decode()
        assert err.decode().startswith("nucleus-trio:")
    finally:
        _end(proc)


def test_run_command_forwards_sigterm_to_the_workload() -> None:
    # The orphan-to-be starts before the trap, so that it never inherits the
    # shell's handler (a SIGTERM between its fork and exec would be lost).
    script = 'sleep 60 & trap "echo got-term; exit 42" TERM; echo ready; wait'
    proc = _run_command(["--grace", "30", "--", "sh", "-c", script])
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], T)
        assert ready, "the workload never started"
        assert proc.stdout.readline() == b"ready\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=T)
        assert proc.returncode == 42, err.decode()
        assert out == b"got-term\n"
        # The orphaned `sleep 60` was ended by the shutdown's SIGTERM, not
        # after the 30 s grace.
        assert time.monotonic() - started < 15
    finally:
        _end(proc)
