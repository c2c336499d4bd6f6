"""A workload that ends before trio is up (README, "Benchmarks": ``INIT --
true``): with nothing left behind and no signal waiting, the init reports it
and leaves at once; otherwise the machinery runs as ever. Both paths keep
the exit code, the audit trail and the promise that no process or zombie
outlives the init; as PID 1 and as subreaper."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from tests.support.launch import start_init
from tests.support.procfs import TAG_VAR, state_of, tagged_processes
from tests.test_audit import parse_audit

pytestmark = pytest.mark.timeout(60)

EARLY = "leaving at once"


def run(mode: str, tmp_path: Path, script: str) -> tuple[int, str, list[dict[str, object]]]:
    """Run ``sh -c script`` under the init to its end: the exit code, stderr
    and the audit records. Fails if a process of the run outlives the init
    (checked before the harness's own clean-up kills what is left)."""
    audit = tmp_path / "audit.jsonl"
    tag = uuid.uuid4().hex
    args = ["-vv", "--audit", str(audit), "--", "sh", "-c", script]
    with start_init(args, pid1=mode == "pid1", env={**os.environ, TAG_VAR: tag}) as init:
        _, err = init.communicate(timeout=30)
        code = init.proc.returncode
        left = tagged_processes(tag)
    for pid in left:  # found by PID, killed by PID: a failure leaves nothing either
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes of the run outlived the init: {left}"
    return code, err, parse_audit(audit.read_text())


def types(records: list[dict[str, object]]) -> list[object]:
    return [record["event_type"] for record in records]


def test_nothing_left_behind_leaves_at_once(mode: str, tmp_path: Path) -> None:
    code, err, records = run(mode, tmp_path, "exit 7")
    assert code == 7, err
    assert EARLY in err
    assert types(records) == [
        "init_supervisor_started",
        "container_exec",
        "workload_exited",
        "container_stop",
    ]
    assert records[-1]["exit_code"] == 7
    assert records[-1]["workload"] == {"pid": records[1]["pid"], "exit_code": 7}
    assert "Traceback" not in err


def test_a_killed_workload_gives_128_plus_the_signal(mode: str, tmp_path: Path) -> None:
    code, err, records = run(mode, tmp_path, "kill -KILL $$")
    assert code == 137, err
    assert EARLY in err
    assert records[-1]["signal"] == "SIGKILL"


def test_a_leftover_brings_the_machinery_up(mode: str, tmp_path: Path) -> None:
    """The workload exits at once but leaves a sleeper: the shutdown ends it."""
    code, err, records = run(mode, tmp_path, "sleep 30 & exit 3")
    assert code == 3, err
    assert EARLY not in err
    (terminated,) = [r for r in records if r["event_type"] == "shutdown_terminate"]
    assert records[-1]["event_type"] == "container_stop"
    assert records[-1]["exit_code"] == 3
    if mode == "subreaper":  # as PID 1 the namespace, and its PIDs, are gone
        pids = terminated["pids"]
        assert isinstance(pids, list) and pids
        assert all(state_of(pid) is None for pid in pids)


def test_a_pending_signal_brings_the_machinery_up(mode: str, tmp_path: Path) -> None:
    """The workload signals the init and exits before trio is up: the signal
    is not lost in a hurry to leave; it is handled (forwarded to nothing)."""
    code, err, records = run(mode, tmp_path, "kill -USR1 $PPID; exit 4")
    assert code == 4, err
    assert EARLY not in err
    assert records[-1]["exit_code"] == 4
