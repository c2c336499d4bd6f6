"""The pytest plugin: ``process_supervisor``, run in a separate pytest.

Each inner run is a ``pytester.runpytest_subprocess``, so its signal handling
and its subreaper registration stay out of this process, and it is bounded
in time. Inner tests write the PIDs of what they leave behind to files; after
the run no such process may survive (checked by PID and command line).
"""

from __future__ import annotations

import os
import re
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.library import cleanup, cmdline

pytest_plugins = ["pytester"]

TIMEOUT = 120.0

#: What the inner files share: recording PIDs, and a workload left running.
COMMON = """
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from multiprocessing import forkserver, get_context, resource_tracker
from pathlib import Path

import anyio
import pytest
import trio

from nucleus_trio import Process, Supervisor
from nucleus_trio.proctree import is_zombie, list_children

PIDS = Path({pids!r})
#: Write ends of the leaked workloads' stdin, kept open so that they run on.
KEEP: list[int] = []
KEEP_POPEN: list[subprocess.Popen[bytes]] = []


def record(name: str, pid: int) -> None:
    (PIDS / name).write_text(str(pid))


async def start_and_leak(supervisor: Supervisor, argv: list[str], tag: str) -> Process:
    # sed echoes a line back once it runs: by then it has been exec'd, so its
    # command line is in /proc (right after start it can still be empty).
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    worker = await supervisor.start(argv, stdin=stdin_r, stdout=stdout_w)
    os.close(stdin_r)
    os.close(stdout_w)
    KEEP.append(stdin_w)
    os.write(stdin_w, b"ping\\n")
    with anyio.fail_after(30):
        await anyio.wait_readable(stdout_r)
    assert os.read(stdout_r, 100) == (tag + ":ping\\n").encode()
    os.close(stdout_r)
    return worker
"""

#: One test that leaves a workload running, one that ignores SIGTERM, a
#: zombie and a forkserver worker behind, and starts multiprocessing's
#: helpers; then a test that finds the helpers alive and still in use.
INNER_LEAKS = """
{marks}
async def test_leaks(process_supervisor: Supervisor{extra}) -> None:
    running = await start_and_leak(process_supervisor, {running!r}, "{tag}-running")
    record("running", running.pid)
    stubborn = await start_and_leak(process_supervisor, {stubborn!r}, "{tag}-stubborn")
    record("stubborn", stubborn.pid)
    # A Popen that is never waited for: the reaper must leave its child to it
    # (a claim), so the exited child stays a zombie past the test.
    popen = subprocess.Popen(["sh", "-c", "exit 0"])
    KEEP_POPEN.append(popen)
    os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    record("zombie", popen.pid)
    # Starts the resource tracker and the forkserver (children of this
    # process), and a worker (the forkserver's child) that runs on.
    worker = get_context("forkserver").Process(target=time.sleep, args=(600,))
    worker.start()
    record("worker", worker.pid or 0)
    record("forkserver", forkserver._forkserver._forkserver_pid or 0)
    record("tracker", resource_tracker._resource_tracker._pid or 0)


def test_helpers_live_on() -> None:
    for name in ("forkserver", "tracker"):
        pid = int((PIDS / name).read_text())
        assert pid in list_children() and not is_zombie(pid), name
    # Neither was ended: multiprocessing finds each alive, and starts no other.
    forkserver.ensure_running()
    resource_tracker.ensure_running()
    assert forkserver._forkserver._forkserver_pid == int((PIDS / "forkserver").read_text())
    assert resource_tracker._resource_tracker._pid == int((PIDS / "tracker").read_text())
"""

#: How each runner marks the inner test.
RUNNERS = {
    "trio": ("@pytest.mark.trio", ""),
    "anyio-trio": (
        '@pytest.mark.anyio\n@pytest.mark.parametrize("anyio_backend", ["trio"])',
        ", anyio_backend: str",
    ),
    "anyio-asyncio": (
        '@pytest.mark.anyio\n@pytest.mark.parametrize("anyio_backend", ["asyncio"])',
        ", anyio_backend: str",
    ),
}

#: A leak line of the failure.
LEAK_LINE = re.compile(r"pid (\d+): (.+) \((running|zombie|ignored SIGTERM)\)")


def _kill_if(pid: int, ours: Callable[[str | None], bool]) -> None:
    """SIGKILL ``pid`` only if its command line says it is still the process
    the inner test made (and reap it if it is a child of this process)."""
    if ours(cmdline(pid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        cleanup([pid])


def _is(expected: str) -> Callable[[str | None], bool]:
    """A test of a command line: whether it is ``expected``."""
    return lambda command: command == expected


def _is_helper(command: str | None) -> bool:
    """Whether ``command`` is a multiprocessing helper's (or a forkserver worker's)."""
    return command is not None and "from multiprocessing." in command


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_process_supervisor_names_each_leak_in_the_test_failure(
    pytester: pytest.Pytester, runner: str
) -> None:
    pids = pytester.path / "pids"
    pids.mkdir()
    tag = f"leak-{runner}"
    running = ["sed", "-u", f"s/^/{tag}-running:/"]
    # The shell's ignored SIGTERM stays ignored across the exec. (The newline
    # is shown escaped: one line per leak.)
    stubborn = ["sh", "-c", f"trap '' TERM\nexec sed -u s/^/{tag}-stubborn:/"]
    marks, extra = RUNNERS[runner]
    source = COMMON.format(pids=str(pids)) + INNER_LEAKS.format(
        marks=marks, extra=extra, tag=tag, running=running, stubborn=stubborn
    )
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    # The processes as they still run after their exec, for the clean-up.
    alive_as = {
        "running": " ".join(running),
        "stubborn": f"sed -u s/^/{tag}-stubborn:/",
    }
    try:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-v", "-rfE", timeout=TIMEOUT
        )
        output = result.stdout.str()
        recorded = {path.name: int(path.read_text()) for path in pids.iterdir()}

        # The leaky test fails (no teardown error), the helpers live on.
        result.assert_outcomes(failed=1, passed=1)
        name = "test_leaks" if runner == "trio" else f"test_leaks[{runner.split('-')[1]}]"
        assert f"test_inner.py::{name} FAILED" in output, output
        assert "test_inner.py::test_helpers_live_on PASSED" in output, output

        # One line per leak, and nothing else: not the helpers.
        lines = [line for line in _sections(output)[name].splitlines() if line.strip()]
        assert lines[0] == "processes outlived the test:", output
        leaks = {}
        for line in lines[1:]:
            match = LEAK_LINE.fullmatch(line)
            assert match is not None, output
            leaks[int(match[1])] = (match[2], match[3])
        assert set(leaks) == {recorded[k] for k in ("running", "stubborn", "zombie", "worker")}
        assert leaks[recorded["running"]] == (" ".join(running), "running")
        shown = " ".join(stubborn).replace("\n", "\\n")
        assert leaks[recorded["stubborn"]] == (shown, "ignored SIGTERM")
        assert leaks[recorded["zombie"]] == ("[sh]", "zombie")
        command, state = leaks[recorded["worker"]]
        assert re.fullmatch(r"\S*python\S* .*-c from multiprocessing\.forkserver .*", command)
        assert state == "running"

        # Nothing the test left survives the run.
        for key, command in alive_as.items():
            assert cmdline(recorded[key]) != command, f"{key} pid {recorded[key]} survived"
        assert not _is_helper(cmdline(recorded["worker"])), "the worker survived"
    finally:
        for key, command in alive_as.items():
            if (pids / key).exists():
                _kill_if(int((pids / key).read_text()), _is(command))
        # The helpers end with the inner pytest (their pipes close): these
        # are only in case they did not.
        for key in ("worker", "forkserver", "tracker"):
            if (pids / key).exists():
                _kill_if(int((pids / key).read_text()), _is_helper)


#: Clean tests, a test that fails and leaks, an orphan left behind, and a
#: fixture built on ``process_supervisor`` that ends its process itself.
INNER_MORE = """
@pytest.mark.trio
async def test_clean(process_supervisor: Supervisor) -> None:
    worker = await process_supervisor.start(["sh", "-c", "exit 3"])
    assert (await worker.wait()).code == 3


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_clean_anyio(process_supervisor: Supervisor, anyio_backend: str) -> None:
    worker = await process_supervisor.start(["true"])
    assert (await worker.wait()).code == 0


@pytest.mark.trio
async def test_clean_orphan(process_supervisor: Supervisor) -> None:
    # An orphan that has exited and been reaped is no leak. (No event tells
    # the test when the fixture's reaper took it: look, bounded.)
    parent = await process_supervisor.start(["sh", "-c", "(exit 4) & exit 0"])
    assert (await parent.wait()).code == 0
    with trio.fail_after(30):
        while not process_supervisor.reaped_orphans:
            await trio.sleep(0.01)
    assert [s.code for s in process_supervisor.reaped_orphans] == [4]


@pytest.fixture
async def server(
    process_supervisor: Supervisor, request: pytest.FixtureRequest
) -> AsyncIterator[Process]:
    # Ended in this fixture's teardown, which comes before the supervisor's.
    worker = await process_supervisor.start(["sleep", "600"])
    record(request.node.name, worker.pid)
    yield worker
    worker.terminate()
    await worker.wait()


@pytest.mark.trio
async def test_fixture_on_it(server: Process) -> None:
    assert not server.exited


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_fixture_on_it_anyio(server: Process, anyio_backend: str) -> None:
    assert not server.exited


@pytest.mark.trio
async def test_fails_and_leaks(process_supervisor: Supervisor) -> None:
    argv = ["sed", "-u", "s/^/{failing}:/"]
    record("failing", (await start_and_leak(process_supervisor, argv, "{failing}")).pid)
    assert 1 == 2, "the test's own failure"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_fails_and_leaks_anyio(process_supervisor: Supervisor, anyio_backend: str) -> None:
    argv = ["sed", "-u", "s/^/{failing_anyio}:/"]
    record("failing_anyio", (await start_and_leak(process_supervisor, argv, "{failing_anyio}")).pid)
    assert 1 == 2, "the test's own failure"


@pytest.mark.trio
async def test_leaves_daemon(process_supervisor: Supervisor) -> None:
    # (A background job's stdin is /dev/null unless redirected: through fd 3.)
    script = "exec 3<&0; sed -u s/^/{daemon}:/ <&3 & echo $! > {daemon_file}"
    parent = await start_and_leak(process_supervisor, ["sh", "-c", script], "{daemon}")
    assert (await parent.wait()).code == 0
"""

#: The leftovers of INNER_MORE, by name: their command lines.
COMMANDS = {
    "failing": "sed -u s/^/leak-failing:/",
    "failing_anyio": "sed -u s/^/leak-failing-anyio:/",
    "daemon": "sed -u s/^/leak-daemon:/",
    "test_fixture_on_it": "sleep 600",
    "test_fixture_on_it_anyio[asyncio]": "sleep 600",
}


def test_process_supervisor_reports_with_the_tests_own_failure(
    pytester: pytest.Pytester,
) -> None:
    pids = pytester.path / "pids"
    pids.mkdir()
    source = COMMON.format(pids=str(pids)) + INNER_MORE.format(
        failing="leak-failing",
        failing_anyio="leak-failing-anyio",
        daemon="leak-daemon",
        daemon_file=str(pids / "daemon"),
    )
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    try:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-v", "-rfE", timeout=TIMEOUT
        )
        output = result.stdout.str()
        recorded = {name: int((pids / name).read_text()) for name in COMMANDS}
        result.assert_outcomes(passed=6, failed=3)

        sections = _sections(output)
        for test, name in (
            ("test_fails_and_leaks", "failing"),
            ("test_fails_and_leaks_anyio[asyncio]", "failing_anyio"),
            ("test_leaves_daemon", "daemon"),
        ):
            assert f"test_inner.py::{test} FAILED" in output, output
            text = sections[test]
            assert "processes outlived the test" in text, text
            line = f"pid {recorded[name]}: {COMMANDS[name]} (running)"
            assert [x for x in text.splitlines() if x.startswith("pid ")] == [line], text
        for test in ("test_fails_and_leaks", "test_fails_and_leaks_anyio[asyncio]"):
            assert "the test's own failure" in sections[test], sections[test]

        # Nothing survives the run.
        for name, command in COMMANDS.items():
            pid = recorded[name]
            assert cmdline(pid) != command, f"{name} pid {pid} survived"
    finally:
        for name, command in COMMANDS.items():
            path = pids / name
            if path.exists():
                _kill_if(int(path.read_text()), _is(command))


def _sections(output: str) -> dict[str, str]:
    """The text of each failure or error section (``___ NAME ___``), by NAME."""
    sections: dict[str, str] = {}
    current: str | None = None
    for line in output.splitlines():
        if line.startswith("___") and line.endswith("___"):
            current = line.strip(" _").removeprefix("ERROR at teardown of ")
            sections[current] = ""
        elif line.startswith("===="):
            current = None
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def test_process_supervisor_passes_a_clean_test_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_alone=textwrap.dedent(
            """
            import pytest

            @pytest.mark.trio
            async def test_ok(process_supervisor):
                worker = await process_supervisor.start(["sh", "-c", "exit 0"])
                assert (await worker.wait()).code == 0
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=TIMEOUT)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK


def test_the_plugin_is_registered_under_pytest11() -> None:
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="pytest11") if ep.name == "nucleus_trio"]
    assert [ep.value for ep in found] == ["nucleus_trio.pytest_plugin"]
    assert Path(found[0].load().__file__).name == "pytest_plugin.py"


# -- the sandbox fixture --------------------------------------------------------

SANDBOXED = """
import subprocess

import pytest

LEAVES = "setsid sh -c 'trap \\"\\" TERM; exec sleep 600' & echo started"


@pytest.mark.trio
async def test_clean_box(sandbox):
    async with sandbox(["sh", "-c", "exit 0"]) as box:
        assert (await box.wait()).code == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_leaky_box(sandbox, anyio_backend):
    async with sandbox(["sh", "-c", LEAVES], grace=0.2, container_name="leaky") as box:
        assert (await box.wait()).code == 0


@pytest.mark.trio
async def test_stuck_box(sandbox):
    argv = ["sh", "-c", "trap '' TERM; echo up; exec sleep 600"]
    async with sandbox(argv, grace=0.1, margin=0.3, stdout=subprocess.PIPE) as box:
        assert (await box.stdout.receive_some()).startswith(b"up")
"""


@pytest.mark.pid1
def test_the_sandbox_fixture_fails_a_test_with_the_inits_report(pytester: pytest.Pytester) -> None:
    """A clean sandbox passes; one whose init had to end a leftover (a
    daemon that ignores SIGTERM) fails with the init's lines; one that had
    to be killed says so. Each on the test's own report, not at teardown."""
    pytester.makepyfile(test_sandboxed=SANDBOXED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf", timeout=TIMEOUT)
    result.assert_outcomes(passed=1, failed=3)
    text = result.stdout.str()
    failures = [line for line in text.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 3, text
    assert re.search(r"sandbox leaky \(init pid \d+\): shutdown: .*SIGTERM", text), text
    assert re.search(r"sandbox leaky \(init pid \d+\): shutdown: .*SIGKILL", text), text
    assert "still there after its grace: SIGKILL ended its namespace" in text, text
    assert "ERROR" not in text, text
