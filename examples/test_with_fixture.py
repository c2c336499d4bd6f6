"""Tests that use nucleus-trio's pytest fixture (installed with the package).

``process_supervisor`` starts processes for the test and fails it, naming
them, if any process or zombie outlives it. Run: ``pytest examples/``.
"""

from __future__ import annotations

import signal

import pytest
import trio

from nucleus_trio import Supervisor


@pytest.mark.trio
async def test_worker_exit_code(process_supervisor: Supervisor) -> None:
    worker = await process_supervisor.start(["sh", "-c", "exit 3"])
    status = await worker.wait()
    assert status.code == 3


@pytest.mark.trio
async def test_stop_a_server(process_supervisor: Supervisor) -> None:
    server = await process_supervisor.start(["sleep", "60"])
    await trio.sleep(0.1)
    server.send_signal(signal.SIGTERM)
    status = await server.wait()
    assert status.signal == signal.SIGTERM


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_on_both_backends(process_supervisor: Supervisor, anyio_backend: str) -> None:
    worker = await process_supervisor.start(["true"])
    assert (await worker.wait()).code == 0
