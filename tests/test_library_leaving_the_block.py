"""Leaving the library's Supervisor block: its workloads ended (SIGTERM, then
SIGKILL after the grace) and reaped, however the block is left (the end of
the body, an exception, a cancellation, a sibling task's error), and the
cancellation or error coming out as itself.

Tests marked ``trio`` run under pytest-trio; the ``anyio`` ones are
parametrized over asyncio and trio. Every test bounds its time with
``fail_after`` (and pytest-timeout), and kills what it started by PID in a
``finally``, only while the PID is still its own child.
"""

from __future__ import annotations

import signal
import time

import anyio
import pytest
import trio

from nucleus_trio import Process, Supervisor, open_supervisor
from tests.support.library import BOTH, Pipe, T, cleanup, is_my_child, leaves, zombie_children
from tests.support.procfs import state_of


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
