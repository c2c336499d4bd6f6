"""The library's Supervisor events: every sink (callable, channel, stream,
path, text stream), the keys of each record, and a full or failing sink
never stopping supervision.

Tests marked ``trio`` run under pytest-trio; the ``anyio`` ones are
parametrized over asyncio and trio. Every test bounds its time with
``fail_after`` (and pytest-timeout), and kills what it started by PID in a
``finally``, only while the PID is still its own child.
"""

from __future__ import annotations

import io
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio

from nucleus_trio import Supervisor, open_supervisor
from tests.support.library import BOTH, CORE_KEYS, T

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _check_core(records: list[dict[str, Any]], pid: int, signalled: int) -> None:
    """The core keys of every record, and the events of one run."""
    for record in records:
        assert record.keys() >= CORE_KEYS, record
        assert TIMESTAMP.match(record["timestamp"]), record["timestamp"]
        assert record["container_id"] == "cid-1"
        assert record["container_name"] == "box"
        assert isinstance(record["detail"], str) and record["detail"]
        assert record["is_error"] is False
    execs = [r for r in records if r["event_type"] == "container_exec"]
    assert [(r["pid"], r["argv"]) for r in execs] == [(pid, ["sleep", "60"])]
    exits = [r for r in records if r["event_type"] == "workload_exited"]
    assert [(r["pid"], r["signal"], r["signo"]) for r in exits] == [
        (pid, signal.Signals(signalled).name, signalled)
    ]


async def _one_run(events: Any) -> int:
    async with open_supervisor(events=events, container_id="cid-1", container_name="box") as sup:
        process = await sup.start(["sleep", "60"])
        process.kill()
        await process.wait()
        assert sup.events_dropped == 0
    return process.pid


@pytest.mark.anyio
@BOTH
async def test_events_to_a_callable(anyio_backend: str, no_new_zombies: None) -> None:
    records: list[dict[str, Any]] = []
    with anyio.fail_after(T):
        pid = await _one_run(records.append)
    _check_core(records, pid, signal.SIGKILL)


@pytest.mark.trio
async def test_events_to_a_trio_memory_channel(no_new_zombies: None) -> None:
    send, receive = trio.open_memory_channel[dict[str, Any]](100)
    with trio.fail_after(T):
        pid = await _one_run(send)
    send.close()
    records = [record async for record in receive]
    _check_core(records, pid, signal.SIGKILL)


@pytest.mark.anyio
@BOTH
async def test_events_to_an_anyio_object_stream(anyio_backend: str, no_new_zombies: None) -> None:
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](100)
    with anyio.fail_after(T):
        pid = await _one_run(send)
    send.close()
    records = [record async for record in receive]
    _check_core(records, pid, signal.SIGKILL)


@pytest.mark.anyio
@BOTH
async def test_events_to_a_file_path(
    anyio_backend: str, tmp_path: Path, no_new_zombies: None
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"already": "there"}\n')  # appended to, not truncated
    with anyio.fail_after(T):
        pid = await _one_run(str(path))
        pid2 = await _one_run(path)  # an os.PathLike works as well
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"already": "there"}
    records = [json.loads(line) for line in lines[1:]]
    first = [r for r in records if r.get("pid") == pid]
    second = [r for r in records if r.get("pid") == pid2]
    assert len(first) + len(second) == len(records)
    _check_core(first, pid, signal.SIGKILL)
    _check_core(second, pid2, signal.SIGKILL)


@pytest.mark.anyio
@BOTH
async def test_events_to_a_text_stream(
    anyio_backend: str, tmp_path: Path, no_new_zombies: None
) -> None:
    stream = io.StringIO()
    with anyio.fail_after(T):
        pid = await _one_run(stream)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    _check_core(records, pid, signal.SIGKILL)
    with (tmp_path / "events.txt").open("w") as handle, anyio.fail_after(T):
        pid = await _one_run(handle)
    lines = (tmp_path / "events.txt").read_text().splitlines()
    _check_core([json.loads(line) for line in lines], pid, signal.SIGKILL)


@pytest.mark.trio
async def test_full_trio_channel_never_blocks_and_counts_drops(no_new_zombies: None) -> None:
    send, receive = trio.open_memory_channel[dict[str, Any]](1)  # nobody reads it
    started = time.monotonic()
    with trio.fail_after(T):
        async with open_supervisor(events=send) as supervisor:
            for code in range(5):
                process = await supervisor.start(["sh", "-c", f"exit {code}"])
                assert (await process.wait()).code == code
    # 5 container_exec + 5 workload_exited, one fits in the channel.
    assert supervisor.events_dropped == 9
    assert receive.receive_nowait()["event_type"] == "container_exec"
    assert time.monotonic() - started < T


@pytest.mark.anyio
@BOTH
async def test_full_object_stream_never_blocks(anyio_backend: str, no_new_zombies: None) -> None:
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](0)
    with anyio.fail_after(T):
        async with open_supervisor(events=send) as supervisor:
            process = await supervisor.start(["sh", "-c", "exit 1"])
            assert (await process.wait()).code == 1
    assert supervisor.events_dropped == 2
    receive.close()
    send.close()


@pytest.mark.anyio
@BOTH
async def test_failing_sinks_never_stop_supervision(
    anyio_backend: str, no_new_zombies: None
) -> None:
    def broken(record: dict[str, Any]) -> None:
        raise RuntimeError("sink is broken")

    with anyio.fail_after(T):
        async with open_supervisor(events=broken) as supervisor:
            process = await supervisor.start(["sh", "-c", "exit 2"])
            assert (await process.wait()).code == 2
        assert supervisor.events_dropped == 2
        async with open_supervisor(events="/dev/full") as supervisor:
            process = await supervisor.start(["sh", "-c", "exit 2"])
            assert (await process.wait()).code == 2
        assert supervisor.events_dropped == 2


def test_unknown_sink_is_refused() -> None:
    with pytest.raises(TypeError):
        Supervisor(events=42)
