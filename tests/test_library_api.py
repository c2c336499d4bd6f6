"""The library as trio's, anyio's and asyncio's process APIs behave where
they overlap (README, "Library"): spawn failures are the ``OSError``
subclasses ``subprocess`` raises, ``start()`` is a checkpoint, signalling an
exited process does nothing, ``PidFd.poll()`` answers "running" for any
running process, and the pytest plugin costs nothing until it is used."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from nucleus_trio import PidFd, SpawnError, open_supervisor
from tests.support.library import BOTH, cleanup

T = 30.0

pytestmark = pytest.mark.timeout(60)


@pytest.mark.anyio
@BOTH
async def test_a_missing_program_is_a_file_not_found_error(anyio_backend: str) -> None:
    with anyio.fail_after(T):
        async with open_supervisor() as sup:
            with pytest.raises(FileNotFoundError) as caught:
                await sup.start(["/no/such/program", "arg"])
    error = caught.value
    assert isinstance(error, SpawnError)  # code that catches SpawnError keeps working
    assert (error.errno, error.filename, error.exit_code) == (errno.ENOENT, "/no/such/program", 127)
    assert str(error) == "cannot run '/no/such/program': No such file or directory"
    assert sup.processes == {}


@pytest.mark.anyio
@BOTH
async def test_a_program_that_may_not_run_is_a_permission_error(
    anyio_backend: str, tmp_path: Path
) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    with anyio.fail_after(T):
        async with open_supervisor() as sup:
            with pytest.raises(PermissionError) as caught:
                await sup.start([str(script)])
    assert isinstance(caught.value, SpawnError)
    assert (caught.value.errno, caught.value.exit_code) == (errno.EACCES, 126)
    assert caught.value.filename == str(script)


@pytest.mark.anyio
@BOTH
async def test_a_missing_directory_is_named_not_blamed_on_the_program(
    anyio_backend: str, tmp_path: Path
) -> None:
    missing = tmp_path / "gone"
    records: list[dict[str, object]] = []
    with anyio.fail_after(T):
        async with open_supervisor(events=records.append) as sup:
            with pytest.raises(FileNotFoundError) as caught:
                await sup.start(["true"], cwd=missing)
    assert caught.value.filename == str(missing)
    assert str(missing) in str(caught.value)
    assert "directory" in str(caught.value)
    failed = [r for r in records if r["event_type"] == "exec_failed"]
    assert len(failed) == 1 and str(missing) in str(failed[0]["detail"])


@pytest.mark.anyio
@BOTH
async def test_start_in_a_cancelled_scope_starts_nothing(anyio_backend: str) -> None:
    with anyio.fail_after(T):
        async with open_supervisor() as sup:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await sup.start(["sleep", "60"])
            assert scope.cancelled_caught
            assert sup.processes == {}


@pytest.mark.anyio
@BOTH
async def test_a_fan_out_of_starts_lets_other_tasks_run(anyio_backend: str) -> None:
    turns = 0
    pids: list[int] = []

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    try:
        with anyio.fail_after(T):
            async with open_supervisor() as sup, anyio.create_task_group() as group:
                group.start_soon(ticker)
                await anyio.lowlevel.checkpoint()
                before = turns
                for _ in range(20):
                    pids.append((await sup.start(["true"])).pid)
                # Each start yields: the ticker ran between them.
                assert turns - before >= 10
                group.cancel_scope.cancel()
    finally:
        cleanup(pids)


@pytest.mark.anyio
@BOTH
async def test_signalling_an_exited_process_does_nothing(anyio_backend: str) -> None:
    with anyio.fail_after(T):
        async with open_supervisor() as sup:
            process = await sup.start(["sh", "-c", "exit 4"])
            assert (await process.wait()).code == 4
            process.send_signal(signal.SIGTERM)
            process.terminate()
            process.kill()
            assert process.returncode == 4


@pytest.mark.anyio
@BOTH
async def test_poll_of_a_running_process_that_is_not_ours(anyio_backend: str) -> None:
    """A grandchild: not this process's child, so waitid says ECHILD; while
    it runs, poll() answers None (running), not StatusLostError."""
    shell = subprocess.Popen(
        ["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, text=True
    )
    grandchild = 0
    try:
        assert shell.stdout is not None
        grandchild = int(shell.stdout.readline())
        with PidFd.open(grandchild) as pidfd:
            assert pidfd.poll() is None
            os.kill(grandchild, signal.SIGKILL)
            with anyio.fail_after(T):
                await pidfd.wait_exited()
    finally:
        if grandchild:
            try:
                os.kill(grandchild, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shell.kill()
        shell.wait(timeout=T)


def test_the_plugin_imports_neither_trio_nor_anyio() -> None:
    code = (
        "import sys, nucleus_trio.pytest_plugin\n"
        "print(','.join(m for m in ('trio', 'anyio') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=True
    )
    assert done.stdout.strip() == ""


# --- streams and the run helper ------------------------------------------------


@pytest.mark.anyio
@BOTH
async def test_stdout_pipe_gives_a_stream_that_reads_to_the_end(anyio_backend: str) -> None:
    """``head -c 200000 /dev/zero`` with ``stdout=PIPE``: more than a pipe
    holds, so it finishes only if someone reads."""
    with anyio.fail_after(T):
        async with open_supervisor() as sup:
            process = await sup.start(["head", "-c", "200000", "/dev/zero"], stdout=subprocess.PIPE)
            assert process.stdout is not None and process.stdin is None
            total = 0
            async for chunk in process.stdout:
                total += len(chunk)
            assert total == 200000
            assert (await process.wait()).code == 0


@pytest.mark.anyio
@BOTH
async def test_stdin_and_stdout_pipes_talk_to_cat(anyio_backend: str) -> None:
    with anyio.fail_after(T):
        async with open_supervisor() as sup:
            process = await sup.start(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.send_all(b"hello, pipe")
            await process.stdin.aclose()
            received = b""
            while chunk := await process.stdout.receive_some():
                received += chunk
            assert received == b"hello, pipe"
            assert (await process.wait()).code == 0


@pytest.mark.anyio
@BOTH
async def test_run_process_feeds_input_and_captures_output(anyio_backend: str) -> None:
    with anyio.fail_after(T):
        async with open_supervisor() as sup:
            result = await sup.run_process(
                ["sh", "-c", "tr a-z A-Z; echo oops >&2"], input=b"quiet", capture_output=True
            )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"QUIET", b"oops\n")
    assert result.status.code == 0


@pytest.mark.anyio
@BOTH
async def test_run_process_check_raises_called_process_error(anyio_backend: str) -> None:
    with anyio.fail_after(T):
        async with open_supervisor() as sup:
            with pytest.raises(subprocess.CalledProcessError) as caught:
                await sup.run_process(["sh", "-c", "echo out; exit 3"], capture_output=True)
            result = await sup.run_process(["sh", "-c", "exit 3"], check=False)
    assert (caught.value.returncode, caught.value.stdout) == (3, b"out\n")
    assert (result.returncode, result.status.code) == (3, 3)
    assert result.stdout is None  # not captured


@pytest.mark.anyio
@BOTH
async def test_a_cancelled_run_process_kills_and_reaps_its_process(anyio_backend: str) -> None:
    with anyio.fail_after(T):
        async with open_supervisor(grace=30) as sup:
            with anyio.move_on_after(0.3):
                await sup.run_process(["sleep", "60"])
            (process,) = sup.processes.values()
            # Killed and reaped before run_process gave way, not at the block's end.
            assert process.status is not None and process.status.signal == signal.SIGKILL


@pytest.mark.anyio
@BOTH
async def test_the_module_level_run_process(anyio_backend: str) -> None:
    from nucleus_trio import run_process

    with anyio.fail_after(T):
        result = await run_process(["echo", "hi"], capture_output=True)
    assert result.stdout == b"hi\n"
