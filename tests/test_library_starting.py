"""The library's Supervisor starting workloads: its status and return code,
the environment, directory, process group, descriptors and pipes, and the
spawn errors (with their ``exec_failed`` events).

Tests marked ``trio`` run under pytest-trio; the ``anyio`` ones are
parametrized over asyncio and trio. Every test bounds its time with
``fail_after`` (and pytest-timeout), and kills what it started by PID in a
``finally``, only while the PID is still its own child.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio

from nucleus_trio import ExitStatus, SpawnError, Supervisor, open_supervisor
from tests.support.library import BOTH, CORE_KEYS, Pipe, T, is_my_child


@pytest.mark.anyio
@BOTH
async def test_start_wait_returncode(anyio_backend: str, no_new_zombies: None) -> None:
    with anyio.fail_after(T):
        async with open_supervisor() as supervisor:
            process = await supervisor.start(["sh", "-c", "exit 3"])
            assert process.argv == ("sh", "-c", "exit 3")
            assert supervisor.processes[process.pid] is process
            status = await process.wait()
            assert status == ExitStatus(process.pid, code=3)
            assert process.status == status
            assert process.returncode == 3
            assert await process.wait() == status  # again: same answer

            sleeper = await supervisor.start(["sleep", "60"])
            assert (sleeper.returncode, sleeper.status) == (None, None)
            sleeper.terminate()
            assert (await sleeper.wait()).signal == signal.SIGTERM
            assert sleeper.returncode == -signal.SIGTERM
            # Reaped: nothing to do, as Popen and trio do; and never a stray
            # signal (the pidfd refuses it, see the PidFd tests).
            sleeper.kill()
            sleeper.terminate()
            sleeper.send_signal(signal.SIGUSR1, group=True)
            with pytest.raises((ProcessLookupError, ValueError)):
                sleeper.pidfd.send_signal(signal.SIGKILL)


@pytest.mark.trio
async def test_start_outside_the_block_is_refused() -> None:
    supervisor = Supervisor()
    with pytest.raises(RuntimeError):
        await supervisor.start(["true"])
    async with open_supervisor() as supervisor:
        with pytest.raises(ValueError):
            await supervisor.start([])
    with pytest.raises(RuntimeError):
        await supervisor.start(["true"])


@pytest.mark.trio
async def test_supervisor_run_with_nursery_start(no_new_zombies: None) -> None:
    with trio.fail_after(T):
        async with trio.open_nursery() as nursery:
            supervisor = await nursery.start(Supervisor(grace=0.5).run)
            assert isinstance(supervisor, Supervisor)
            done = await supervisor.start(["sh", "-c", "exit 12"])
            assert (await done.wait()).code == 12
            nursery.cancel_scope.cancel()
        assert not is_my_child(done.pid)


def _output_of(argv: list[str], **kwargs: Any) -> Callable[[Supervisor], Any]:
    async def run(supervisor: Supervisor) -> tuple[ExitStatus, str]:
        with Pipe() as out:
            process = await supervisor.start(argv, stdout=out.w, **kwargs)
            out.close_write()
            status = await process.wait()
            return status, out.read_all()

    return run


@pytest.mark.anyio
@BOTH
async def test_env_and_clean_env(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch, no_new_zombies: None
) -> None:
    monkeypatch.setenv("NT_INHERITED", "yes")
    script = 'echo "$NT_INHERITED|$NT_ADDED|$PATH|$HOME|$TERM"'
    with anyio.fail_after(T):
        async with open_supervisor() as supervisor:
            status, out = await _output_of(["sh", "-c", script], env={"NT_ADDED": "1"})(supervisor)
            assert status.code == 0
            inherited, added, path, _, _ = out.strip().split("|")
            assert (inherited, added, path) == ("yes", "1", os.environ["PATH"])

            status, out = await _output_of(
                ["/bin/sh", "-c", "env | sort"], env={"NT_ADDED": "2"}, clean_env=True
            )(supervisor)
            variables = dict(line.split("=", 1) for line in out.splitlines())
            # The shell adds PWD itself; everything else is the minimal base + env.
            variables.pop("PWD", None)
            assert variables == {
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM": "xterm",
                "HOME": "/",
                "NT_ADDED": "2",
            }


@pytest.mark.anyio
@BOTH
async def test_cwd(anyio_backend: str, tmp_path: Path, no_new_zombies: None) -> None:
    with anyio.fail_after(T):
        async with open_supervisor() as supervisor:
            _, out = await _output_of(["pwd"], cwd=tmp_path)(supervisor)
            assert out.strip() == str(tmp_path)
            _, out = await _output_of(["pwd"], cwd=str(tmp_path))(supervisor)
            assert out.strip() == str(tmp_path)


@pytest.mark.anyio
@BOTH
async def test_process_group(anyio_backend: str, no_new_zombies: None) -> None:
    with anyio.fail_after(T):
        async with open_supervisor(grace=0.5) as supervisor:
            own = await supervisor.start(["sleep", "60"])
            assert os.getpgid(own.pid) == own.pid
            shared = await supervisor.start(["sleep", "60"], process_group=False)
            assert os.getpgid(shared.pid) == os.getpgrp()
            shared.terminate()  # to the process alone, not to pytest's group
            assert (await shared.wait()).signal == signal.SIGTERM
            own.terminate()  # to its group
            assert (await own.wait()).signal == signal.SIGTERM


@pytest.mark.anyio
@BOTH
async def test_pass_fds(anyio_backend: str, no_new_zombies: None) -> None:
    with Pipe() as passed, Pipe() as other, anyio.fail_after(T):
        async with open_supervisor() as supervisor:
            # dash takes no descriptor above 9 in a redirection: go through /proc.
            script = (
                f"echo passed > /proc/self/fd/{passed.w};"
                f" echo other > /proc/self/fd/{other.w} || exit 5"
            )
            process = await supervisor.start(
                ["sh", "-c", script], pass_fds=[passed.w], stderr=subprocess.DEVNULL
            )
            passed.close_write()
            other.close_write()
            # The descriptor that was not passed is closed in the workload.
            assert (await process.wait()).code == 5
        assert passed.read_all() == "passed\n"
        assert other.read_all() == ""


@pytest.mark.anyio
@BOTH
async def test_stdin_and_stdout_pipes(anyio_backend: str, no_new_zombies: None) -> None:
    with Pipe() as stdin, Pipe() as stdout, anyio.fail_after(T):
        os.write(stdin.w, b"through the pipes\n")
        stdin.close_write()
        async with open_supervisor() as supervisor:
            process = await supervisor.start(["cat"], stdin=stdin.r, stdout=stdout.w)
            stdin.close()
            stdout.close_write()
            assert (await process.wait()).code == 0
        assert stdout.read_all() == "through the pipes\n"


@pytest.mark.anyio
@BOTH
async def test_spawn_errors(anyio_backend: str, tmp_path: Path, no_new_zombies: None) -> None:
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\nexit 0\n")
    not_executable.chmod(0o644)
    events: list[dict[str, Any]] = []
    with anyio.fail_after(T):
        async with open_supervisor(events=events.append) as supervisor:
            with pytest.raises(SpawnError) as missing:
                await supervisor.start(["/nonexistent/nucleus-trio-program"])
            assert missing.value.exit_code == 127
            with pytest.raises(SpawnError) as bare:
                await supervisor.start(["nucleus-trio-no-such-program"])
            assert bare.value.exit_code == 127
            with pytest.raises(SpawnError) as denied:
                await supervisor.start([str(not_executable)])
            assert denied.value.exit_code == 126
            with pytest.raises(SpawnError) as directory:
                await supervisor.start([str(tmp_path)])
            assert directory.value.exit_code == 126
            assert supervisor.processes == {}
    failed = [e for e in events if e["event_type"] == "exec_failed"]
    assert [e["program"] for e in failed] == [
        "/nonexistent/nucleus-trio-program",
        "nucleus-trio-no-such-program",
        str(not_executable),
        str(tmp_path),
    ]
    assert [e["exit_code"] for e in failed] == [127, 127, 126, 126]
    assert all(e.keys() >= CORE_KEYS and e["error"] for e in failed)


@pytest.mark.trio
async def test_exec_failed_event_is_an_error() -> None:
    events: list[dict[str, Any]] = []
    with trio.fail_after(T):
        async with open_supervisor(events=events.append) as supervisor:
            with pytest.raises(SpawnError):
                await supervisor.start(["/nonexistent/nucleus-trio-program"])
    [failed] = [e for e in events if e["event_type"] == "exec_failed"]
    assert failed["is_error"] is True
