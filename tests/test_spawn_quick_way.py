"""``spawn.fork_exec``: the quick way (``_posixsubprocess``'s vfork) and the
fork it falls back to give the workload the same state, and the quick way
loses none of the caller's signals.

Each case runs in a fresh interpreter (the command line's own situation: one
thread, signals blocked, Python's handlers), which prints the workload's
``/proc/self/status`` lines and then one JSON line about itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.procfs import signal_set

#: glibc's internal signals: Python can neither see nor reset them (see
#: test_forwarding_end_to_end).
GLIBC_INTERNAL = frozenset({32, 33})

PRELUDE = """
import json, os, posix, signal, sys, threading
from nucleus_trio import spawn

forks = []
real_fork = posix.fork
def counting_fork():
    forks.append(1)
    return real_fork()
posix.fork = counting_fork

BLOCKED = {signal.SIGUSR1, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
# Pending before the spawn: the quick way empties the mask for a moment.
os.kill(os.getpid(), signal.SIGUSR1)
os.kill(os.getpid(), signal.SIGINT)
STATE = ["grep", "-E", "^Sig(Blk|Ign|Pnd)", "/proc/self/status"]

def handlers():
    return {int(s): repr(signal.getsignal(s)) for s in signal.valid_signals()
            if s not in (signal.SIGKILL, signal.SIGSTOP)}

def report(pid, before, **extra):
    _, status = os.waitpid(pid, 0)
    sys.stdout.flush()
    print(json.dumps({
        "status": status,
        "forks": len(forks),
        "pending": sorted(int(s) for s in signal.sigpending()),
        "mask": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ())),
        "handlers_kept": handlers() == before,
        **extra,
    }), flush=True)
"""


def run_case(body: str) -> tuple[dict[str, set[int]], dict[str, Any]]:
    """Run PRELUDE + ``body`` in a fresh interpreter: the workload's signal
    state and the script's own report."""
    script = PRELUDE + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    state: dict[str, set[int]] = {}
    for line in lines[:-1]:
        key, _, value = line.partition(":")
        state[key] = signal_set(value.strip())
    return state, json.loads(lines[-1])


def test_the_quick_way_forks_nothing_and_starts_the_workload_clean() -> None:
    state, report = run_case(
        """
        before = handlers()
        pid = spawn.fork_exec(STATE, env=dict(os.environ))
        report(pid, before)
        """
    )
    assert report["forks"] == 0, "the quick way must not fork in Python"
    assert report["status"] == 0
    # The workload: an empty mask, nothing ignored (not even Python's PIPE
    # and XFSZ), nothing of the caller's pending.
    assert state["SigBlk"] == set()
    assert state["SigIgn"] - GLIBC_INTERNAL == set()
    assert state["SigPnd"] == set()


def test_the_quick_way_keeps_the_callers_signals_pending_and_handlers_in_place() -> None:
    _, report = run_case(
        """
        before = handlers()
        pid = spawn.fork_exec(STATE, env=dict(os.environ))
        report(pid, before)
        """
    )
    assert report["forks"] == 0
    # SIGUSR1 and SIGINT met the recorder while the mask was empty, and were
    # sent again once it was back: still pending, and no KeyboardInterrupt.
    assert {signal.SIGUSR1, signal.SIGINT} <= set(report["pending"])
    assert {signal.SIGUSR1, signal.SIGINT, signal.SIGTERM} <= set(report["mask"])
    assert report["handlers_kept"] is True


def test_inherited_ignores_take_the_fork_and_stay_ignored() -> None:
    state, report = run_case(
        """
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        before = handlers()
        pid = spawn.fork_exec(STATE, env=dict(os.environ), ignored=frozenset({signal.SIGHUP}))
        report(pid, before)
        """
    )
    assert report["forks"] == 1
    assert state["SigBlk"] == set()
    assert state["SigIgn"] - GLIBC_INTERNAL == {signal.SIGHUP}
    assert {signal.SIGUSR1, signal.SIGINT} <= set(report["pending"])


def test_a_thread_that_is_not_the_main_one_takes_the_fork() -> None:
    state, report = run_case(
        """
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with a thread, 3.12+
        before = handlers()
        pids = []
        worker = threading.Thread(
            target=lambda: pids.append(spawn.fork_exec(STATE, env=dict(os.environ)))
        )
        worker.start()
        worker.join()
        report(pids[0], before)
        """
    )
    assert report["forks"] == 1
    assert report["status"] == 0
    assert state["SigBlk"] == set()
    assert state["SigIgn"] - GLIBC_INTERNAL == set()
    assert report["handlers_kept"] is True


@pytest.mark.parametrize(
    ("program", "code", "exception"),
    [
        ("no-such-program-anywhere", 127, "FileNotFoundError"),
        ("/nonexistent/program", 127, "FileNotFoundError"),
        ("{tmp}/not-executable", 126, "PermissionError"),
        ("{tmp}/no-format", 126, "OSError"),
    ],
)
def test_a_program_that_cannot_run_is_reported_as_before(
    program: str, code: int, exception: str, tmp_path: Path
) -> None:
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    (tmp_path / "not-executable").chmod(0o644)
    (tmp_path / "no-format").write_bytes(b"\x7fELF not really")
    (tmp_path / "no-format").chmod(0o755)
    program = program.format(tmp=tmp_path)
    _, report = run_case(
        f"""
        before = handlers()
        try:
            spawn.fork_exec([{program!r}], env=dict(os.environ))
        except spawn.SpawnError as exc:
            kind = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
            caught = (exc.exit_code, kind.__name__, str(exc))
        try:
            leftover = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            leftover = None
        print(json.dumps({{
            "caught": caught,
            "leftover": leftover,
            "pending": sorted(int(s) for s in signal.sigpending()),
            "handlers_kept": handlers() == before,
        }}))
        """
    )
    exit_code, kind, message = report["caught"]
    assert (exit_code, kind) == (code, exception)
    assert message.startswith(f"cannot run {program!r}: ")
    assert report["leftover"] is None, "the failed child must be reaped"
    assert {signal.SIGUSR1, signal.SIGINT} <= set(report["pending"])
    assert report["handlers_kept"] is True



SRC = Path(__file__).resolve().parent.parent / "src"

_C_HALF = """
import sys
sys.path.insert(0, sys.argv[1])
from nucleus_trio import spawn
c_fork_exec = spawn._c_fork_exec()
import subprocess  # imports _posixsubprocess the usual way: must find ours
module = sys.modules["_posixsubprocess"]
assert subprocess._fork_exec is c_fork_exec, (subprocess._fork_exec, c_fork_exec)
assert module.__spec__.name == "_posixsubprocess"
builtin = "_posixsubprocess" in sys.builtin_module_names
assert builtin or module.__file__ == module.__spec__.origin, module.__file__
print("builtin" if builtin else "shared library")
"""


@pytest.mark.parametrize("python", [sys.executable, "/usr/bin/python3"])
def test_the_c_half_is_the_module_subprocess_uses(python: str) -> None:
    """Loaded straight from lib-dynload (a shared library) or built in, the
    module is registered as the import system would have it."""
    if not Path(python).exists():
        pytest.skip(f"{python} is not on this machine")
    result = subprocess.run(
        [python, "-I", "-S", "-c", _C_HALF, str(SRC)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"builtin", "shared library"}
