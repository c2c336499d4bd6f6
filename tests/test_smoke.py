"""The init runs a workload and returns its code, as PID 1 and as subreaper."""

from __future__ import annotations

import signal

from tests.support.launch import run_init, start_init, workload


def test_exit_code_passes_through(mode: str) -> None:
    code, out, _ = run_init(["sh", "-c", "echo hello; exit 3"], pid1=mode == "pid1")
    assert code == 3
    assert out == "hello\n"


def test_signal_reaches_workload(mode: str) -> None:
    with start_init(workload("print_signals.py", "15"), pid1=mode == "pid1") as run:
        assert run.readline().startswith("ready")
        run.send(signal.SIGUSR1)
        assert run.readline() == f"{int(signal.SIGUSR1)}\n"
        run.send(signal.SIGTERM)
        assert run.readline() == "15\n"
        assert run.wait(10) == 115
