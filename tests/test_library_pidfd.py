"""The library's PidFd: waiting for a process (reaping it or not), signalling
it or its group, and never a reused PID.

Tests marked ``trio`` run under pytest-trio; the ``anyio`` ones are
parametrized over asyncio and trio. Every test bounds its time with
``fail_after`` (and pytest-timeout), and kills what it started by PID in a
``finally``, only while the PID is still its own child.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess

import anyio
import pytest
import trio

from nucleus_trio import ExitStatus, PidFd, StatusLostError
from tests.support.launch import PYTHON, UNSHARE, WORKLOADS, pidns_available
from tests.support.library import BOTH, Pipe, T, cleanup, is_my_child, spawn
from tests.support.procfs import state_of


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
