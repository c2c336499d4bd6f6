"""pytest plugin: the ``process_supervisor`` fixture for trio and anyio tests.

::

    @pytest.mark.trio
    async def test_worker(process_supervisor):
        worker = await process_supervisor.start(["my-worker", "--once"])
        assert (await worker.wait()).code == 0

The fixture yields a :class:`~nucleus_trio.Supervisor` (with orphan reaping,
and this process registered as child subreaper for the test, so the
workloads' own orphans come back to it). When the test ends, every process it
started that still runs, and every orphan or zombie left behind, is named in
a test failure, then ended (SIGTERM, SIGKILL after a short grace) and reaped.

Registered under the ``pytest11`` entry point as ``nucleus_trio``. Use it
from tests marked ``@pytest.mark.trio`` (pytest-trio) or
``@pytest.mark.anyio`` (anyio's plugin, on asyncio or trio).
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import pytest

from nucleus_trio.kernel import PR_SET_CHILD_SUBREAPER, get_child_subreaper, prctl
from nucleus_trio.proctree import descendants, is_zombie, list_children
from nucleus_trio.reaper import reap_pid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nucleus_trio.supervisor import Supervisor

#: Grace of the fixture's own clean-up: a leak is already a failure.
CLEANUP_GRACE = 1.0


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmdline = ""
    state = "zombie" if is_zombie(pid) else "running"
    return f"pid {pid} ({state}) {cmdline or '?'}"


def _subreaper_state() -> int | None:
    try:
        return int(get_child_subreaper())
    except OSError:
        return None


@pytest.fixture
async def process_supervisor() -> AsyncIterator[Supervisor]:
    """A supervisor for the test; fails the test if a process or zombie outlives it."""
    # Imported here, not with the plugin: pytest loads the plugin in every
    # test session of an environment where nucleus-trio is installed, and
    # trio and anyio cost such a session about 250 ms at start.
    from nucleus_trio.supervisor import open_supervisor

    before = descendants()
    was_subreaper = _subreaper_state()
    if was_subreaper == 0:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    leaks: list[str] = []
    try:
        async with open_supervisor(grace=CLEANUP_GRACE, reap_orphans=True) as supervisor:
            yield supervisor
            # Still inside: name what is left before the supervisor ends it.
            for process in supervisor.processes.values():
                if process.status is None:
                    leaks.append(f"workload pid {process.pid} (running) {' '.join(process.argv)}")
            own = {p.pid for p in supervisor.processes.values()}
            for pid in sorted(descendants() - before - own):
                leaks.append(f"left behind: {_describe(pid)}")
        # The supervisor ended its workloads; end the other leftovers too.
        for pid in sorted(descendants() - before):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in set(list_children()) - before:
            reap_pid(pid)
    finally:
        if was_subreaper == 0:
            prctl(PR_SET_CHILD_SUBREAPER, 0)
    if leaks:
        pytest.fail("processes outlived the test:\n  " + "\n  ".join(leaks), pytrace=False)
