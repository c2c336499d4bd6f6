"""The shutdown of the processes left behind, and ``--kill-after``, through the real command.

Every test runs as PID 1 of a new PID namespace and as subreaper (``mode``).
The workloads are in ``tests/workloads/shutdown_*.py``: ``shutdown_tree.py``
leaves processes of several kinds behind and exits on end of file on its
stdin, after writing its CLOCK_MONOTONIC time of exit; the others stand in
for a workload that ignores or slowly handles SIGTERM.

What outlives the init is checked two ways. The init runs with ``-v -w``, so
it logs every process it signals in the shutdown and every orphan it reaps:
each leftover must show up as reaped (in the workload's own PID numbers,
which are the namespace's as PID 1). And every PID the test saw under the
init while it ran (and each PID a leftover reported) must be gone after the
init exited, compared by start time so a reused PID is not mistaken for a
survivor; this is what counts in subreaper mode, while as PID 1 the
namespace dies with its init anyway and the leftovers' marker lines are the
evidence.

Run with ``-s`` to see the measured shutdown times.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.launch import Init, Lines, receiver_up, start_init, workload
from tests.support.procfs import (
    children_of,
    descendants_of,
    oldest_child,
    ppid_of,
    start_time,
    state_of,
    wait_for,
)

#: Median times from the workload's exit to the init's, by scenario and mode
#: (printed by the latency test).
MEASURED: dict[str, float] = {}


# ---------------------------------------------------------------- helpers


class Session:
    """A running init, as seen from the test, with what it saw under the init."""

    def __init__(self, run: Init, mode: str) -> None:
        self.run = run
        self.mode = mode
        self.pid1 = mode == "pid1"
        self.init_pid = run.init_pid
        self.init_start = start_time(self.init_pid)
        # A pidfd, so no signal of the test ever reaches a recycled PID.
        self.init_fd = os.pidfd_open(self.init_pid)
        assert run.proc.stdout is not None and run.proc.stderr is not None
        self.out = Lines(run.proc.stdout.fileno())
        self.err = Lines(run.proc.stderr.fileno())
        #: Global PID -> start time of every process seen under the init.
        self.seen: dict[int, int] = {}
        self.exited_at: float | None = None

    # -- observing

    def wait_up(self, timeout: float = 15.0) -> None:
        """Wait until the init's signal receiver is up (trio runs, SIGUSR1 caught)."""
        wait_for(lambda: receiver_up(self.init_pid), timeout, "the init's signal receiver")

    def collect(self) -> list[int]:
        """Record every process under the init now; return their global PIDs."""
        found = descendants_of(self.init_pid)
        for pid in found:
            self.remember(pid)
        return found

    def remember(self, pid: int, start: int | None = None) -> None:
        """Record a global PID (with its start time, read now unless given)."""
        if start is None:
            start = start_time(pid)
        if start is not None:
            self.seen.setdefault(pid, start)

    def remember_reported(self, info: dict[str, Any]) -> None:
        """Record the PIDs a workload reported (global only in subreaper mode)."""
        if not self.pid1:
            self.remember(int(info["pid"]))
            for leftover in info["leftovers"]:
                self.remember(int(leftover["pid"]))

    def workload_pid(self) -> int:
        """The workload's global PID: the init's oldest child."""
        kid = oldest_child(self.init_pid)
        assert kid is not None, "the init has no child"
        return kid

    def readline(self, timeout: float = 10.0) -> str:
        """One line of the workload's stdout, without its newline."""
        return self.out.readline(timeout, keepends=False)

    # -- acting

    def send(self, signo: int) -> None:
        """Send ``signo`` to the init through its pidfd."""
        signal.pidfd_send_signal(self.init_fd, signo)

    def close_stdin(self) -> None:
        """End the workload's stdin: ``shutdown_tree.py`` exits on it."""
        assert self.run.proc.stdin is not None
        self.run.proc.stdin.close()

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the init (the command) to exit; note when; return its code.

        The exit is seen on a pidfd of the command, so the time is taken the
        moment it exits, not at the next tick of ``Popen.wait``'s polling.
        """
        fd = os.pidfd_open(self.run.proc.pid)
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            self.exited_at = time.monotonic()
        finally:
            os.close(fd)
        if not ready:
            raise AssertionError(f"the init did not exit within {timeout}s")
        return self.run.proc.wait(timeout=5)

    def stderr(self) -> str:
        """The init's stderr, up to end of file (after it exited)."""
        return self.err.read_to_eof(5.0)

    # -- checking

    def survivors(self) -> list[int]:
        """The PIDs seen that still name the same process (alive or zombie)."""
        return sorted(pid for pid, start in self.seen.items() if start_time(pid) == start)

    def assert_nothing_outlived(self) -> None:
        assert self.run.proc.poll() is not None, "the init still runs"
        assert self.seen or self.pid1, "the test saw no process under the init"
        left = {pid: state_of(pid) for pid in self.survivors()}
        assert not left, f"processes outlived the init (pid: state): {left}"

    # -- cleaning up

    def kill_everything(self) -> None:
        """Kill, by PID, whatever runs under the init and whatever the test saw."""
        for _ in range(50):
            pids = set(self.survivors())
            if start_time(self.init_pid) == self.init_start:
                pids.update(descendants_of(self.init_pid))
                for pid in pids:
                    self.remember(pid)
            pids = {pid for pid in pids if state_of(pid) not in (None, "Z")}
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)


@contextmanager
def launch(args: Sequence[str], mode: str, *, stdin_pipe: bool = False) -> Iterator[Session]:
    """Start ``nucleus-trio ARGS`` in ``mode``; kill everything left on the way out.

    ``start_init`` kills the init's session; the workload is in its own process
    group and its leftovers may be anywhere, so they are killed by PID first.
    """
    stdin = subprocess.PIPE if stdin_pipe else subprocess.DEVNULL
    with start_init(args, pid1=mode == "pid1", stdin=stdin) as run:
        session: Session | None = None
        try:
            session = Session(run, mode)
            yield session
        finally:
            if session is not None:
                session.kill_everything()
                os.close(session.init_fd)
            if run.proc.stdin is not None:
                try:
                    run.proc.stdin.close()
                except OSError:
                    pass


def tree(tmp_path: Path, code: int, *kinds: str) -> tuple[list[str], Path, Path]:
    """The ``shutdown_tree.py`` command line, its marker file and its stamp file."""
    marker, stamp = tmp_path / "marker", tmp_path / "stamp"
    return workload("shutdown_tree.py", str(marker), str(stamp), str(code), *kinds), marker, stamp


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def reaped(stderr: str, pid: int, how: str | None = None) -> bool:
    """Whether the init logged reaping ``pid`` (``how``: 'exited with 0', ...)."""
    pattern = rf"reaped zombie process with pid={pid} \({re.escape(how) if how else '[^)]*'}\)"
    return re.search(pattern, stderr) is not None


def signalled(stderr: str, name: str) -> list[int]:
    """Every PID the shutdown logged as sent ``name`` (SIGTERM or SIGKILL)."""
    pids: list[int] = []
    for match in re.finditer(
        rf"shutdown: sent {name} to \d+ process(?:es)? left behind: (.*)", stderr
    ):
        pids += [int(word) for word in match.group(1).split() if word.isdigit()]
    return pids


class TreeRun:
    """One run of ``shutdown_tree.py`` under the init, from start to exit."""

    def __init__(self, session: Session, marker: Path, stamp: Path) -> None:
        self.session = session
        self.marker = marker
        self.stamp = stamp
        self.info: dict[str, Any] = {}
        self.code = -1
        self.stderr = ""
        self.latency = -1.0

    def ready(self) -> dict[str, Any]:
        """Wait for the leftovers to be in place and the init to be up."""
        self.info = json.loads(self.session.readline(15))
        self.session.wait_up()
        self.session.remember_reported(self.info)
        self.session.collect()
        return self.info

    def finish(self, timeout: float = 15.0) -> None:
        """Let the workload exit; wait for the init; measure exit to exit."""
        self.session.close_stdin()
        self.code = self.session.wait_exit(timeout)
        assert self.session.exited_at is not None
        self.stderr = self.session.stderr()
        self.latency = self.session.exited_at - float(self.stamp.read_text())

    def leftover(self, kind: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [
            left for left in self.info["leftovers"] if left["kind"] == kind
        ]
        assert len(found) == 1, self.info
        return found[0]


def run_tree(
    tmp_path: Path, mode: str, code: int, kinds: Sequence[str], grace: float | None
) -> TreeRun:
    """Run ``shutdown_tree.py CODE KINDS`` under ``nucleus-trio -v -w [-t GRACE]`` to the end."""
    command, marker, stamp = tree(tmp_path, code, *kinds)
    for path in (marker, stamp):
        path.unlink(missing_ok=True)
    options = ["-v", "-w", *(["-t", f"{grace:g}"] if grace is not None else [])]
    with launch([*options, "--", *command], mode, stdin_pipe=True) as session:
        result = TreeRun(session, marker, stamp)
        result.ready()
        result.finish()
        session.assert_nothing_outlived()
        return result


# ------------------------------------------------------ leftovers and grace


def test_leftover_handling_sigterm_runs_its_handler_and_is_reaped(
    mode: str, tmp_path: Path
) -> None:
    result = run_tree(tmp_path, mode, 7, ["term"], grace=None)
    pid = result.leftover("term")["pid"]
    assert result.code == 7, result.stderr
    assert read_lines(result.marker) == [f"TERM term {pid}"]
    assert signalled(result.stderr, "SIGTERM") == [pid], result.stderr
    assert signalled(result.stderr, "SIGKILL") == [], result.stderr
    assert reaped(result.stderr, pid, "exited with 0"), result.stderr
    assert "1 ended on SIGTERM, 0 killed, 0 survived" in result.stderr
    assert result.latency < 2.5, "the grace (5 s) was waited out for nothing"


def test_leftover_ignoring_sigterm_is_killed_after_the_grace(mode: str, tmp_path: Path) -> None:
    result = run_tree(tmp_path, mode, 7, ["ignore"], grace=1)
    pid = result.leftover("ignore")["pid"]
    assert result.code == 7, result.stderr
    assert 0.9 <= result.latency < 5.0, f"the init exited {result.latency:.3f} s after the workload"
    assert signalled(result.stderr, "SIGTERM") == [pid], result.stderr
    assert signalled(result.stderr, "SIGKILL") == [pid], result.stderr
    assert reaped(result.stderr, pid, "killed by SIGKILL"), result.stderr


def test_daemonized_grandchild_is_found_and_terminated(mode: str, tmp_path: Path) -> None:
    command, marker, stamp = tree(tmp_path, 5, "daemon")
    with launch(["-v", "-w", "--", *command], mode, stdin_pipe=True) as session:
        result = TreeRun(session, marker, stamp)
        info = result.ready()
        daemon = result.leftover("daemon")
        # Its own session and process group, neither the workload's.
        assert daemon["sid"] == daemon["pgid"] != info["pgid"]
        assert daemon["sid"] != info["sid"]
        assert daemon["pid"] != daemon["sid"]  # not a session leader: a true double fork
        # Re-parented to the init while the workload still runs.
        workload_pid = session.workload_pid()
        others = [kid for kid in children_of(session.init_pid) if kid != workload_pid]
        assert len(others) == 1
        assert ppid_of(others[0]) == session.init_pid
        result.finish()
        session.assert_nothing_outlived()
    assert result.code == 5, result.stderr
    assert read_lines(marker) == [f"TERM daemon {daemon['pid']}"]
    assert signalled(result.stderr, "SIGTERM") == [daemon["pid"]], result.stderr
    assert reaped(result.stderr, daemon["pid"], "exited with 0"), result.stderr


@pytest.mark.parametrize(
    "scenario", ["nothing left", "leftover ends on TERM", "leftover ignores TERM"]
)
def test_shutdown_time_from_workload_exit_to_init_exit(
    mode: str, scenario: str, tmp_path: Path
) -> None:
    kinds, grace = {
        "nothing left": ([], None),
        "leftover ends on TERM": (["term"], None),
        "leftover ignores TERM": (["ignore"], 1.0),
    }[scenario]
    times = []
    for _ in range(5):
        result = run_tree(tmp_path, mode, 9, kinds, grace)
        assert result.code == 9, result.stderr
        if not kinds:
            assert "shutdown: sent" not in result.stderr, result.stderr
        times.append(result.latency)
    median = statistics.median(times)
    MEASURED[f"{mode}: {scenario}"] = median
    shown = ", ".join(f"{t * 1000:.0f}" for t in times)
    grace_shown = f"{grace:g}" if grace is not None else "5 (default)"
    print(
        f"\n[shutdown time] {mode}, {scenario}, grace {grace_shown} s: "
        f"median {median * 1000:.1f} ms (runs: {shown} ms)"
    )
    if grace is None:
        assert median < 1.0, f"median {median:.3f} s: the default grace of 5 s was waited on"
        assert max(times) < 2.5
    else:
        assert all(0.9 <= t < 5.0 for t in times), times


# ------------------------------------------------- re-parented during shutdown


@pytest.mark.parametrize("kind", ["refork", "refork_ignore"])
def test_process_reparented_during_shutdown_is_ended(mode: str, kind: str, tmp_path: Path) -> None:
    # refork: the new process exits on SIGTERM (default grace 5 s, not waited out);
    # refork_ignore: it ignores SIGTERM and must be killed after the grace (1 s).
    grace = 1.0 if kind == "refork_ignore" else None
    result = run_tree(tmp_path, mode, 4, [kind], grace)
    pid = result.leftover(kind)["pid"]
    assert result.code == 4, result.stderr
    lines = read_lines(result.marker)
    assert lines and lines[0].startswith(f"TERM refork {pid} forked "), lines
    child, child_start = (int(word) for word in lines[0].split()[4:6])
    if not result.session.pid1:
        # The new process never appeared in the test's snapshot: check it by start time.
        assert start_time(child) != child_start, f"pid {child} outlived the init"
    assert reaped(result.stderr, pid, "exited with 0"), result.stderr
    assert child in signalled(result.stderr, "SIGTERM"), result.stderr
    if kind == "refork":
        assert lines[1:] == [f"TERM reforked {child}"]
        assert reaped(result.stderr, child, "exited with 0"), result.stderr
        assert signalled(result.stderr, "SIGKILL") == [], result.stderr
        assert result.latency < 2.5
    else:
        assert lines[1:] == []
        assert signalled(result.stderr, "SIGKILL") == [child], result.stderr
        assert reaped(result.stderr, child, "killed by SIGKILL"), result.stderr
        assert 0.9 <= result.latency < 5.0


def test_process_reparented_during_shutdown_gets_sigterm_despite_a_stubborn_one(
    mode: str, tmp_path: Path
) -> None:
    # A grace long enough for the re-fork to happen within it on a loaded machine.
    result = run_tree(tmp_path, mode, 4, ["ignore", "refork"], grace=3.0)
    stubborn, refork = result.leftover("ignore")["pid"], result.leftover("refork")["pid"]
    assert result.code == 4, result.stderr
    assert 2.9 <= result.latency < 8.0
    lines = read_lines(result.marker)
    assert lines and lines[0].startswith(f"TERM refork {refork} forked "), lines
    child = int(lines[0].split()[4])
    assert reaped(result.stderr, stubborn, "killed by SIGKILL"), result.stderr
    # The new process, re-parented within the grace, must get its SIGTERM then.
    assert child in signalled(result.stderr, "SIGTERM"), result.stderr
    assert lines[1:] == [f"TERM reforked {child}"]


# ------------------------------------------------------------ --kill-after


def timed_exit(session: Session, sent: float) -> tuple[int, float, str]:
    """Wait for the init's exit and check that nothing outlived it.

    Returns its code, the seconds from ``sent`` (a ``time.monotonic()``) to
    its exit, and its stderr.
    """
    code = session.wait_exit(10)
    assert session.exited_at is not None
    took = session.exited_at - sent
    stderr = session.stderr()
    session.assert_nothing_outlived()
    return code, took, stderr


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_kill_after_kills_a_workload_that_ignores_the_stop_signal(
    mode: str, signo: signal.Signals
) -> None:
    args = ["--kill-after", "0.5", "-v", "-w", "--", *workload("shutdown_stubborn.py")]
    with launch(args, mode) as session:
        assert session.readline().startswith("ready ")
        session.wait_up()
        session.collect()
        sent = time.monotonic()
        session.send(signo)
        assert session.readline() == f"workload {int(signo)}"
        code, took, stderr = timed_exit(session, sent)
    assert code == 137, stderr
    assert 0.45 <= took < 4.0, f"the init exited {took:.3f} s after the {signo.name}"
    assert "sent SIGKILL to pid" in stderr, stderr


def test_kill_after_with_pgroup_kills_the_whole_group(mode: str) -> None:
    # A grace of 30 s: had the member been left to the shutdown, the init would
    # still wait for it when the test gives up on it.
    args = ["--kill-after", "0.5", "-g", "-t", "30", "-v", "-w", "--"]
    with launch([*args, *workload("shutdown_stubborn.py", "member")], mode) as session:
        words = session.readline().split()
        assert words[0] == "ready"
        member = int(words[2])
        session.wait_up()
        assert len(session.collect()) == 2
        sent = time.monotonic()
        session.send(signal.SIGTERM)
        got = sorted(session.readline() for _ in range(2))
        assert got == ["member 15", "workload 15"]
        code, took, stderr = timed_exit(session, sent)
    assert code == 137, stderr
    assert 0.45 <= took < 4.0, f"the init exited {took:.3f} s after the SIGTERM"
    assert "sent SIGKILL to group" in stderr, stderr
    assert signalled(stderr, "SIGKILL") == [], stderr
    assert reaped(stderr, member, "killed by SIGKILL"), stderr


def test_kill_after_without_pgroup_leaves_the_group_to_the_shutdown(mode: str) -> None:
    args = ["--kill-after", "0.3", "-t", "1", "-v", "-w", "--"]
    with launch([*args, *workload("shutdown_stubborn.py", "member")], mode) as session:
        member = int(session.readline().split()[2])
        session.wait_up()
        session.collect()
        sent = time.monotonic()
        session.send(signal.SIGTERM)
        assert session.readline() == "workload 15"
        code, took, stderr = timed_exit(session, sent)
    assert code == 137, stderr
    # 0.3 s to the workload's SIGKILL, then the member's grace of 1 s.
    assert 1.2 <= took < 5.0, f"the init exited {took:.3f} s after the SIGTERM"
    assert signalled(stderr, "SIGTERM") == [member], stderr
    assert signalled(stderr, "SIGKILL") == [member], stderr


def test_without_kill_after_a_workload_ignoring_sigterm_keeps_running(mode: str) -> None:
    with launch(["-v", "--", *workload("shutdown_stubborn.py")], mode) as session:
        assert session.readline().startswith("ready ")
        session.wait_up()
        session.collect()
        child = session.workload_pid()
        session.send(signal.SIGTERM)
        assert session.readline() == "workload 15"
        with pytest.raises(subprocess.TimeoutExpired):
            session.run.proc.wait(timeout=1.0)
        assert state_of(child) not in (None, "Z"), "the workload was ended"
        os.kill(child, signal.SIGKILL)  # the clean-up; the init then exits 128+9
        assert session.wait_exit(10) == 137
        session.assert_nothing_outlived()


# ---------------------------------------------- a pending SIGTERM at the exit


def test_sigterm_twice_while_the_workload_stops_slowly(mode: str) -> None:
    with launch(["--", *workload("shutdown_slow_term.py", "0.5", "3")], mode) as session:
        assert session.readline().startswith("ready ")
        session.wait_up()
        session.collect()
        sent = time.monotonic()
        session.send(signal.SIGTERM)
        session.send(signal.SIGTERM)
        assert session.readline() == "term"
        code = session.wait_exit(10)
        assert session.exited_at is not None
        took = session.exited_at - sent
        session.assert_nothing_outlived()
    assert code == 3, f"the init exited {code}: killed by a pending signal?"
    assert took >= 0.45


def test_sigterm_storm_during_the_exit_never_kills_the_init(mode: str) -> None:
    # SIGTERM every 2 ms from the first one to the init's exit: some arrive while
    # the workload exits, some during the shutdown, some as the init leaves.
    with launch(["--", *workload("shutdown_slow_term.py", "0.05", "3")], mode) as session:
        assert session.readline().startswith("ready ")
        session.wait_up()
        session.collect()
        probe = os.pidfd_open(session.run.proc.pid)
        count = 0
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    session.send(signal.SIGTERM)
                except ProcessLookupError:
                    pass  # the init has exited, not yet reaped
                count += 1
                if select.select([probe], [], [], 0.002)[0]:
                    break
        finally:
            os.close(probe)
        code = session.wait_exit(10)
        session.assert_nothing_outlived()
    assert count > 5
    assert code == 3, f"the init exited {code} after {count} SIGTERMs: killed by a pending one?"


# ------------------------------------------------------------------ summary


def test_zz_print_measured_shutdown_times() -> None:
    """Print the medians again, together (they are measured above)."""
    if not MEASURED:
        pytest.skip("the latency tests did not run")
    print("\n[shutdown time] medians of 5 runs, workload exit to init exit:")
    for key, value in MEASURED.items():
        print(f"  {key}: {value * 1000:.1f} ms")
