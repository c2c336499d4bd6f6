"""Faults in the init's own side paths, under load: it forwards, reaps, and
exits with the workload's code whatever breaks beside it.

Each test runs the real init (as PID 1 of a new namespace and as subreaper)
through :func:`stress.soak.exercise`: a storm of orphans, then one signal
of every forwarded kind, then the final SIGTERM. The faults:

- audit sinks that fail every way (``ENOSPC``, ``EPIPE``, ``EAGAIN``, a
  stall), with ``-v`` so every signal and reap is an event on both sinks;
  tests/test_audit.py covers each sink with a handful of signals, these with
  every kind and thousands of orphans;
- exceptions raised inside the log path, the audit path, the writer, the
  reaper and the signal dispatch, injected without any hook in the package:
  a ``sitecustomize.py`` on the init's ``PYTHONPATH`` monkeypatches them;
- the crash guard: ``_Init.wait_workload`` raising. Exit 70, the traceback
  on stderr, the workload, its group and every process left killed.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from stress.harness import forwarded_signals, init_command, launch
from stress.procfs import Figures, children_of, state_of, tagged_processes, wait_until
from stress.soak import exercise
from stress.stdio import fill_pipe
from stress.storms import CANCELLING

PREFIX = "nucleus-trio: "
DROPPED_AUDIT = re.compile(r"nucleus-trio: (\d+) audit events were dropped")
DROPPED_LOG = re.compile(r"nucleus-trio: (\d+) log lines were dropped")
ORPHANS = 3000

#: The fault injector: imported by the init's interpreter at start-up (it is
#: on PYTHONPATH), it patches the function NT_FAULT names. The workloads are
#: C programs or sh, so nothing else runs it.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os
    import signal

    fault = os.environ.get("NT_FAULT", "")

    if fault == "log-raise":
        import nucleus_trio.audit as audit

        def log_line(event):
            raise RuntimeError("injected fault: log_line")

        audit.log_line = log_line
    elif fault == "audit-raise":
        import nucleus_trio.audit as audit

        def audit_line(record):
            raise RuntimeError("injected fault: audit_line")

        audit.audit_line = audit_line
    elif fault == "write-raise":
        import nucleus_trio.audit as audit

        def write_all(fd, data):
            raise ValueError("injected fault: write_all")

        audit.write_all = write_all
    elif fault in ("reaper-early", "reaper-once"):
        # Every reaping pass the init may use (reap_unclaimed, or reap_any
        # for an init that owns every child), wherever it was imported to.
        import nucleus_trio.machinery as machinery
        import nucleus_trio.reaper as reaper

        calls = [0]
        fired = [False]

        def should_raise():
            calls[0] += 1
            if fault == "reaper-early":
                return 2 <= calls[0] <= 4
            if fired[0]:
                return False
            # The first pass that has an orphan's zombie to reap (the
            # workload is alive: any zombie is an orphan's).
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            fired[0] = info is not None
            return fired[0]

        def wrap(original):
            def reaping_pass(*args, **kwargs):
                if should_raise():
                    raise RuntimeError("injected fault: reaping pass")
                return original(*args, **kwargs)

            return reaping_pass

        for module in (reaper, machinery):
            for name in ("reap_unclaimed", "reap_any"):
                if hasattr(module, name):
                    setattr(module, name, wrap(getattr(module, name)))
    elif fault == "dispatch-raise":
        import nucleus_trio.forwarding as forwarding

        original_route = forwarding.route_signal

        def route_signal(signo, rewrites):
            if signo == signal.SIGURG:
                raise RuntimeError("injected fault: route_signal")
            return original_route(signo, rewrites)

        forwarding.route_signal = route_signal
    elif fault == "pidfd-eperm":
        # A seccomp profile that refuses pidfd_open (Docker's default one did
        # before 20.10), between the workload's start and trio's.
        import errno

        def pidfd_open(pid, flags=0):
            raise PermissionError(errno.EPERM, "Operation not permitted")

        os.pidfd_open = pidfd_open
        import posix

        posix.pidfd_open = pidfd_open
    elif fault == "trio-import":
        import nucleus_trio.handover as handover

        def _import_trio():
            raise ImportError("injected fault: no trio")

        handover._import_trio = _import_trio
    elif fault == "crash":
        import trio
        import nucleus_trio.init as init

        delay = float(os.environ.get("NT_FAULT_DELAY", "3"))

        async def wait_workload(self):
            await trio.sleep(delay)
            raise RuntimeError("injected fault: wait_workload")

        init._Init.wait_workload = wait_workload
    """
)


#: The init for a fault injector: the installed command runs its interpreter
#: isolated (-I), where PYTHONPATH, and so the injector, never reach it.
INJECTABLE = [sys.executable, "-m", "nucleus_trio"]


@pytest.fixture
def injector(tmp_path: Path) -> Iterator[Path]:
    """A directory holding the fault injector, for the init's PYTHONPATH."""
    folder = tmp_path / "inject"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    yield folder


def fault_env(injector: Path, fault: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(injector)
    env["NT_FAULT"] = fault
    env.update(extra)
    return env


def dropped(pattern: re.Pattern[str], stderr: str) -> int:
    found = pattern.findall(stderr)
    assert found, f"no report of what was dropped: {stderr[-2000:]}"
    return int(found[-1])


def assert_carried_on(fig: Figures) -> None:
    """The invariants of every fault: reaped, forwarded, the workload's code."""
    print(
        f"\n{fig['mode']}: {fig['orphans_made']} orphans, zombies left {fig['zombies_left']}, "
        f"{fig['kinds_sent']} kinds sent, missing {fig['kinds_missing']}, "
        f"exit {fig['exit_code']} {fig['exit_after_term_s']} s after SIGTERM"
    )
    assert fig["failures"] == [], fig["failures"]
    assert fig["orphans_made"] == fig["orphans"]
    assert fig["zombies_left"] == 0
    assert fig["kinds_missing"] == []
    assert fig["exit_code"] == fig["expected_code"]
    assert fig["processes_left"] == 0
    assert fig["exit_after_term_s"] < 15


# ------------------------------------------------------------ failing sinks


def exercise_audit_fd(mode: str, write_end: int) -> Figures:
    """:func:`exercise` with ``-v --audit fd:WRITE_END``, the descriptor passed down."""
    return exercise(
        mode, ["-v", "--audit", f"fd:{write_end}"], orphans=ORPHANS, pass_fds=(write_end,)
    )


def assert_audit_dropped(fig: Figures, at_least: int) -> None:
    """The init carried on, reported at least ``at_least`` audit events dropped, and
    logged no traceback."""
    assert_carried_on(fig)
    assert dropped(DROPPED_AUDIT, fig["stderr"]) >= at_least
    assert "Traceback" not in fig["stderr"]


def test_audit_sink_enospc(mode: str) -> None:
    """/dev/full: every audit write fails with ENOSPC."""
    fig = exercise(mode, ["-v", "--audit", "/dev/full"], orphans=ORPHANS)
    assert_audit_dropped(fig, ORPHANS)


def test_audit_sink_epipe(mode: str) -> None:
    """A pipe whose reader is gone: EPIPE on every write, and no SIGPIPE
    forwarded (the workload reports any kind it gets)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        fig = exercise_audit_fd(mode, write_end)
    finally:
        os.close(write_end)
    assert_audit_dropped(fig, ORPHANS)


def test_audit_sink_eagain(mode: str) -> None:
    """A full pipe in non-blocking mode: every write fails with EAGAIN."""
    read_end, write_end = os.pipe()
    try:
        flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
        fill_pipe(write_end)
        fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        with pytest.raises(BlockingIOError):
            os.write(write_end, b"x")
        fig = exercise_audit_fd(mode, write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert_audit_dropped(fig, ORPHANS)


def test_audit_sink_stall(mode: str) -> None:
    """A full blocking pipe that nobody reads: the writer blocks for good."""
    read_end, write_end = os.pipe()
    try:
        fill_pipe(write_end)
        fig = exercise_audit_fd(mode, write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert_audit_dropped(fig, 1)


# ------------------------------------------------------------ exceptions in side paths


def test_exception_in_the_log_path(mode: str, injector: Path) -> None:
    """Rendering every stderr line raises: the lines are dropped and counted."""
    fig = exercise(
        mode, ["-v", "-w"], orphans=ORPHANS, init=INJECTABLE, env=fault_env(injector, "log-raise")
    )
    assert_carried_on(fig)
    assert dropped(DROPPED_LOG, fig["stderr"]) >= ORPHANS


def test_exception_in_the_audit_path(mode: str, injector: Path, tmp_path: Path) -> None:
    """Rendering every audit record raises: nothing is written, all is counted."""
    audit = tmp_path / "audit.jsonl"
    fig = exercise(
        mode,
        ["--audit", str(audit)],
        orphans=ORPHANS,
        init=INJECTABLE,
        env=fault_env(injector, "audit-raise"),
    )
    assert_carried_on(fig)
    assert dropped(DROPPED_AUDIT, fig["stderr"]) >= ORPHANS
    assert audit.read_text() == ""


def test_exception_in_the_writer(mode: str, injector: Path) -> None:
    """The write itself raises something that is not an OSError, on both sinks."""
    fig = exercise(
        mode,
        ["-v", "-w", "--audit", "/dev/null"],
        orphans=ORPHANS,
        init=INJECTABLE,
        env=fault_env(injector, "write-raise"),
    )
    assert_carried_on(fig)
    assert dropped(DROPPED_AUDIT, fig["stderr"]) >= ORPHANS


def test_exception_in_the_reaper(mode: str, injector: Path) -> None:
    """Three reaper passes raise early in the storm: each is reported with
    its traceback, and the passes after them reap every orphan."""
    fig = exercise(
        mode,
        [],
        orphans=ORPHANS,
        init=INJECTABLE,
        env=fault_env(injector, "reaper-early"),
        tracebacks_allowed=True,
    )
    assert_carried_on(fig)
    assert fig["stderr"].count("internal error (carrying on)") == 3
    assert fig["stderr"].count("RuntimeError: injected fault: reaping pass") == 3
    assert all(line.startswith(PREFIX) for line in fig["stderr"].splitlines())


def test_exception_in_the_signal_dispatch(mode: str, injector: Path) -> None:
    """Routing SIGURG raises: that one is lost and reported, and every kind
    sent after it is forwarded still."""
    kinds = [signal.SIGURG, *sorted(forwarded_signals() - CANCELLING - {signal.SIGURG})]
    fig = exercise(
        mode,
        [],
        orphans=ORPHANS,
        init=INJECTABLE,
        env=fault_env(injector, "dispatch-raise"),
        kinds=kinds,
        lost_ok=frozenset({signal.SIGURG}),
        tracebacks_allowed=True,
    )
    assert_carried_on(fig)
    assert "SIGURG" not in fig["kinds_missing"]
    assert fig["stderr"].count("RuntimeError: injected fault: route_signal") == 1
    assert "internal error (carrying on)" in fig["stderr"]


def test_reaper_fault_on_the_last_pass_leaves_no_zombie(mode: str, injector: Path) -> None:
    """One orphan; the one pass its SIGCHLD brings raises. Reaping must go on
    (spec: every orphan is reaped promptly), not wait for another child's exit."""
    fig = exercise(
        mode,
        [],
        orphans=1,
        init=INJECTABLE,
        env=fault_env(injector, "reaper-once"),
        reap_timeout=5,
        tracebacks_allowed=True,
    )
    assert "injected fault: reaping pass" in fig["stderr"]
    assert fig["zombies_left"] == 0, fig["failures"]


# ------------------------------------------------------------ the crash guard

#: A workload with a process group (two sleeps beside the shell) and two
#: daemons in a session of their own, re-parented to the init.
CRASH_WORKLOAD = [
    "sh",
    "-c",
    "sleep 600 & sleep 600 & "
    "setsid sh -c 'sleep 600 & sleep 600 & exit 0' & wait $!; "
    'echo "ready $$"; wait',
]


def test_crash_guard(mode: str, injector: Path) -> None:
    """wait_workload raises: exit 70, the traceback on stderr (every line
    prefixed), and the workload, its group and the daemons killed by PID."""
    env = fault_env(injector, "crash", NT_FAULT_DELAY="6")
    with launch(mode, [], [], init=INJECTABLE, env=env, program=CRASH_WORKLOAD) as run:
        run.ready()
        workload = run.workload_pid
        group = _children(workload)
        daemons = [pid for pid in _children(run.init_pid) if pid != workload]
        assert len(group) == 2, group
        assert len(daemons) == 2, daemons
        assert all(os.getpgid(pid) == workload for pid in group)
        code = run.wait(60)
        stderr = run.stderr_text()
        left = tagged_processes(run.tag)
        states = {pid: state_of(pid) for pid in [workload, *group, *daemons]}
    print(f"\n{mode}: exit {code}; left {left}; states after {states}")
    assert code == 70
    assert re.search(r"^nucleus-trio: .*Traceback \(most recent call last\):$", stderr, re.M)
    assert "RuntimeError: injected fault: wait_workload" in stderr
    assert "internal error: killing the workload" in stderr
    assert all(line.startswith(PREFIX) for line in stderr.splitlines()), stderr
    assert left == []
    # Killed at once; a zombie the init had no time to reap goes to the next
    # reaper up (the namespace's end, or the init's parent's subreaper).
    assert all(state in (None, "Z") for state in states.values()), states
    wait_until(lambda: all(state_of(pid) is None for pid in states), 10, "the zombies' end")


def _children(pid: int) -> list[int]:
    kids: list[int] = []

    def found() -> bool:
        kids[:] = children_of(pid)
        return bool(kids)

    wait_until(found, 10, f"children of {pid}")
    return kids


@pytest.mark.parametrize("fault", ["pidfd-eperm", "trio-import"])
def test_crash_guard_covers_the_start_up(mode: str, injector: Path, fault: str) -> None:
    """The workload runs, then the init fails before trio is up: the crash
    guard must still kill the workload and exit 70 with a prefixed traceback."""
    program = ["sh", "-c", 'echo "ready $$"; exec sleep 600']
    with launch(
        mode, [], [], init=INJECTABLE, env=fault_env(injector, fault), program=program
    ) as run:
        run.report.expect("ready", 30)
        code = run.wait(30)
        stderr = run.stderr_text()
        left = tagged_processes(run.tag)
        run.exit_code = None  # the check is below, not in launch's clean-up
    print(f"\n{mode} {fault}: exit {code}, left {left}, stderr {stderr[-600:]!r}")
    assert left == [], "the workload outlived the init"
    assert code == 70
    assert all(line.startswith(PREFIX) for line in stderr.splitlines()), stderr


def test_closed_stderr_never_gets_the_audit_trail(mode: str, tmp_path: Path) -> None:
    """An init started with stderr closed (``2>&-``) and ``--audit FILE``:
    the audit trail holds JSON lines only, whatever the init logs (``-w``)."""
    audit = tmp_path / "audit.jsonl"
    program = ["sh", "-c", 'echo "ready $$"; sh -c "sleep 0.2 &"; sleep 1; exit 4']
    with launch(
        mode,
        ["-w", "--audit", str(audit)],
        [],
        program=program,
        wrapper=["sh", "-c", 'exec "$@" 2>&-', "nt-stderr-closed"],
        stderr=subprocess.DEVNULL,
    ) as run:
        run.report.expect("ready", 30)
        assert run.wait(30) == 4
    lines = audit.read_text().splitlines()
    assert any('"zombie_reaped"' in line for line in lines), lines
    strays = [line for line in lines if not line.startswith("{")]
    assert strays == [], strays
    assert all(isinstance(json.loads(line), dict) for line in lines)


#: The regression below, shared by the stress tests of a closed stdout/stderr.


@pytest.mark.parametrize("closed", [">&-", "2>&-", ">&- 2>&-"])
def test_closed_stdout_or_stderr_keeps_the_exit_code(closed: str) -> None:
    """``nucleus-trio -- sh -c 'exit 9' >&-`` exits 9, like with both open."""
    command = [*init_command(), "--", "sh", "-c", "exit 9"]
    result = subprocess.run(
        ["sh", "-c", f'exec "$@" {closed}', "nt-closed", *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr.decode(errors="replace")
    assert result.returncode == 9
