"""The library's Supervisor as a reaper of orphans: orphans reaped (with their
events), claimed children left to their owner, the subreaper flag undone
after the block.

Tests marked ``trio`` run under pytest-trio; the ``anyio`` ones are
parametrized over asyncio and trio. Every test bounds its time with
``fail_after`` (and pytest-timeout), and kills what it started by PID in a
``finally``, only while the PID is still its own child.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import trio

from nucleus_trio import PidFd, open_supervisor
from tests.support.library import (
    BOTH,
    Pipe,
    T,
    cleanup,
    is_my_child,
    spawn,
    subreaper_restored,
    subreaper_state,
)
from tests.support.procfs import state_of


@pytest.fixture
def restore_subreaper() -> Iterator[None]:
    with subreaper_restored():
        yield


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
