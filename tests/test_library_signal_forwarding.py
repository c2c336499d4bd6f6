"""The library's Supervisor forwarding the signals this process receives to
a workload (its group, or the process alone), with its events.

Tests marked ``trio`` run under pytest-trio; the ``anyio`` ones are
parametrized over asyncio and trio. Every test bounds its time with
``fail_after`` (and pytest-timeout), and kills what it started by PID in a
``finally``, only while the PID is still its own child.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest
import trio
import trio.testing

from nucleus_trio import Process, open_supervisor
from tests.support.launch import PYTHON, WORKLOADS
from tests.support.library import BOTH, Pipe, T, cleanup


@pytest.mark.anyio
@BOTH
async def test_forward_signals(anyio_backend: str, no_new_zombies: None) -> None:
    signals: list[int] = [signal.SIGUSR1, signal.SIGUSR2]
    if anyio_backend == "trio":
        signals.append(signal.SIGRTMIN + 2)  # realtime: trio's receiver only

    def harmless(signo: int, frame: object) -> None:
        pass

    # Nothing sent to pytest below may ever kill it: a handler of our own
    # catches any signal that arrives when no receiver is installed.
    previous = {s: signal.signal(s, harmless) for s in signals}
    records: list[dict[str, Any]] = []
    processes: list[Process] = []
    reader = Pipe()
    try:
        with anyio.fail_after(T):
            async with open_supervisor(grace=0.5, events=records.append) as supervisor:
                process = await supervisor.start(
                    [PYTHON, str(WORKLOADS / "print_signals.py"), str(int(signal.SIGTERM))],
                    stdout=reader.w,
                )
                processes.append(process)
                reader.close_write()
                assert await reader.readline() == f"ready {process.pid}"
                supervisor.forward_signals(process, signals)
                await anyio.wait_all_tasks_blocked()
                for signo in signals:
                    assert signal.getsignal(signo) is not harmless, "receiver not installed"
                for signo in signals:
                    os.kill(os.getpid(), signo)
                    assert int(await reader.readline()) == signo
                process.terminate()
                assert (await process.wait()).code == 100 + signal.SIGTERM
        forwarded = [r for r in records if r["event_type"] == "signal_forwarded"]
        names = ["SIGUSR1", "SIGUSR2", "SIGRTMIN+2"][: len(signals)]
        assert [(r["signal"], r["signo"], r["target"]) for r in forwarded] == [
            (name, int(signo), -process.pid) for name, signo in zip(names, signals, strict=True)
        ]
    finally:
        reader.close()
        cleanup(p.pid for p in processes)
        for signo, handler in previous.items():
            signal.signal(signo, handler)


@pytest.mark.trio
async def test_forward_signals_to_the_process_alone(no_new_zombies: None) -> None:
    def harmless(signo: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGUSR1, harmless)
    records: list[dict[str, Any]] = []
    processes: list[Process] = []
    reader = Pipe()
    try:
        with trio.fail_after(T):
            async with open_supervisor(grace=0.5, events=records.append) as supervisor:
                process = await supervisor.start(
                    [PYTHON, str(WORKLOADS / "print_signals.py"), str(int(signal.SIGUSR1))],
                    stdout=reader.w,
                )
                processes.append(process)
                reader.close_write()
                assert await reader.readline() == f"ready {process.pid}"
                supervisor.forward_signals(process, [signal.SIGUSR1], group=False)
                await trio.testing.wait_all_tasks_blocked()
                os.kill(os.getpid(), signal.SIGUSR1)
                assert (await process.wait()).code == 100 + signal.SIGUSR1
                # The forwarding task ends with the process: our handler is back.
                await trio.testing.wait_all_tasks_blocked()
                assert signal.getsignal(signal.SIGUSR1) is harmless
        assert [r["target"] for r in records if r["event_type"] == "signal_forwarded"] == [
            process.pid
        ]
    finally:
        reader.close()
        cleanup(p.pid for p in processes)
        signal.signal(signal.SIGUSR1, previous)
