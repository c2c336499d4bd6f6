"""The pytest plugin: ``process_supervisor``, run in a separate pytest.

Each inner run is a ``pytester.runpytest_subprocess``, so its signal handling
and its subreaper registration stay out of this process, and it is bounded
in time. Inner tests write the PIDs of what they leave behind to files; after
the run no such process may survive (checked by PID and command line).
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from tests.library_support import cmdline

pytest_plugins = ["pytester"]

TIMEOUT = 120.0

INNER = """
import os
import subprocess
from pathlib import Path

import anyio
import pytest
import trio

from nucleus_trio import Process, Supervisor

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


@pytest.mark.trio
async def test_leaves_running(process_supervisor: Supervisor) -> None:
    argv = ["sed", "-u", "s/^/{running}:/"]
    worker = await start_and_leak(process_supervisor, argv, "{running}")
    record("running", worker.pid)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_leaves_running_asyncio(process_supervisor: Supervisor, anyio_backend: str) -> None:
    argv = ["sed", "-u", "s/^/{running_asyncio}:/"]
    worker = await start_and_leak(process_supervisor, argv, "{running_asyncio}")
    record("running_asyncio", worker.pid)


@pytest.mark.trio
async def test_leaves_zombie(process_supervisor: Supervisor) -> None:
    # A Popen that is never waited for: the reaper must leave its child to it
    # (a claim), so the exited child stays a zombie past the test.
    popen = subprocess.Popen(["sh", "-c", "exit 0"])
    KEEP_POPEN.append(popen)
    os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    record("zombie", popen.pid)


@pytest.mark.trio
async def test_leaves_daemon(process_supervisor: Supervisor) -> None:
    # (A background job's stdin is /dev/null unless redirected: through fd 3.)
    script = "exec 3<&0; sed -u s/^/{daemon}:/ <&3 & echo $! > {daemon_file}"
    parent = await start_and_leak(process_supervisor, ["sh", "-c", script], "{daemon}")
    assert (await parent.wait()).code == 0
"""

#: How each leftover is known by its command line (with the tag it was given).
TAGS = {"running": "leak-running", "running_asyncio": "leak-asyncio", "daemon": "leak-daemon"}
COMMANDS = {
    "running": "sed -u s/^/leak-running:/",
    "running_asyncio": "sed -u s/^/leak-asyncio:/",
    "daemon": "sed -u s/^/leak-daemon:/",
}
LEAKY_TESTS = {
    "test_leaves_running": "running",
    "test_leaves_running_asyncio[asyncio]": "running_asyncio",
    "test_leaves_daemon": "daemon",
    "test_leaves_zombie": "zombie",
}


def _kill_if_ours(pid: int, expected: str) -> None:
    """SIGKILL ``pid`` only if it is still the process the inner test made."""
    if cmdline(pid) == expected:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_process_supervisor_names_and_ends_leftovers(pytester: pytest.Pytester) -> None:
    pids = pytester.path / "pids"
    pids.mkdir()
    pytester.makepyfile(
        test_inner=textwrap.dedent(
            INNER.format(
                pids=str(pids),
                running=TAGS["running"],
                running_asyncio=TAGS["running_asyncio"],
                daemon=TAGS["daemon"],
                daemon_file=str(pids / "daemon"),
            )
        )
    )
    try:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-v", "-rfE", timeout=TIMEOUT
        )
        output = result.stdout.str()
        recorded = {name: int((pids / name).read_text()) for name in LEAKY_TESTS.values()}
        assert result.ret == pytest.ExitCode.TESTS_FAILED, output

        # The clean tests pass; each test that leaks fails (under pytest-trio
        # the fixture's teardown is part of the test: FAILED; under anyio it
        # is an ERROR at teardown).
        for clean in (
            "test_clean",
            "test_clean_anyio[asyncio]",
            "test_clean_anyio[trio]",
            "test_clean_orphan",
        ):
            assert f"test_inner.py::{clean} PASSED" in output, output
        summary = _summary(output)
        assert set(summary) == set(LEAKY_TESTS), output

        # Each failure names the PID and the command line of what was left.
        sections = _sections(output)
        for test, name in LEAKY_TESTS.items():
            text = sections[test]
            assert "processes outlived the test" in text, text
            if name == "zombie":  # a zombie has no command line any more
                assert f"left behind: pid {recorded[name]} (zombie)" in text, text
            else:
                assert f"pid {recorded[name]} (running) {COMMANDS[name]}" in text, text
        assert "workload pid" in sections["test_leaves_running"]
        assert "left behind: pid" in sections["test_leaves_daemon"]

        # Nothing survives the run.
        for name, command in COMMANDS.items():
            pid = recorded[name]
            assert cmdline(pid) != command, f"{name} pid {pid} survived"
    finally:
        for name, command in COMMANDS.items():
            path = pids / name
            if path.exists():
                _kill_if_ours(int(path.read_text()), command)


def _summary(output: str) -> dict[str, str]:
    """The ``FAILED`` / ``ERROR`` lines of the short summary, by test name."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        for word in ("FAILED ", "ERROR "):
            if line.startswith(word + "test_inner.py::"):
                name = line[len(word + "test_inner.py::") :].split(" - ")[0].strip()
                found[name] = word.strip()
    return found


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
