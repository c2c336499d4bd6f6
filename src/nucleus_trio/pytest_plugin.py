"""pytest plugin: the ``process_supervisor`` and ``sandbox`` fixtures for
trio and anyio tests.

::

    @pytest.mark.trio
    async def test_worker(process_supervisor):
        worker = await process_supervisor.start(["my-worker", "--once"])
        assert (await worker.wait()).code == 0

The fixture yields a :class:`~nucleus_trio.Supervisor` (with orphan reaping,
and this process registered as child subreaper for the test, so the
workloads' own orphans come back to it). When the test ends, every process
it left behind (a workload still running, an orphan, a child nobody waited
for) is ended (SIGTERM, SIGKILL after a short grace) and reaped, and the test
fails with one line per process::

    processes outlived the test:
    pid 4242: my-worker --once (running)
    pid 4250: [sh] (zombie)
    pid 4251: my-daemon --forever (ignored SIGTERM)

``ignored SIGTERM`` is a process still there after SIGTERM and the grace,
which needed SIGKILL. Left alone: the processes there before the test, and
this interpreter's own helpers, multiprocessing's resource tracker and
forkserver, which serve the whole session (the forkserver's workers are
the test's: a worker left running is a leak).

The leaks fail the test itself (FAILED, not an ERROR at teardown), whichever
plugin runs it: pytest-trio tears the fixture down inside the test's call,
but anyio's plugin does so in the teardown phase, after the call's report
is out. So this plugin runs a test that uses the fixture through pytest's
own protocol with the reports held back, and adds the leaks to the call's
report once the teardown is over. Fixtures still tear down when and in the
order pytest says: a fixture built on this one may end its processes in
its own teardown. (If another plugin runs the protocol instead, the fixture
fails its teardown itself.)

Registered under the ``pytest11`` entry point as ``nucleus_trio``. Use it
from tests marked ``@pytest.mark.trio`` (pytest-trio) or
``@pytest.mark.anyio`` (anyio's plugin, on asyncio or trio).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

# pytest's own protocol (pytest-rerunfailures runs it the same way, its
# reports held back) and failure text: private modules, but pytest has
# imported them already, so they cost the plugin nothing.
from _pytest._code.code import ExceptionRepr
from _pytest.runner import runtestprotocol

from nucleus_trio.claims import ClaimsUnknown
from nucleus_trio.kernel import get_child_subreaper, set_child_subreaper
from nucleus_trio.proctree import (
    command_line,
    descendants,
    is_zombie,
    list_children,
    process_argv,
)
from nucleus_trio.reaper import reap_pid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from nucleus_trio.sandbox import Sandbox
    from nucleus_trio.supervisor import Supervisor

#: Grace of the fixture's own clean-up: a leak is already a failure.
CLEANUP_GRACE = 1.0

#: The first line of the failure; the leaks follow, one per line.
HEADING = "processes outlived the test"

#: How multiprocessing starts its helpers: ``python [FLAGS] -c CODE``, with
#: CODE starting thus (the same from Python 3.8 to 3.14).
HELPER_CODE = (
    "from multiprocessing.resource_tracker import main",
    "from multiprocessing.forkserver import main",
)

#: The leak lines the fixture found, waiting for the test's report.
_LEAKS = pytest.StashKey[list[str]]()
#: Set while this plugin runs the item's protocol (and so reports the leaks).
_REPORTS_LEAKS = pytest.StashKey[bool]()


@pytest.fixture
async def process_supervisor(request: pytest.FixtureRequest) -> AsyncIterator[Supervisor]:
    """A supervisor for the test; fails the test if a process or zombie outlives it."""
    # Imported here, not with the plugin: pytest loads the plugin in every
    # test session of an environment where nucleus-trio is installed, and
    # trio and anyio cost such a session about 250 ms at start.
    from nucleus_trio.supervisor import open_supervisor

    spared = descendants()
    with _subreaper():
        try:
            async with open_supervisor(grace=CLEANUP_GRACE, reap_orphans=True) as supervisor:
                # The children from before the test are someone else's: the
                # supervisor must neither reap nor end them.
                for pid in spared.intersection(list_children()):
                    supervisor.claim(pid)
                try:
                    yield supervisor
                finally:
                    # Also when the test failed (pytest-trio throws its
                    # cancellation in here): the shutdown is shielded.
                    spared |= _interpreter_helpers()
                    leaks = await _end_leftovers(supervisor, spared)
                    if leaks:
                        _report(request.node, leaks)
        finally:
            # A child someone claims but never waited for (a Popen's) stays a
            # zombie past the supervisor's reaping: no zombie outlives the test.
            for pid in set(list_children()) - spared:
                reap_pid(pid)




@pytest.fixture
async def sandbox(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., contextlib.AbstractAsyncContextManager[Sandbox]]]:
    """Run commands under test in sandboxes (README, "Sandboxes"):
    ``async with sandbox(argv, **options) as box`` takes
    :func:`~nucleus_trio.open_sandbox`'s arguments. The test fails with the
    init's own report when a sandbox's init had to end processes that its
    workload left behind, or when the sandbox had to be killed."""
    from nucleus_trio.sandbox import open_sandbox

    opened: list[Sandbox] = []

    @contextlib.asynccontextmanager
    async def open_one(argv: Sequence[str], **options: Any) -> AsyncIterator[Sandbox]:
        async with open_sandbox(argv, **options) as box:
            opened.append(box)
            yield box

    yield open_one
    report = [line for box in opened for line in _init_report(box)]
    if report:
        _report(request.node, report)


def _init_report(box: Sandbox) -> list[str]:
    """One line per event of the init's shutdown of leftovers, and one when
    the sandbox itself had to be killed."""
    from nucleus_trio import events

    # The init's events that mean it had to end processes the workload left.
    killing = (events.SHUTDOWN_TERMINATE, events.SHUTDOWN_KILL, events.SHUTDOWN_SURVIVOR)
    name = " ".join(box.records[0].get("container_name", "").split()) if box.records else ""
    where = f"sandbox {name} (init pid {box.pid})"
    lines = [
        f"{where}: {record['detail']}"
        for record in box.records
        if record.get("event_type") in killing
    ]
    if box.killed:
        lines.append(f"{where}: still there after its grace: SIGKILL ended its namespace")
    return lines


async def _end_leftovers(supervisor: Supervisor, spared: set[int]) -> list[str]:
    """End every descendant but ``spared``; return one line per process."""
    from nucleus_trio.shutdown import shutdown_leftovers

    # An orphan that has exited is the supervisor's to reap, not a leak, even
    # if the reaper had no turn yet.
    with contextlib.suppress(ClaimsUnknown):
        supervisor.reap_now()
    # The supervisor's own shutdown would end every unclaimed child: the
    # helpers started during the test must be spared by it too.
    for pid in spared.intersection(list_children()):
        supervisor.claim(pid)
    found: dict[int, tuple[str, bool]] = {}
    for pid in sorted(descendants() - spared):
        zombie = is_zombie(pid)
        workload = supervisor.processes.get(pid)
        if workload is not None and not workload.exited:
            if zombie:
                continue  # it has just exited: its watcher reaps it
            command = " ".join(workload.argv)
        else:
            command = command_line(pid)
        if command:  # else gone meanwhile
            found[pid] = (command, zombie)

    def live() -> set[int]:
        return {pid for pid in descendants() - spared if not is_zombie(pid)}

    # Not kill(-1) even as PID 1: the spared processes must live on.
    report = await shutdown_leftovers(CLEANUP_GRACE, find=live, kill_everything=False)
    killed = set(report.killed)
    lines = []
    for pid, (command, zombie) in found.items():
        state = "zombie" if zombie else "ignored SIGTERM" if pid in killed else "running"
        lines.append(f"pid {pid}: {_one_line(command)} ({state})")
    return lines


def _one_line(command: str) -> str:
    """``command`` with its newlines and other control characters escaped
    (``sh -c 'a\\nb'``): each leak keeps to one line of the failure."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode() for char in command
    )


def _interpreter_helpers() -> set[int]:
    """The children of this process that are multiprocessing's resource
    tracker or forkserver (a forkserver's workers are its children, not ours)."""
    found = set()
    for pid in list_children():
        argv = process_argv(pid)
        if "-c" in argv[:-1] and argv[argv.index("-c") + 1].startswith(HELPER_CODE):
            found.add(pid)
    return found


def _report(item: pytest.Item | pytest.Collector, leaks: list[str]) -> None:
    """Hand the leaks to the test's report, or fail the teardown with them
    when this plugin does not run the test's protocol."""
    if item.stash.get(_REPORTS_LEAKS, False):
        item.stash[_LEAKS] = leaks
    else:
        pytest.fail(_failure_text(leaks), pytrace=False)


def _failure_text(leaks: list[str]) -> str:
    return "\n".join([f"{HEADING}:", *leaks])


@contextlib.contextmanager
def _subreaper() -> Iterator[None]:
    """This process as child subreaper for the test, unless it was one already
    (or cannot tell): the orphans of the workloads come back to it."""
    try:
        was_subreaper = get_child_subreaper()
    except OSError:
        was_subreaper = True
    if not was_subreaper:
        set_child_subreaper(True)
    try:
        yield
    finally:
        if not was_subreaper:
            set_child_subreaper(False)


def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run a test that uses ``process_supervisor`` with pytest's protocol, its
    reports held back until its teardown is over, so that the leaks found
    there fail the test itself (see the module's doc)."""
    if not {"process_supervisor", "sandbox"} & set(getattr(item, "fixturenames", ())):
        return None
    hook = item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    item.stash[_REPORTS_LEAKS] = True
    item.stash[_LEAKS] = []
    try:
        reports = runtestprotocol(item, log=False, nextitem=nextitem)
    finally:
        # A re-run by another plugin's protocol reports for itself.
        del item.stash[_REPORTS_LEAKS]
    leaks = item.stash[_LEAKS]
    if leaks:
        _add_leaks(item, reports, leaks)
    for report in reports:
        hook.pytest_runtest_logreport(report=report)
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _add_leaks(item: pytest.Item, reports: list[pytest.TestReport], leaks: list[str]) -> None:
    """Make ``leaks`` a failure of the test's call (of its setup when that
    failed, so the test never ran), besides the test's own failure if any."""
    calls = [report for report in reports if report.when == "call"]
    failed = [report for report in reports if report.failed]
    report = calls[0] if calls else failed[0] if failed else reports[-1]
    if report.failed:
        if isinstance(report.longrepr, ExceptionRepr):
            report.longrepr.addsection(HEADING, "\n".join(leaks))
        else:
            report.longrepr = f"{report.longrepr}\n{_failure_text(leaks)}"
        return
    try:
        pytest.fail(_failure_text(leaks), pytrace=False)
    except pytest.fail.Exception:
        # As pytest shows a failure raised by the test (and with its message
        # in the short summary).
        report.longrepr = item.repr_failure(pytest.ExceptionInfo.from_current())
    report.outcome = "failed"
    # A test that skipped or was expected to fail left them all the same.
    with contextlib.suppress(AttributeError):
        del report.wasxfail
