"""The library: PidFd, Supervisor / open_supervisor, run_command.

Tests marked ``trio`` run under pytest-trio; the ``anyio`` ones are
parametrized over asyncio and trio. Every test bounds its time with
``fail_after`` (and pytest-timeout), and kills what it started by PID in a
``finally``, only while the PID is still its own child.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trio.testing

from nucleus_trio import (
    ExitStatus,
    PidFd,
    Process,
    SpawnError,
    StatusLostError,
    Supervisor,
    open_supervisor,
)
from tests.library_support import (
    Pipe,
    cleanup,
    is_my_child,
    leaves,
    spawn,
    subreaper_restored,
    subreaper_state,
    zombie_children,
)
from tests.support import UNSHARE, WORKLOADS, children_of, pidns_available, state_of

BOTH = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
PYTHON = sys.executable
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CORE_KEYS = {"timestamp", "container_id", "container_name", "event_type", "detail", "is_error"}
#: Generous bounds: the machine is small and shared.
T = 60.0


@pytest.fixture
def no_new_zombies() -> Iterator[None]:
    """Fail if the test leaves a zombie child of this process behind."""
    before = zombie_children()
    yield
    left = zombie_children() - before
    cleanup(left)
    assert not left, f"zombies left behind: {sorted(left)}"


@pytest.fixture
def restore_subreaper() -> Iterator[None]:
    with subreaper_restored():
        yield


# -- PidFd --------------------------------------------------------------------


@pytest.mark.anyio
@BOTH
async def test_pidfd_wait_returns_the_exit_code(anyio_backend: str) -> None:
    pid = spawn(["sh", "-c", "exit 7"])
    try:
        with anyio.fail_after(T), PidFd.open(pid) as pidfd:
            status = await pidfd.wait()
            assert status == ExitStatus(pid, code=7)
            assert status.shell_code == 7
            assert pidfd.status == status
            assert pidfd.poll() == status  # the status is kept
        assert not is_my_child(pid)  # reaped: no zombie
    finally:
        cleanup([pid])


@pytest.mark.anyio
@BOTH
async def test_pidfd_killed_by_signal(anyio_backend: str) -> None:
    pid = spawn(["sleep", "60"])
    try:
        with anyio.fail_after(T), PidFd.open(pid) as pidfd:
            assert pidfd.poll() is None
            pidfd.send_signal(signal.SIGTERM)
            status = await pidfd.wait()
            assert status.signal == signal.SIGTERM
            assert status.code is None
            assert status.shell_code == 128 + signal.SIGTERM
            assert status.describe() == "killed by SIGTERM"
    finally:
        cleanup([pid])


@pytest.mark.anyio
@BOTH
async def test_pidfd_send_signal_after_reap_raises(anyio_backend: str) -> None:
    pid = spawn(["sh", "-c", "exit 3"])
    try:
        with anyio.fail_after(T), PidFd.open(pid) as pidfd:
            await pidfd.wait()
            with pytest.raises(ProcessLookupError):
                pidfd.send_signal(signal.SIGTERM)
            with pytest.raises(ProcessLookupError):
                pidfd.send_signal(signal.SIGTERM, group=True)
    finally:
        cleanup([pid])


@pytest.mark.anyio
@BOTH
async def test_pidfd_refuses_a_process_reaped_by_someone_else(anyio_backend: str) -> None:
    """The kernel's answer, not the wrapper's bookkeeping: ESRCH once reaped."""
    pid = spawn(["sleep", "60"])
    try:
        with anyio.fail_after(T), PidFd.open(pid) as pidfd:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            with pytest.raises(ProcessLookupError):
                pidfd.send_signal(signal.SIGTERM)
    finally:
        cleanup([pid])


@pytest.mark.skipif(not pidns_available(), reason="needs root and unshare --pid")
def test_pidfd_never_signals_a_reused_pid() -> None:
    """In a fresh PID namespace, force a new process onto the old PID."""
    proc = subprocess.Popen(
        [*UNSHARE, PYTHON, str(WORKLOADS / "lib_pid_reuse.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=T)
        assert proc.returncode == 0, err.decode()
        results = json.loads(out)
        for name in ("waitpid", "pidfd"):
            assert results[name] == {
                "reused": True,
                "raised": "ProcessLookupError",
                "second_alive": True,
            }, name
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=T)


@pytest.mark.anyio
@BOTH
async def test_pidfd_group_signal_reaches_a_grandchild(anyio_backend: str) -> None:
    reader = Pipe()
    pid = spawn(["sh", "-c", "sleep 60 & echo $!; wait"], setpgroup=True, stdout=reader.w)
    reader.close_write()
    grandchild = None
    try:
        with anyio.fail_after(T), PidFd.open(pid) as pidfd:
            grandchild = int(await reader.readline())
            assert os.getpgid(grandchild) == pid
            with PidFd.open(grandchild) as grand:
                pidfd.send_signal(signal.SIGTERM, group=True)
                # A non-child's exit can be awaited (not reaped) too.
                await grand.wait_exited()
                status = await pidfd.wait()
            assert status.signal == signal.SIGTERM
    finally:
        reader.close()
        cleanup([pid])
        if grandchild is not None:
            cleanup([grandchild])


@pytest.mark.anyio
@BOTH
async def test_pidfd_single_signal_spares_the_group(anyio_backend: str) -> None:
    reader = Pipe()
    pid = spawn(["sh", "-c", "sleep 60 & echo $!; wait"], setpgroup=True, stdout=reader.w)
    reader.close_write()
    grandchild = None
    try:
        with anyio.fail_after(T), PidFd.open(pid) as pidfd:
            grandchild = int(await reader.readline())
            with PidFd.open(grandchild) as grand:
                pidfd.send_signal(signal.SIGTERM)
                assert (await pidfd.wait()).signal == signal.SIGTERM
                # The grandchild still runs: its pidfd is not readable.
                assert select.select([grand.fileno()], [], [], 0)[0] == []
                assert state_of(grandchild) not in (None, "Z")
                grand.send_signal(signal.SIGKILL)  # a pidfd signals a non-child too
                await grand.wait_exited()
    finally:
        reader.close()
        cleanup([pid])
        if grandchild is not None:
            cleanup([grandchild])


@pytest.mark.anyio
@BOTH
async def test_pidfd_wait_exited_does_not_reap(anyio_backend: str) -> None:
    pid = spawn(["sh", "-c", "exit 4"])
    try:
        with anyio.fail_after(T), PidFd.open(pid) as pidfd:
            await pidfd.wait_exited()
            assert state_of(pid) == "Z"  # exited, still there to be reaped
            assert (await pidfd.wait()).code == 4
            await pidfd.wait_exited()  # returns at once after the reap
    finally:
        cleanup([pid])


@pytest.mark.anyio
@BOTH
async def test_pidfd_close_wakes_the_waiter(anyio_backend: str) -> None:
    pid = spawn(["sleep", "60"])
    pidfd = PidFd.open(pid)
    woken: list[BaseException] = []
    try:
        with anyio.fail_after(T):

            async def waiter() -> None:
                try:
                    await pidfd.wait()
                except Exception as exc:
                    woken.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                pidfd.close()
            assert len(woken) == 1
            # The same error on both backends (each has its own ClosedResourceError).
            assert type(woken[0]) is ValueError, repr(woken[0])
            assert str(woken[0]) == "pidfd is closed"
            # Invalidated: no descriptor, no waiting, no signalling.
            assert pidfd.closed
            assert pidfd.fileno() == -1
            with pytest.raises(ValueError):
                pidfd.poll()
            with pytest.raises(ValueError):
                await pidfd.wait()
            with pytest.raises(ProcessLookupError):
                pidfd.send_signal(signal.SIGTERM)
            pidfd.close()  # twice is fine
            assert state_of(pid) not in (None, "Z")  # nothing was sent to it
    finally:
        pidfd.close()
        cleanup([pid])


@pytest.mark.trio
async def test_pidfd_wait_exited_after_close_does_not_claim_an_exit() -> None:
    pid = spawn(["sleep", "60"])
    pidfd = PidFd.open(pid)
    try:
        pidfd.close()
        with trio.fail_after(T), pytest.raises(ValueError):
            await pidfd.wait_exited()
    finally:
        cleanup([pid])


@pytest.mark.anyio
@BOTH
async def test_pidfd_status_lost_when_someone_else_reaped(anyio_backend: str) -> None:
    pid = spawn(["sh", "-c", "exit 9"])
    try:
        with anyio.fail_after(T), PidFd.open(pid) as pidfd:
            _, wait_status = os.waitpid(pid, 0)  # someone else takes it
            assert os.waitstatus_to_exitcode(wait_status) == 9
            with pytest.raises(StatusLostError):
                await pidfd.wait()
            with pytest.raises(StatusLostError):
                pidfd.poll()
    finally:
        cleanup([pid])


def test_pidfd_open_of_a_gone_pid_raises() -> None:
    pid = spawn(["true"])
    os.waitpid(pid, 0)
    with pytest.raises(ProcessLookupError):
        PidFd.open(pid)


# -- Supervisor: starting -------------------------------------------------------


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


# -- Supervisor: events -----------------------------------------------------------


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


# -- Supervisor: leaving the block ----------------------------------------------------


def _assert_gone(processes: list[Process]) -> None:
    for process in processes:
        assert process.status is not None, f"{process}: never reaped by the supervisor"
        assert not is_my_child(process.pid), f"{process} is still a child ({state_of(process.pid)})"


STUBBORN = 'trap "" TERM; echo ready; exec sleep 60'


@pytest.mark.anyio
@BOTH
async def test_leaving_ends_a_workload_that_exits_on_sigterm_quickly(
    anyio_backend: str, no_new_zombies: None
) -> None:
    processes: list[Process] = []
    try:
        with anyio.fail_after(T):
            async with open_supervisor(grace=30) as supervisor:
                processes.append(await supervisor.start(["sleep", "60"]))
                processes.append(await supervisor.start(["sleep", "60"], process_group=False))
                left_at = time.monotonic()
            ended = time.monotonic() - left_at
        _assert_gone(processes)
        assert [p.returncode for p in processes] == [-signal.SIGTERM] * 2
        assert ended < 10, f"waited {ended:.2f}s: the grace must end when they are gone"
    finally:
        cleanup(p.pid for p in processes)


@pytest.mark.anyio
@BOTH
async def test_leaving_kills_a_workload_that_ignores_sigterm_after_grace(
    anyio_backend: str, no_new_zombies: None
) -> None:
    processes: list[Process] = []
    reader = Pipe()
    try:
        with anyio.fail_after(T):
            async with open_supervisor(grace=0.5) as supervisor:
                processes.append(await supervisor.start(["sh", "-c", STUBBORN], stdout=reader.w))
                processes.append(await supervisor.start(["sleep", "60"]))
                reader.close_write()
                assert await reader.readline() == "ready"
                left_at = time.monotonic()
            ended = time.monotonic() - left_at
        _assert_gone(processes)
        assert [p.returncode for p in processes] == [-signal.SIGKILL, -signal.SIGTERM]
        assert 0.5 <= ended < 10, ended
    finally:
        reader.close()
        cleanup(p.pid for p in processes)


@pytest.mark.anyio
@BOTH
async def test_cancel_scope_cancel_propagates(anyio_backend: str) -> None:
    processes: list[Process] = []
    after_block = False
    try:
        with anyio.fail_after(T):
            with anyio.CancelScope() as scope:
                async with open_supervisor(grace=0.5) as supervisor:
                    processes.append(await supervisor.start(["sleep", "60"]))
                    scope.cancel()
                    await anyio.sleep_forever()
                after_block = True  # not reached: the cancellation goes on
            assert scope.cancelled_caught
            assert not after_block
    finally:
        cleanup(p.pid for p in processes)


@pytest.mark.anyio
@BOTH
async def test_move_on_after_is_not_swallowed(anyio_backend: str) -> None:
    processes: list[Process] = []
    reached: list[str] = []
    try:
        with anyio.fail_after(T):
            with anyio.move_on_after(1.0) as scope:
                async with open_supervisor(grace=0.5) as supervisor:
                    processes.append(await supervisor.start(["sleep", "60"]))
                    await anyio.sleep_forever()
                reached.append("after the block, inside the scope")
            reached.append("after the scope")
        assert scope.cancelled_caught
        assert reached == ["after the scope"]
    finally:
        cleanup(p.pid for p in processes)


@pytest.mark.trio
async def test_trio_cancelled_propagates_through_the_block() -> None:
    """With trio's own scopes: what leaves the block is trio's Cancelled."""
    processes: list[Process] = []
    seen: list[BaseException] = []
    try:
        with trio.fail_after(T):
            with trio.move_on_after(1.0) as scope:
                try:
                    async with open_supervisor(grace=0.5) as supervisor:
                        processes.append(await supervisor.start(["sleep", "60"]))
                        await trio.sleep_forever()
                except BaseException as exc:
                    seen.append(exc)
                    raise
            assert scope.cancelled_caught
            assert [type(e) for e in seen] == [trio.Cancelled]
    finally:
        cleanup(p.pid for p in processes)


class Boom(Exception):
    pass


@pytest.mark.anyio
@BOTH
async def test_body_exception_comes_out_as_itself(anyio_backend: str, no_new_zombies: None) -> None:
    processes: list[Process] = []
    reader = Pipe()
    try:
        with anyio.fail_after(T):
            with pytest.raises(Boom) as info:
                async with open_supervisor(grace=0.5) as supervisor:
                    processes.append(await supervisor.start(["sleep", "60"]))
                    processes.append(
                        await supervisor.start(["sh", "-c", STUBBORN], stdout=reader.w)
                    )
                    reader.close_write()
                    assert await reader.readline() == "ready"
                    raise Boom("from the body")
            assert type(info.value) is Boom
            assert str(info.value) == "from the body"
        # The workloads were ended on the way out, as on a normal exit.
        _assert_gone(processes)
        assert [p.returncode for p in processes] == [-signal.SIGTERM, -signal.SIGKILL]
    finally:
        reader.close()
        cleanup(p.pid for p in processes)


@pytest.mark.anyio
@BOTH
async def test_child_task_error_is_not_hidden(anyio_backend: str) -> None:
    """A sibling task's error cancels the block; it comes out of the task group."""
    processes: list[Process] = []

    async def failing() -> None:
        raise Boom("from a child task")

    try:
        with anyio.fail_after(T):
            with pytest.raises(BaseExceptionGroup) as info:
                async with (
                    anyio.create_task_group() as tg,
                    open_supervisor(grace=0.5) as supervisor,
                ):
                    processes.append(await supervisor.start(["sleep", "60"]))
                    tg.start_soon(failing)
                    await anyio.sleep_forever()
            found = leaves(info.value)
            assert [type(e) for e in found] == [Boom], found
    finally:
        cleanup(p.pid for p in processes)


@pytest.mark.anyio
@BOTH
async def test_supervisor_task_error_is_not_hidden(anyio_backend: str) -> None:
    """An error in one of the supervisor's own tasks (forwarding a signal that
    cannot be caught) ends the block with that error."""
    processes: list[Process] = []
    try:
        with anyio.fail_after(T):
            caught: list[BaseException] = []
            try:
                async with open_supervisor(grace=0.5) as supervisor:
                    processes.append(await supervisor.start(["sleep", "60"]))
                    supervisor.forward_signals(processes[0], [signal.SIGKILL])
                    await anyio.sleep_forever()
            except BaseException as exc:
                caught.append(exc)
            assert len(caught) == 1, "the error was swallowed"
            found = leaves(caught[0])
            assert len(found) == 1
            assert isinstance(found[0], (OSError, RuntimeError, ValueError)), found
    finally:
        cleanup(p.pid for p in processes)


async def _cancelled_block(how: str, processes: list[Process], reader: Pipe) -> None:
    """Start a quick and a stubborn workload, then end the block by ``how``."""

    async def body(supervisor: Supervisor) -> None:
        processes.append(await supervisor.start(["sleep", "60"]))
        processes.append(await supervisor.start(["sh", "-c", STUBBORN], stdout=reader.w))
        reader.close_write()
        assert await reader.readline() == "ready"

    if how == "cancel":
        with anyio.CancelScope() as scope:
            async with open_supervisor(grace=0.5) as supervisor:
                await body(supervisor)
                scope.cancel()
                await anyio.sleep_forever()
    elif how == "move_on_after":
        with anyio.move_on_after(5):
            async with open_supervisor(grace=0.5) as supervisor:
                await body(supervisor)
                await processes[0].wait()  # never: the deadline ends the block
    elif how == "sibling_error":

        async def failing() -> None:
            raise Boom

        with pytest.raises(BaseExceptionGroup):
            async with (
                anyio.create_task_group() as tg,
                open_supervisor(grace=0.5) as supervisor,
            ):
                await body(supervisor)
                tg.start_soon(failing)
                await anyio.sleep_forever()
    else:
        assert how == "task_group_start"
        async with anyio.create_task_group() as tg:
            supervisor = await tg.start(Supervisor(grace=0.5).run)
            await body(supervisor)
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("how", ["cancel", "move_on_after", "sibling_error", "task_group_start"])
@pytest.mark.anyio
@BOTH
async def test_cancelling_ends_and_reaps_the_workloads(anyio_backend: str, how: str) -> None:
    """The spec: cancelling the nursery ends the workloads (SIGTERM, SIGKILL
    after the grace) and leaves no zombie."""
    processes: list[Process] = []
    reader = Pipe()
    zombies_before = zombie_children()
    try:
        with anyio.fail_after(T):
            await _cancelled_block(how, processes, reader)
        assert len(processes) == 2
        _assert_gone(processes)
        assert [p.returncode for p in processes] == [-signal.SIGTERM, -signal.SIGKILL]
        assert zombie_children() - zombies_before == set()
    finally:
        reader.close()
        cleanup(p.pid for p in processes)


# -- Supervisor: forwarding signals ---------------------------------------------------


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


# -- Supervisor: orphans ----------------------------------------------------------------


@pytest.mark.anyio
@BOTH
async def test_orphans_are_reaped(
    anyio_backend: str, restore_subreaper: None, no_new_zombies: None
) -> None:
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](1000)
    gate = Pipe()
    out = Pipe()
    orphans: dict[int, int] = {}
    try:
        with anyio.fail_after(T):
            async with open_supervisor(reap_orphans=True, subreaper=True, events=send) as sup:
                assert subreaper_state() == 1
                # Each grandchild waits until the gate closes, so that it exits
                # as an orphan whatever the scheduling.
                # (A background job's stdin is /dev/null: the gate goes through fd 3.)
                script = "; ".join(
                    f"(read x <&3; exit {c}) >/dev/null & echo $!" for c in (5, 6, 7)
                )
                middle = await sup.start(
                    ["sh", "-c", f"exec 3<&0; {script}; exit 0"],
                    stdin=gate.r,
                    stdout=out.w,
                )
                out.close_write()
                assert (await middle.wait()).code == 0
                pids = [int(await out.readline()) for _ in range(3)]
                orphans = dict(zip(pids, (5, 6, 7), strict=True))
                for pid in pids:
                    assert is_my_child(pid)  # re-parented to us, the subreaper
                gate.close()  # the orphans exit now
                seen: set[int] = set()
                async for record in receive:
                    if record["event_type"] == "zombie_reaped":
                        assert record["is_error"] is False
                        assert orphans[record["pid"]] == record["exit_code"]
                        seen.add(record["pid"])
                        if seen == set(orphans):
                            break
                assert {s.pid: s.code for s in sup.reaped_orphans} == orphans
        for pid in orphans:
            assert not is_my_child(pid)
    finally:
        gate.close()
        out.close()
        cleanup(orphans)


@pytest.mark.trio
async def test_claimed_children_are_left_to_their_owner(
    restore_subreaper: None, no_new_zombies: None
) -> None:
    """A plain fork/posix_spawn child, waited for with waitpid later, is safe
    once claimed; reap_now takes only the unclaimed ones."""
    mine = spawn(["sh", "-c", "exit 21"])
    stray = spawn(["sh", "-c", "exit 22"])
    try:
        with trio.fail_after(T):
            async with open_supervisor(reap_orphans=True) as supervisor:
                supervisor.claim(mine)
                with PidFd.open(mine) as watch_mine, PidFd.open(stray) as watch_stray:
                    await watch_mine.wait_exited()
                    await watch_stray.wait_exited()
                # Both are zombies now; only the stray one is the reaper's.
                supervisor.reap_now()
                assert [s.pid for s in supervisor.reaped_orphans] == [stray]
                assert supervisor.reaped_orphans[0].code == 22
                assert state_of(mine) == "Z"
                _, wait_status = os.waitpid(mine, 0)
                assert os.waitstatus_to_exitcode(wait_status) == 21
                supervisor.unclaim(mine)
    finally:
        cleanup([mine, stray])


@pytest.mark.trio
async def test_subreaper_is_undone_after_the_block(restore_subreaper: None) -> None:
    from nucleus_trio.kernel import PR_SET_CHILD_SUBREAPER, prctl

    prctl(PR_SET_CHILD_SUBREAPER, 0)
    with trio.fail_after(T):
        async with open_supervisor(reap_orphans=True, subreaper=True):
            assert subreaper_state() == 1
    assert subreaper_state() == 0


# -- run_command ----------------------------------------------------------------------


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
