"""Reliability under load, faults and bad input: the stress suite of nucleus-trio.

Runs the real ``nucleus-trio`` command (as PID 1 of a fresh PID namespace and
as a subreaper) under the loads, faults and inputs that break inits, and
measures it from outside through ``/proc``: the harness polls, the init never
has to. The storm workload is a small C program (``ntw.c``), compiled at run
time into ``stress/build/``.

Scenarios (each a function that takes its size and returns a dict of figures,
with the broken invariants listed under ``"failures"``):

- :func:`zombie_storm`: N double-forked orphans as fast as the workload forks;
- :func:`signal_storm`: N signals of mixed kinds sent to the init in a burst
  while orphans are being made and reaped;
- :func:`stop_cont`: the init stopped (SIGSTOP) and continued mid-storm, with
  signals sent while it is stopped;
- :func:`stdio_faults`: a workload that closes or floods stdout and stderr, an
  init whose stdout and stderr are closed or a full pipe nobody reads;
- :func:`soak`: a workload forking short-lived children and daemons for S
  seconds while signals arrive at random: RSS, descriptors and threads;
- :func:`bad_inputs` and :func:`fuzz_cli`: the command line with bad
  arguments and environments, from a fixed table and at random.

Command line::

    python stress/stress.py --mode short|long [--orphans N] [--signals N]
        [--soak-seconds S] [--fuzz N] [--json OUT] [--markdown OUT]
    python stress/stress.py --bad-inputs-table [--markdown stress/bad_inputs.md]

Standard library and the package only. Every process started is killed by
PID in a ``finally``; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import platform
import random
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "ntw.c"
BUILD = HERE / "build"
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
PREFIX = "nucleus-trio: "
#: Set in the init's environment (so in every descendant's): how leftovers are found.
TAG_VAR = "NT_STRESS_TAG"
MODES = ("pid1", "subreaper")
MIB = 1024

#: The throttle of the storm workload: it waits while the init has this many
#: children (zombies included). A lagging init never fills the PID table of a
#: shared machine; how often it had to wait is reported ("throttled").
DEFAULT_CAP = 4000

Figures = dict[str, Any]


class StressError(AssertionError):
    """The harness itself could not go on (a line that never came, a hang)."""


# ---------------------------------------------------------------- the workload


def build_workload() -> Path:
    """Compile ``ntw.c`` into ``stress/build/ntw`` (again only when it changed)."""
    binary = BUILD / "ntw"
    if binary.exists() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise StressError("no C compiler (gcc or cc): the stress workload stress/ntw.c needs one")
    BUILD.mkdir(parents=True, exist_ok=True)
    partial = BUILD / f"ntw.{os.getpid()}.tmp"
    subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(partial), str(SOURCE)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    partial.replace(binary)
    return binary


def init_command() -> list[str]:
    """The installed ``nucleus-trio`` command, as users run it."""
    found = Path(sys.executable).parent / "nucleus-trio"
    if found.exists():
        return [str(found)]
    return [sys.executable, "-m", "nucleus_trio"]


# ---------------------------------------------------------------- /proc


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's ``children`` list)."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                kids += [int(word) for word in handle.read().split()]
        except OSError:
            pass
    return kids


def descendants_of(pid: int) -> list[int]:
    """Every descendant of ``pid``, breadth first."""
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = children_of(queue.pop(0))
        found += kids
        queue += kids
    return found


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields of ``/proc/PID/stat`` after the command name (field 3 first)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data[data.rfind(b")") + 2 :].split()


def state_of(pid: int) -> str | None:
    """The process state letter (``R``, ``S``, ``Z``, ``T``...), or None if gone."""
    fields = _stat_fields(pid)
    return fields[0].decode() if fields else None


def start_time(pid: int) -> int:
    """Start time in clock ticks since boot (to tell the oldest child)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 2**63


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict (empty if the process is gone)."""
    fields: dict[str, str] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def signal_set(mask_hex: str) -> set[int]:
    """The signal numbers of a ``SigBlk``/``SigCgt`` mask."""
    mask = int(mask_hex, 16)
    return {n + 1 for n in range(64) if mask >> n & 1}


def footprint(pid: int) -> Figures:
    """RSS and peak RSS (KiB), open descriptors and threads of ``pid``."""
    status = proc_status(pid)

    def kib(key: str) -> int:
        return int(status.get(key, "0 kB").split()[0])

    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return {
        "rss_kib": kib("VmRSS"),
        "hwm_kib": kib("VmHWM"),
        "fds": fds,
        "threads": int(status.get("Threads", "0")),
    }


def descriptor_targets(pid: int) -> list[str]:
    """What each open descriptor of ``pid`` is (for a failure's message)."""
    targets: list[str] = []
    try:
        names = sorted(os.listdir(f"/proc/{pid}/fd"), key=int)
    except OSError:
        return targets
    for name in names:
        try:
            targets.append(f"{name}:{os.readlink(f'/proc/{pid}/fd/{name}')}")
        except OSError:
            continue
    return targets


def settled_footprint(pid: int, before: Figures, wait: float = 1.0) -> Figures:
    """:func:`footprint` once the descriptors are back to ``before``'s count,
    or after ``wait`` s: a descriptor open for a moment (a /proc read, a
    lazy import) is no leak; one still open a second later is. Names the
    descriptors when the count still differs."""
    after = footprint(pid)
    deadline = time.monotonic() + wait
    while after["fds"] != before["fds"] and time.monotonic() < deadline:
        time.sleep(0.1)
        after = footprint(pid)
    if after["fds"] != before["fds"]:
        after["fd_targets"] = descriptor_targets(pid)
    return after


def census(init_pid: int) -> tuple[int, int]:
    """(children, zombies among them) of the init, read now."""
    kids = children_of(init_pid)
    return len(kids), sum(1 for kid in kids if state_of(kid) == "Z")


def receiver_up(pid: int) -> bool:
    """Whether the init catches SIGUSR1 and no longer blocks it (trio is up)."""
    status = proc_status(pid)
    if "SigCgt" not in status:
        return False
    return signal.SIGUSR1 in signal_set(status["SigCgt"]) - signal_set(status["SigBlk"])


def blocks(pid: int, signo: int) -> bool:
    """Whether ``pid`` blocks ``signo`` now (the init's first line has run)."""
    status = proc_status(pid)
    return "SigBlk" in status and signo in signal_set(status["SigBlk"])


def tagged_processes(tag: str) -> list[int]:
    """Live processes whose environment holds ``TAG_VAR=tag`` (zombies have none)."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.01
) -> float:
    """Poll ``predicate`` (the harness polls, never the init); return the time taken."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise StressError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - start


# ---------------------------------------------------------------- signals


def forwarded_signals() -> frozenset[int]:
    """The signals the init forwards (from the package, as the spec lists them)."""
    from nucleus_trio.signals import FORWARDED

    return FORWARDED


def signal_mix() -> list[int]:
    """Every kind the storm sends: each forwarded signal (SIGINT and SIGTERM
    included), plus SIGCHLD, SIGTTIN and SIGTTOU, which the init must keep."""
    mix = set(forwarded_signals()) | {signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU}
    return sorted(mix)


def signal_label(signo: int) -> str:
    from nucleus_trio.signals import signal_name

    return signal_name(signo)


def send_signal(pid: int, signo: int, *, retry_for: float = 5.0) -> int:
    """``kill(pid, signo)``; retry a full realtime queue (EAGAIN); return retries."""
    retries = 0
    deadline = time.monotonic() + retry_for
    while True:
        try:
            os.kill(pid, signo)
            return retries
        except OSError as exc:
            if exc.errno != errno.EAGAIN or time.monotonic() > deadline:
                raise
            retries += 1
            time.sleep(0.0005)


# ---------------------------------------------------------------- lines


class Lines:
    """Reads report lines from a pipe, every wait bounded, never losing data."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False
        self.kinds: set[int] = set()
        self.seen: list[str] = []

    def _fill(self, deadline: float) -> bool:
        if self.eof:
            return False
        left = max(deadline - time.monotonic(), 0.0)
        ready, _, _ = select.select([self.fd], [], [], left)
        if not ready:
            return False
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def readline(self, timeout: float) -> str | None:
        """One line, or None at end of file or timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if not self._fill(deadline):
                return None
        line, _, self.buffer = self.buffer.partition(b"\n")
        text = line.decode(errors="replace")
        self.seen.append(text)
        if len(self.seen) > 200:
            del self.seen[:100]
        if text.startswith("kind "):
            self.kinds.add(int(text.split()[1]))
        return text

    def expect(self, prefix: str, timeout: float) -> str:
        """The next line that starts with ``prefix`` (``kind`` lines are recorded)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0))
            if line is None:
                raise StressError(
                    f"no {prefix!r} line within {timeout:.0f} s "
                    f"({'end of file' if self.eof else 'timeout'}; last lines {self.seen[-5:]})"
                )
            if line.startswith(prefix):
                return line

    def peek(self, prefix: str) -> bool:
        """Whether a line starting with ``prefix`` came (read or not yet read)."""
        while self._fill(time.monotonic()):
            pass
        pending = self.buffer.split(b"\n")[:-1]
        return any(line.startswith(prefix.encode()) for line in pending) or any(
            line.startswith(prefix) for line in self.seen
        )

    def drain(self, timeout: float = 0.2) -> None:
        """Read what is there (recording kinds) without waiting long."""
        while self.readline(timeout) is not None:
            pass

    def wait_kinds(self, wanted: set[int], timeout: float) -> float:
        """Wait until every kind of ``wanted`` was reported; return the time taken."""
        start = time.monotonic()
        deadline = start + timeout
        while not wanted <= self.kinds:
            if self.readline(max(deadline - time.monotonic(), 0)) is None:
                break
        return time.monotonic() - start


# ---------------------------------------------------------------- a running init


@dataclass
class Launch:
    """One run of the init under the harness."""

    proc: subprocess.Popen[bytes]
    pid1: bool
    report: Lines
    stdin_w: int
    stderr_path: Path | None
    tag: str
    init_pid: int = 0
    workload_pid: int = 0
    exit_code: int | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def find_pids(self, timeout: float = 30.0) -> None:
        """Find the init (the namespace's PID 1 is unshare's child) and the workload."""
        if self.pid1:
            holder: list[int] = []

            def found() -> bool:
                kids = children_of(self.proc.pid)
                holder[:] = kids
                return bool(kids)

            wait_until(found, timeout, "the namespace's init")
            self.init_pid = holder[0]
        else:
            self.init_pid = self.proc.pid
        kids: list[int] = []

        def workload() -> bool:
            kids[:] = children_of(self.init_pid)
            return bool(kids)

        wait_until(workload, timeout, "the workload")
        self.workload_pid = min(kids, key=start_time)

    def ready(self, timeout: float = 60.0) -> None:
        """Wait for the workload's ``ready`` and the init's signal receiver."""
        self.report.expect("ready", timeout)
        self.find_pids()
        wait_until(lambda: receiver_up(self.init_pid), timeout, "the init's signal receiver")

    def send(self, signo: int) -> int:
        return send_signal(self.init_pid, signo)

    def command(self, text: str) -> None:
        """A command for the workload on its stdin (through the init, which never reads it)."""
        os.write(self.stdin_w, text.encode() + b"\n")

    def alive(self) -> bool:
        return self.proc.poll() is None and state_of(self.init_pid) not in (None, "Z")

    def wait(self, timeout: float) -> int:
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StressError(f"the init did not exit within {timeout:.0f} s") from None
        return self.exit_code

    def finish(self, code_timeout: float = 60.0) -> int:
        """Arm the workload, send the final SIGTERM, return the init's exit code."""
        self.command("arm")
        self.report.expect("armed", 30)
        self.send(signal.SIGTERM)
        return self.wait(code_timeout)

    def stderr_text(self) -> str:
        if self.stderr_path is None:
            return ""
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""


def kill_tree(proc: subprocess.Popen[bytes], workload_pid: int, tag: str) -> list[int]:
    """Kill everything a launch started, by PID; return the tagged stragglers found."""
    if workload_pid:
        with contextlib.suppress(OSError):
            os.kill(workload_pid, signal.SIGKILL)  # stop its forking first
    for _ in range(50):
        pids = descendants_of(proc.pid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    stragglers = tagged_processes(tag)
    for pid in stragglers:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return stragglers


@contextlib.contextmanager
def launch(
    mode: str,
    init_args: Sequence[str],
    workload_args: Sequence[str],
    *,
    report_pipe: bool = False,
    stdout: int | None = None,
    stderr: int | None = None,
    wrapper: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    program: Sequence[str] | None = None,
    init: Sequence[str] | None = None,
) -> Iterator[Launch]:
    """Start ``nucleus-trio INIT_ARGS -- ntw WORKLOAD_ARGS`` (as PID 1 with ``pid1``).

    The workload reports on the init's stdout, or with ``report_pipe`` on a
    pipe of its own (``out=FD`` is added). ``stdout``/``stderr`` replace the
    init's (default: a pipe read by the harness, a temporary file).
    ``pass_fds`` are passed on to the init; ``program`` replaces the ntw
    workload (it reports on stdout); ``init`` the installed command (which
    runs its interpreter isolated, so only ``python -m nucleus_trio`` sees a
    fault injector on PYTHONPATH). Whatever happens, every process is
    killed by PID on the way out.
    """
    binary = build_workload()
    tag = uuid.uuid4().hex
    run_env = dict(os.environ if env is None else env)
    run_env[TAG_VAR] = tag
    stdin_r, stdin_w = os.pipe()
    opened: list[int] = [stdin_r, stdin_w]
    report_r: int
    report_w: int | None = None
    extra: list[str] = []
    if report_pipe or stdout is not None:
        report_r, report_w = os.pipe()
        opened += [report_r, report_w]
        extra = [f"out={report_w}"]
    stderr_file = None
    stderr_path = None
    if stderr is None:
        handle, name = tempfile.mkstemp(prefix="nt-stress-stderr-")
        stderr_path = Path(name)
        stderr_file = handle
        opened.append(handle)
    pid1 = mode == "pid1"
    command = [
        *(UNSHARE if pid1 else []),
        *wrapper,
        *(init_command() if init is None else init),
        *init_args,
        "--",
        *([str(binary), *workload_args, *extra] if program is None else program),
    ]
    proc = subprocess.Popen(
        command,
        stdin=stdin_r,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=stderr_file if stderr is None else stderr,
        start_new_session=True,
        env=run_env,
        pass_fds=(*pass_fds, *([] if report_w is None else [report_w])),
    )
    os.close(stdin_r)
    opened.remove(stdin_r)
    if report_w is not None:
        os.close(report_w)
        opened.remove(report_w)
    else:
        assert proc.stdout is not None
        report_r = proc.stdout.fileno()
    run = Launch(proc, pid1, Lines(report_r), stdin_w, stderr_path, tag)
    try:
        yield run
    finally:
        stragglers = kill_tree(proc, run.workload_pid, tag)
        if stragglers and run.exit_code is not None:
            raise StressError(f"processes outlived the init: {stragglers}")
        for closer in run.closers:
            with contextlib.suppress(Exception):
                closer()
        if proc.stdout is not None:
            proc.stdout.close()
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        if stderr_path is not None:
            with contextlib.suppress(OSError):
                stderr_path.unlink()


class Sampler(threading.Thread):
    """Samples the init's children and zombies from outside, every ``interval``
    at most (slower when a sample is costly, so the harness stays light)."""

    def __init__(self, init_pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.init_pid = init_pid
        self.interval = interval
        self.halt = threading.Event()
        self.peak_zombies = 0
        self.peak_children = 0
        self.samples = 0

    def run(self) -> None:
        while not self.halt.is_set():
            began = time.monotonic()
            children, zombies = census(self.init_pid)
            self.peak_children = max(self.peak_children, children)
            self.peak_zombies = max(self.peak_zombies, zombies)
            self.samples += 1
            cost = time.monotonic() - began
            self.halt.wait(max(self.interval, 2 * cost))

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


def only_workload_left(run: Launch) -> Callable[[], bool]:
    """A predicate: the init's one child is the workload (every orphan reaped)."""
    return lambda: children_of(run.init_pid) == [run.workload_pid]


def tracebacks_in(text: str) -> int:
    return text.count("Traceback (most recent call last)")


def finish_figures(fig: Figures, failures: list[str], run: Launch, expected_code: int) -> None:
    """The checks every scenario ends with: exit code, tracebacks, leftovers."""
    fig["exit_code"] = run.exit_code
    fig["expected_code"] = expected_code
    if run.exit_code != expected_code:
        failures.append(f"exit code {run.exit_code}, expected {expected_code}")
    stderr = run.stderr_text()
    fig["tracebacks"] = tracebacks_in(stderr)
    if fig["tracebacks"]:
        failures.append(f"traceback on the init's stderr: {stderr[-3000:]}")
    left = tagged_processes(run.tag)
    fig["processes_left"] = len(left)
    if left:
        failures.append(f"processes outlived the init: {left}")


# ---------------------------------------------------------------- scenarios


def zombie_storm(
    mode: str,
    orphans: int,
    *,
    batch: int = 8,
    cap: int = DEFAULT_CAP,
    code: int = 3,
    init_args: Sequence[str] = (),
    rss_margin_kib: int = 5 * MIB,
    backlog: int | None = None,
) -> Figures:
    """N orphans as fast as the workload forks; the init reaps every one.

    Figures: fork and reap rates, peak zombies and children (sampled), RSS,
    descriptors and threads before and after, the init's CPU time. The reap
    rate of the storm is bounded by the fork rate; then a backlog (default
    N/10, 2,000 to 10,000) is made while the init is stopped, and the time it
    takes to reap them all once continued gives the reap rate of a backlog.
    """
    fig: Figures = {"scenario": "zombie storm", "mode": mode, "orphans": orphans}
    failures: list[str] = []
    go = int(signal.SIGUSR1)
    if backlog is None:
        backlog = max(1, min(max(orphans // 10, 2000), 10_000, orphans))
    args = [
        f"orphans={orphans}",
        f"batch={batch}",
        f"cap={cap}",
        f"go={go}",
        f"code={code}",
        f"again={backlog}",
    ]
    with launch(mode, init_args, args) as run:
        run.ready()
        time.sleep(0.3)
        before = footprint(run.init_pid)
        cpu0 = cpu_seconds(run.init_pid)
        sampler = Sampler(run.init_pid)
        sampler.start()
        try:
            began = time.monotonic()
            run.send(go)
            line = run.report.expect("storm", 120 + orphans / 200)
            made_at = time.monotonic()
            _, made, micros, eagain, throttled = line.split()
            wait_until(only_workload_left(run), 60 + orphans / 1000, "every orphan reaped")
            reaped_at = time.monotonic()
        finally:
            sampler.stop()
        fig["alive"] = run.alive()
        time.sleep(0.5)
        after = settled_footprint(run.init_pid, before)
        fig["init_cpu_s"] = round(cpu_seconds(run.init_pid) - cpu0, 2)
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        # The backlog: zombies made while the init is stopped, reaped at once.
        os.kill(run.init_pid, signal.SIGSTOP)
        try:
            wait_until(lambda: state_of(run.init_pid) in ("T", "t"), 10, "the init stopped")
            os.kill(run.workload_pid, signal.SIGUSR2)
            run.report.expect("storm", 120 + backlog / 200)
            wait_until(
                lambda: census(run.init_pid)[1] >= backlog, 30, "the backlog's zombies", 0.05
            )
            fig["backlog_zombies"] = census(run.init_pid)[1]
        finally:
            continued = time.monotonic()
            os.kill(run.init_pid, signal.SIGCONT)
        wait_until(only_workload_left(run), 60 + backlog / 1000, "the backlog reaped", 0.001)
        took = time.monotonic() - continued
        fig["backlog_reap_ms"] = round(took * 1000, 1)
        fig["backlog_reap_rate"] = round(backlog / max(took, 1e-6))
        fig["rss_after_backlog_kib"] = footprint(run.init_pid)["rss_kib"]
        code_got = run.finish()
        fig.update(
            made=int(made),
            fork_seconds=round(int(micros) / 1e6, 2),
            fork_rate=round(int(made) / max(int(micros) / 1e6, 1e-6)),
            reap_seconds=round(reaped_at - began, 2),
            reap_rate=round(int(made) / max(reaped_at - began, 1e-6)),
            last_reaped_after_ms=round((reaped_at - made_at) * 1000),
            peak_zombies=sampler.peak_zombies,
            peak_children=sampler.peak_children,
            samples=sampler.samples,
            throttled=int(throttled),
            fork_eagain=int(eagain),
            rss_before_kib=before["rss_kib"],
            rss_after_kib=after["rss_kib"],
            rss_peak_kib=after["hwm_kib"],
            fds_before=before["fds"],
            fds_after=after["fds"],
            fd_targets_after=after.get("fd_targets", []),
            threads_before=before["threads"],
            threads_after=after["threads"],
        )
        if int(made) != orphans:
            failures.append(f"the workload made {made} orphans of {orphans}")
        if not fig["alive"]:
            failures.append("the init died during the storm")
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} orphans left unreaped")
        growth = max(after["rss_kib"], fig["rss_after_backlog_kib"]) - before["rss_kib"]
        if growth > rss_margin_kib:
            failures.append(f"RSS grew by {growth} KiB (margin {rss_margin_kib})")
        if fig["backlog_zombies"] < backlog:
            failures.append(f"backlog of {fig['backlog_zombies']} zombies, {backlog} made")
        if after["fds"] != before["fds"]:
            failures.append(f"descriptors {before['fds']} -> {after['fds']}")
        assert code_got == run.exit_code
        finish_figures(fig, failures, run, code)
    fig["failures"] = failures
    return fig


#: Signals the kernel cancels against each other while pending: a stop signal
#: (SIGTSTP, SIGTTIN, SIGTTOU) discards a pending SIGCONT, and SIGCONT a pending
#: stop signal, whatever the receiver's dispositions. No init can forward a
#: signal that never reached it, so after a burst these are checked apart.
CANCELLING = frozenset({signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})


def signal_storm(
    mode: str,
    signals: int,
    *,
    cap: int = DEFAULT_CAP,
    code: int = 5,
    seed: int = 1,
    rss_margin_kib: int = 5 * MIB,
) -> Figures:
    """N signals of mixed kinds at the init in one burst, while orphans are
    being made and reaped: it stays up, every kind it forwards reaches the
    workload (trio merges repeats, so kinds are compared, not counts), none it
    must keep does, and the last SIGTERM ends the run with the right code.

    SIGCONT and SIGTSTP are in the burst, but the kernel may cancel them
    against each other (:data:`CANCELLING`): after the burst each is sent
    once more, one after the other, and must arrive too."""
    fig: Figures = {"scenario": "signal storm", "mode": mode, "signals": signals}
    failures: list[str] = []
    mix = signal_mix()
    expected = set(mix) & set(forwarded_signals())
    args = ["loop=1", "armed=0", f"cap={cap}", f"code={code}"]
    with launch(mode, (), args) as run:
        run.ready()
        before = footprint(run.init_pid)
        sampler = Sampler(run.init_pid)
        sampler.start()
        time.sleep(0.3)  # the orphans are under way
        rng = random.Random(seed)
        order = list(mix)
        eagain = 0
        sent = 0
        sent_kinds: set[int] = set()
        try:
            began = time.monotonic()
            while sent < signals:
                rng.shuffle(order)
                for signo in order[: signals - sent]:
                    try:
                        eagain += send_signal(run.init_pid, signo)
                    except ProcessLookupError:
                        failures.append(f"the init died after {sent} signals")
                        break
                    sent += 1
                    sent_kinds.add(signo)
                else:
                    continue
                break
            burst = time.monotonic() - began
            fig["alive_after_burst"] = run.alive()
            took = run.report.wait_kinds((expected & sent_kinds) - CANCELLING, 60)
            for signo in (signal.SIGTSTP, signal.SIGCONT):
                if signo not in sent_kinds:
                    continue
                # A stop signal still on its way to the workload from the
                # burst discards a pending SIGCONT there (the kernel's rule),
                # so a lone SIGCONT may need a second try.
                for _ in range(3):
                    run.send(signo)
                    sent += 1
                    run.report.wait_kinds({signo}, 10)
                    if signo in run.report.kinds:
                        break
            run.command("stop")
            line = run.report.expect("storm", 120)
            wait_until(only_workload_left(run), 120, "every orphan reaped")
        finally:
            sampler.stop()
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        time.sleep(0.3)
        after = settled_footprint(run.init_pid, before)
        fig["alive"] = run.alive()
        received = set(run.report.kinds)
        run.finish()
        final = run.report.expect("final", 10).split()
        missing = (expected & sent_kinds) - received
        unexpected = received - expected
        fig.update(
            sent=sent,
            burst_seconds=round(burst, 2),
            burst_rate=round(sent / max(burst, 1e-6)),
            queue_full_retries=eagain,
            kinds_sent=len(sent_kinds),
            kinds_forwardable=len(expected & sent_kinds),
            kinds_received=len(received & expected),
            kinds_missing=sorted(signal_label(s) for s in missing),
            kinds_unexpected=sorted(signal_label(s) for s in unexpected),
            all_kinds_after_s=round(took, 2),
            workload_deliveries=int(final[1]),
            orphans_made=int(line.split()[1]),
            peak_zombies=sampler.peak_zombies,
            peak_children=sampler.peak_children,
            rss_before_kib=before["rss_kib"],
            rss_after_kib=after["rss_kib"],
            fds_before=before["fds"],
            fds_after=after["fds"],
            fd_targets_after=after.get("fd_targets", []),
            threads_before=before["threads"],
            threads_after=after["threads"],
        )
        if not fig["alive_after_burst"] or not fig["alive"]:
            failures.append("the init died in the signal storm")
        if missing:
            failures.append(f"kinds sent but never received: {fig['kinds_missing']}")
        if unexpected:
            failures.append(f"kinds received but not to be forwarded: {fig['kinds_unexpected']}")
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} orphans left unreaped")
        if after["rss_kib"] - before["rss_kib"] > rss_margin_kib:
            failures.append(f"RSS {before['rss_kib']} -> {after['rss_kib']} KiB")
        finish_figures(fig, failures, run, code)
    fig["failures"] = failures
    return fig


def stop_cont(
    mode: str,
    orphans: int,
    *,
    min_cycles: int = 5,
    hold: float = 0.5,
    cap: int = 500,
    code: int = 6,
) -> Figures:
    """The init stopped from outside (SIGSTOP), signals sent to it meanwhile,
    then continued (SIGCONT), again and again until the storm is over (at
    least ``min_cycles`` times): nothing is lost once it resumes.

    While the init is stopped its zombies pile up until the workload's
    throttle (``cap``) holds the storm, so every stop lands mid-storm. Stop
    signals (SIGTSTP...) are not sent while it is stopped: the SIGCONT that
    resumes it makes the kernel discard them (see :data:`CANCELLING`)."""
    fig: Figures = {"scenario": "SIGSTOP/SIGCONT mid-storm", "mode": mode, "orphans": orphans}
    failures: list[str] = []
    go = int(signal.SIGUSR1)
    forwarded = forwarded_signals()
    while_stopped = sorted(forwarded - CANCELLING - {signal.SIGUSR1})
    # Small enough a throttle that the storm needs several stops to get through.
    cap = max(1, min(cap, orphans // (3 * min_cycles)))
    args = [f"orphans={orphans}", f"cap={cap}", f"go={go}", "armed=0", f"code={code}"]
    sent_kinds: set[int] = {signal.SIGUSR1, signal.SIGCONT}
    stopped_total = 0.0
    cycles = 0
    with launch(mode, (), args) as run:
        run.ready()
        sampler = Sampler(run.init_pid)
        sampler.start()
        try:
            run.send(go)
            while cycles < 1000:
                time.sleep(0.02)
                if run.report.peek("storm"):
                    break  # the storm is over

                os.kill(run.init_pid, signal.SIGSTOP)
                wait_until(
                    lambda: state_of(run.init_pid) in ("T", "t"), 10, "the init to be stopped"
                )
                began = time.monotonic()
                # A different slice of the kinds at each stop; SIGTERM and
                # SIGINT every time: the workload is not armed.
                part = while_stopped[cycles % min_cycles :: min_cycles]
                for signo in [*part, signal.SIGTERM, signal.SIGINT]:
                    send_signal(run.init_pid, signo)
                    sent_kinds.add(signo)
                time.sleep(hold)
                stopped_total += time.monotonic() - began
                os.kill(run.init_pid, signal.SIGCONT)
                cycles += 1
            line = run.report.expect("storm", 120 + orphans / 200)
            wait_until(only_workload_left(run), 60 + orphans / 1000, "every orphan reaped")
            took = run.report.wait_kinds(sent_kinds & forwarded, 60)
        finally:
            sampler.stop()
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        fig["alive"] = run.alive()
        received = set(run.report.kinds)
        run.finish()
        missing = (sent_kinds & forwarded) - received
        fig.update(
            cycles=cycles,
            cap=cap,
            stopped_seconds=round(stopped_total, 2),
            orphans_made=int(line.split()[1]),
            throttled=int(line.split()[4]),
            peak_zombies=sampler.peak_zombies,
            kinds_sent=len(sent_kinds),
            kinds_received=len(received & sent_kinds),
            kinds_missing=sorted(signal_label(s) for s in missing),
            all_kinds_after_s=round(took, 2),
        )
        if missing:
            failures.append(f"kinds sent while stopped never received: {fig['kinds_missing']}")
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} orphans left unreaped")
        if not fig["alive"]:
            failures.append("the init died")
        if int(line.split()[1]) != orphans:
            failures.append(f"made {line.split()[1]} orphans of {orphans}")
        if cycles < min_cycles:
            failures.append(f"the storm was over after {cycles} stops ({min_cycles} wanted)")
        finish_figures(fig, failures, run, code)
    fig["failures"] = failures
    return fig


STDIO_CASES = ("workload-closes", "workload-floods", "init-closed", "init-full-pipe")

#: Kinds sent in the stdio scenarios (SIGPIPE among them: sent from outside,
#: it is the workload's; the init's own SIGPIPEs never are).
STDIO_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGPIPE,
    signal.SIGWINCH,
    signal.SIGTERM,
    signal.SIGRTMIN + 1,
)


def _drainer(fd: int, counter: list[int], tail: bytearray) -> threading.Thread:
    """A thread that reads ``fd`` to its end, counting bytes, keeping a tail."""

    def drain() -> None:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            counter[0] += len(chunk)
            tail.extend(chunk)
            if len(tail) > 1 << 20:
                del tail[: len(tail) - (1 << 19)]

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


def fill_pipe(write_end: int) -> int:
    """Fill a pipe to the brim (then leave its write end blocking); return bytes."""
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    total = 0
    chunk = b"f" * 4096
    with contextlib.suppress(BlockingIOError):
        while True:
            total += os.write(write_end, chunk)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags)
    return total


def stdio_faults(
    case: str, mode: str, orphans: int, *, flood_bytes: int = 16 << 20, code: int = 9
) -> Figures:
    """stdout and stderr that fail: the workload closes or floods its own, or
    the init's are closed or a full pipe nobody reads. The init (with ``-w``,
    so it writes for every orphan) keeps reaping and forwarding, and exits
    with the workload's code."""
    if case not in STDIO_CASES:
        raise ValueError(case)
    fig: Figures = {"scenario": f"stdio: {case}", "mode": mode, "orphans": orphans}
    failures: list[str] = []
    args = [f"orphans={orphans}", "armed=0", f"code={code}"]
    init_args = ["-w"]
    stdout: int | None = None
    stderr: int | None = None
    wrapper: list[str] = []
    pipes: list[int] = []
    out_count, err_count = [0], [0]
    out_tail, err_tail = bytearray(), bytearray()
    threads: list[threading.Thread] = []
    if case == "workload-closes":
        args.append("closeout=1")
    elif case == "workload-floods":
        args.append(f"flood={flood_bytes}")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pipes += [out_r, out_w, err_r, err_w]
        stdout, stderr = out_w, err_w
        threads = [
            _drainer(out_r, out_count, out_tail),
            _drainer(err_r, err_count, err_tail),
        ]
    elif case == "init-closed":
        init_args += ["--audit", "-"]
        wrapper = ["sh", "-c", 'exec "$@" >&- 2>&-', "nt-closed"]
        stdout = subprocess.DEVNULL
        stderr = subprocess.DEVNULL
    else:
        init_args += ["--audit", "-"]
        full_r, full_w = os.pipe()
        pipes += [full_r, full_w]
        fig["prefilled_bytes"] = fill_pipe(full_w)
        stdout = stderr = full_w
    try:
        with launch(
            mode, init_args, args, report_pipe=True, stdout=stdout, stderr=stderr, wrapper=wrapper
        ) as run:
            for fd in (stdout, stderr):
                if fd is not None and fd in pipes:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                        pipes.remove(fd)
            run.ready()
            line = run.report.expect("storm", 120 + orphans / 200)
            wait_until(only_workload_left(run), 60 + orphans / 1000, "every orphan reaped")
            for signo in STDIO_SIGNALS:
                run.send(signo)
            took = run.report.wait_kinds(set(STDIO_SIGNALS), 60)
            fig["alive"] = run.alive()
            # Every child but the workload: zombies, or orphans about to be.
            fig["zombies_left"] = len(children_of(run.init_pid)) - 1
            began = time.monotonic()
            run.finish(code_timeout=60)
            fig["exit_after_term_s"] = round(time.monotonic() - began, 2)
            received = run.report.kinds
            missing = set(STDIO_SIGNALS) - received
            fig.update(
                orphans_made=int(line.split()[1]),
                kinds_sent=len(STDIO_SIGNALS),
                kinds_received=len(received & set(STDIO_SIGNALS)),
                kinds_missing=sorted(signal_label(s) for s in missing),
                all_kinds_after_s=round(took, 2),
            )
            if missing:
                failures.append(f"kinds never received: {fig['kinds_missing']}")
            if fig["zombies_left"]:
                failures.append(f"{fig['zombies_left']} orphans left unreaped")
            if not fig["alive"]:
                failures.append("the init died")
            if fig["exit_after_term_s"] > 15:
                failures.append(f"exit took {fig['exit_after_term_s']} s after SIGTERM")
            for thread in threads:
                thread.join(30)
            if case == "workload-floods":
                fig["flooded_bytes"] = out_count[0] + err_count[0]
                tail = bytes(err_tail).decode(errors="replace")
                fig["tracebacks_tail"] = tracebacks_in(tail)
                if fig["flooded_bytes"] < 2 * flood_bytes:
                    failures.append(f"only {fig['flooded_bytes']} bytes of the flood arrived")
                if fig["tracebacks_tail"]:
                    failures.append("traceback on the init's stderr")
            if case == "init-full-pipe":
                unread = b""
                flags = fcntl.fcntl(pipes[0], fcntl.F_GETFL)
                fcntl.fcntl(pipes[0], fcntl.F_SETFL, flags | os.O_NONBLOCK)
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(pipes[0], 1 << 16):
                        unread += chunk
                fig["pipe_bytes_after"] = len(unread)
                if tracebacks_in(unread.decode(errors="replace")):
                    failures.append("traceback on the init's stderr")
            finish_figures(fig, failures, run, code)
    finally:
        for fd in pipes:
            with contextlib.suppress(OSError):
                os.close(fd)
    fig["failures"] = failures
    return fig


def exercise(
    mode: str,
    init_args: Sequence[str] = (),
    *,
    orphans: int = 2000,
    code: int = 13,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    kinds: Sequence[int] | None = None,
    lost_ok: frozenset[int] = frozenset(),
    reap_timeout: float = 30.0,
    tracebacks_allowed: bool = False,
    init: Sequence[str] | None = None,
) -> Figures:
    """The init's daily work under a fault of the caller's making: a storm of
    ``orphans``, then one signal of every kind in ``kinds`` (default: every
    forwarded kind but those the kernel cancels), then the final SIGTERM.

    Figures: orphans made, zombies left once the storm is over (after
    ``reap_timeout`` at most), kinds received and missing, the exit code, and
    the init's stderr (``stderr``) for the caller to look into. Kinds in
    ``lost_ok`` are sent but not required (a fault may eat them). ``init``:
    as :func:`launch` takes it.
    """
    fig: Figures = {"scenario": "exercise", "mode": mode, "orphans": orphans}
    failures: list[str] = []
    go = int(signal.SIGUSR1)
    wanted = sorted(forwarded_signals() - CANCELLING) if kinds is None else list(kinds)
    args = [f"orphans={orphans}", f"go={go}", "armed=0", f"code={code}"]
    with launch(mode, init_args, args, env=env, pass_fds=pass_fds, init=init) as run:
        run.ready()
        run.send(go)
        line = run.report.expect("storm", 120 + orphans / 200)
        fig["orphans_made"] = int(line.split()[1])
        try:
            fig["reaped_after_s"] = round(
                wait_until(only_workload_left(run), reap_timeout, "every orphan reaped"), 2
            )
        except StressError as exc:
            failures.append(str(exc))
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} orphans left unreaped")
        for signo in wanted:
            run.send(signo)
        required = set(wanted) - lost_ok
        fig["all_kinds_after_s"] = round(run.report.wait_kinds(required, 30), 2)
        missing = required - run.report.kinds
        fig["kinds_sent"] = len(wanted)
        fig["kinds_missing"] = sorted(signal_label(s) for s in missing)
        if missing:
            failures.append(f"kinds never received: {fig['kinds_missing']}")
        fig["alive"] = run.alive()
        if not fig["alive"]:
            failures.append("the init died")
        began = time.monotonic()
        run.finish(code_timeout=60)
        fig["exit_after_term_s"] = round(time.monotonic() - began, 2)
        fig["stderr"] = run.stderr_text()[-200_000:]
        finish_figures(fig, failures, run, code)
        if tracebacks_allowed:
            failures[:] = [f for f in failures if not f.startswith("traceback on")]
    fig["failures"] = failures
    return fig


def soak(
    mode: str,
    seconds: float,
    *,
    rate: float = 50.0,
    daemon_rate: float = 5.0,
    signal_interval: float = 0.1,
    code: int = 11,
    seed: int = 7,
    rss_margin_kib: int = 5 * MIB,
    progress: Callable[[str], None] | None = None,
) -> Figures:
    """``seconds`` of a workload that forks short-lived children and daemons
    (double-forked, living 0.1 to 5 s) while signals of every kind arrive at
    random; the init audits to /dev/null all along. RSS, descriptors and
    threads must stay flat after the warm-up (the first tenth, 3 s at least)."""
    fig: Figures = {"scenario": "soak", "mode": mode, "seconds": seconds}
    failures: list[str] = []
    forwarded = forwarded_signals()
    kinds = sorted(forwarded | {signal.SIGCHLD})
    args = [
        f"soak={seconds + 3600}",
        f"rate={rate}",
        f"drate={daemon_rate}",
        "armed=0",
        f"code={code}",
    ]
    init_args = ["--audit", "/dev/null", "-t", "2"]
    rng = random.Random(seed)
    warmup = max(3.0, seconds / 10)
    sample_every = max(1.0, seconds / 300)
    samples: list[Figures] = []
    sent = 0
    sent_kinds: set[int] = set()
    peak_children = peak_zombies = 0
    with launch(mode, init_args, args) as run:
        run.ready()
        cpu0 = cpu_seconds(run.init_pid)
        began = time.monotonic()
        next_sample = began
        next_note = began + 60
        deadline = began + seconds
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if not run.alive():
                failures.append(f"the init died after {now - began:.0f} s")
                break
            if now >= next_sample:
                sample = footprint(run.init_pid)
                children, zombies = census(run.init_pid)
                sample.update(t=round(now - began, 1), children=children, zombies=zombies)
                samples.append(sample)
                peak_children = max(peak_children, children)
                peak_zombies = max(peak_zombies, zombies)
                next_sample += sample_every
            if progress is not None and now >= next_note:
                last = samples[-1] if samples else {}
                progress(
                    f"soak {now - began:.0f}/{seconds:.0f} s: {sent} signals, "
                    f"rss {last.get('rss_kib')} KiB, fds {last.get('fds')}, "
                    f"threads {last.get('threads')}"
                )
                next_note += 60
            signo = rng.choice(kinds)
            send_signal(run.init_pid, signo)
            sent += 1
            sent_kinds.add(signo)
            run.report.drain(0)
            time.sleep(rng.uniform(0, 2 * signal_interval))
        fig["init_cpu_s"] = round(cpu_seconds(run.init_pid) - cpu0, 2)
        run.command("stop")
        line = run.report.expect("soak", 60)
        wait_until(only_workload_left(run), 30, "the daemons to end and be reaped")
        # Every child but the workload: zombies, or orphans about to be.
        fig["zombies_left"] = len(children_of(run.init_pid)) - 1
        took = run.report.wait_kinds(sent_kinds & forwarded, 30)
        received = set(run.report.kinds)
        fig["alive"] = run.alive()
        run.finish()
        steady = [s for s in samples if s["t"] >= warmup] or samples[-1:]
        base = steady[0] if steady else {"rss_kib": 0, "fds": 0, "threads": 0}
        rss_max = max(s["rss_kib"] for s in steady) if steady else 0
        missing = (sent_kinds & forwarded) - received
        fig.update(
            children=int(line.split()[1]),
            daemons=int(line.split()[2]),
            signals_sent=sent,
            kinds_sent=len(sent_kinds),
            kinds_forwardable=len(sent_kinds & forwarded),
            kinds_received=len(received & sent_kinds),
            kinds_missing=sorted(signal_label(s) for s in missing),
            kinds_unexpected=sorted(signal_label(s) for s in received - forwarded),
            all_kinds_after_s=round(took, 2),
            samples=len(samples),
            rss_first_kib=samples[0]["rss_kib"] if samples else 0,
            rss_after_warmup_kib=base["rss_kib"],
            rss_max_kib=rss_max,
            rss_last_kib=steady[-1]["rss_kib"] if steady else 0,
            fds_range=[min(s["fds"] for s in steady), max(s["fds"] for s in steady)]
            if steady
            else [],
            threads_range=[min(s["threads"] for s in steady), max(s["threads"] for s in steady)]
            if steady
            else [],
            peak_children=peak_children,
            peak_zombies_sampled=peak_zombies,
        )
        if rss_max - base["rss_kib"] > rss_margin_kib:
            failures.append(f"RSS grew {base['rss_kib']} -> {rss_max} KiB after the warm-up")
        if steady and len({s["fds"] for s in steady}) > 1:
            failures.append(f"descriptors varied: {fig['fds_range']}")
        if steady and len({s["threads"] for s in steady}) > 1:
            failures.append(f"threads varied: {fig['threads_range']}")
        if missing:
            failures.append(f"kinds never received: {fig['kinds_missing']}")
        if fig["kinds_unexpected"]:
            failures.append(f"kinds received but not to be forwarded: {fig['kinds_unexpected']}")
        if fig["zombies_left"]:
            failures.append(f"{fig['zombies_left']} processes left under the init")
        if not fig["alive"]:
            failures.append("the init died")
        finish_figures(fig, failures, run, code)
        fig["rss_series_kib"] = [s["rss_kib"] for s in samples[:: max(1, len(samples) // 60)]]
    fig["failures"] = failures
    return fig


# ---------------------------------------------------------------- bad input

Arg = str | bytes

#: The base environment of every command-line run (plus what a case adds).
CLI_BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass
class CliResult:
    """One run of the real command line."""

    args: list[Arg]
    env: dict[str, str]
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool


@dataclass
class Expected:
    """What the spec says a command line must end with.

    ``kind``: ``usage`` (2, a reason and the usage), ``audit`` (2, one line),
    ``exec`` (126 or 127, one line), ``run`` (the workload's code, or any
    code when ``code`` is None), ``info`` (0, help or version on stdout),
    ``pause`` (0 on SIGTERM).
    """

    kind: str
    code: int | None


def as_text(arg: Arg) -> str:
    return os.fsdecode(arg) if isinstance(arg, bytes) else arg


def _audit_opens(dest: str, cwd: str) -> bool:
    if dest == "-":
        return True
    if dest.startswith("fd:"):
        return int(dest[3:]) in (1, 2)
    path = os.path.join(cwd, dest)
    raw = os.fsencode(path)
    if len(raw) >= 4096 or any(len(part) > 255 for part in raw.split(b"/")):
        return False
    if os.path.isdir(path):
        return False
    if os.path.exists(path):
        return os.access(path, os.W_OK)
    return os.path.isdir(os.path.dirname(path) or cwd)


def audit_is_safe(dest: str | None, cwd: str) -> bool:
    """Whether a fuzzed ``--audit DEST`` stays inside the scratch directory
    (a random command line must never append to ``/etc/passwd``)."""
    if dest is None or dest == "-" or dest.startswith("fd:"):
        return True
    if dest.startswith("/") or "\\" in dest:
        return False
    real = os.path.realpath(os.path.join(cwd, dest))
    return real.startswith(os.path.realpath(cwd) + os.sep)


def _exec_errno(path: str) -> int | None:
    """What ``execve(path)`` fails with as root, or None when it would run."""
    raw = os.fsencode(path)
    if len(raw) >= 4096 or any(len(part) > 255 for part in raw.split(b"/")):
        return errno.ENAMETOOLONG
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return errno.ENOENT
    except NotADirectoryError:
        return errno.ENOTDIR
    except OSError as exc:
        return exc.errno
    import stat

    if stat.S_ISDIR(info.st_mode) or not stat.S_ISREG(info.st_mode):
        return errno.EACCES
    if not info.st_mode & 0o111:
        return errno.EACCES
    return None


#: What the harmless workloads of the fuzz exit with (None: not predicted).
def _workload_code(real: str, argv: Sequence[str]) -> int | None:
    base = os.path.basename(real)
    if base == "true":
        return 0
    if base == "false":
        return 1
    if base in ("sh", "dash", "bash") and len(argv) == 3 and argv[1] == "-c":
        words = argv[2].split()
        if len(words) == 2 and words[0] == "exit" and words[1].isdigit():
            return int(words[1]) % 256
    return None


def expect_cli(args: Sequence[Arg], env: Mapping[str, str], cwd: str) -> Expected:
    """The outcome the spec prescribes for ``nucleus-trio ARGS`` in ``env``/``cwd``.

    Which words are options is the parser's business (tested on its own in
    tests/test_config.py); from there on, the exit code is worked out here
    independently: the program looked up the way ``execvp`` does, in the
    workload's PATH.
    """
    from nucleus_trio.config import Action, UsageError, parse_args
    from nucleus_trio.environment import MINIMAL_ENV

    try:
        action, config = parse_args([as_text(arg) for arg in args], env)
    except UsageError:
        return Expected("usage", 2)
    if action != Action.RUN:
        return Expected("info", 0)
    if config.audit is not None and not _audit_opens(config.audit, cwd):
        return Expected("audit", 2)
    if config.pause:
        return Expected("pause", 0)
    workload_env = dict(MINIMAL_ENV) if config.clean_env else dict(env)
    workload_env.update(config.env)
    program = config.argv[0]
    if "/" in program:
        candidates = [program]
    else:
        search = workload_env.get("PATH")
        dirs = (os.defpath if search is None else search).split(os.pathsep)
        candidates = [os.path.join(d, program) for d in dirs]
    saved: int | None = None
    for candidate in candidates:
        full = os.path.join(cwd, candidate)
        failure = _exec_errno(full)
        if failure is None:
            code = _workload_code(os.path.realpath(full), config.argv)
            if code is not None and code in config.remap_exit:
                code = 0
            return Expected("run", code)
        if failure not in (errno.ENOENT, errno.ENOTDIR) and saved is None:
            saved = failure
    return Expected("exec", 126 if saved is not None else 127)


def run_cli(
    args: Sequence[Arg],
    env: Mapping[str, str],
    cwd: str,
    *,
    expected: Expected | None = None,
    timeout: float = 30.0,
) -> CliResult:
    """Run ``nucleus-trio ARGS`` to its end (a pause is ended with SIGTERM once
    the init blocks it); a run past ``timeout`` is a hang, killed and reported."""
    began = time.monotonic()
    proc = subprocess.Popen(
        [*init_command(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    timed_out = False
    out = err = b""
    try:
        if expected is not None and expected.kind == "pause":
            with contextlib.suppress(StressError):
                wait_until(
                    lambda: proc.poll() is not None or blocks(proc.pid, signal.SIGTERM),
                    timeout / 2,
                    "the init to block SIGTERM",
                )
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.poll() is None or timed_out:
            kill_tree(proc, 0, "-")
            with contextlib.suppress(Exception):
                more_out, more_err = proc.communicate(timeout=5)
                out += more_out or b""
                err += more_err or b""
    return CliResult(
        list(args),
        dict(env),
        None if timed_out else proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        time.monotonic() - began,
        timed_out,
    )


def check_cli(result: CliResult, expected: Expected) -> list[str]:
    """What is wrong with a run, as the spec's exit status and usage rules see it."""
    from nucleus_trio.config import PROG, USAGE

    problems: list[str] = []
    if result.timed_out:
        return [f"hang: no exit within {result.seconds:.0f} s"]
    if "Traceback" in result.stderr or "Traceback" in result.stdout:
        problems.append("a traceback")
    code = result.code
    if code is None or not 0 <= code <= 255:
        problems.append(f"exit status {code} (killed by a signal?)")
    if expected.code is not None and code != expected.code:
        problems.append(f"exit code {code}, expected {expected.code} ({expected.kind})")
    lines = result.stderr.splitlines()
    if expected.kind == "usage":
        try_line = f"Try '{PROG} --help' for more information."
        if not (
            len(lines) == 3
            and lines[0].startswith(PREFIX)
            and lines[1] == USAGE
            and lines[2] == try_line
        ):
            problems.append(f"not one line of reason and the usage: {lines[:6]}")
        if result.stdout:
            problems.append("output on stdout")
    elif expected.kind == "audit":
        if not (len(lines) == 1 and lines[0].startswith(PREFIX + "--audit ")):
            problems.append(f"not one line about --audit: {lines[:6]}")
    elif expected.kind == "exec":
        # With --audit - (or fd:1, fd:2) the exec_failed record is a JSON line there.
        said = [line for line in lines if not line.startswith("{")]
        if not (len(said) == 1 and said[0].startswith(PREFIX + "cannot run ")):
            problems.append(f"not one 'cannot run' line: {said[:6]}")
        if any(not line.startswith("{") for line in result.stdout.splitlines()):
            problems.append("output on stdout")
    elif expected.kind == "info":
        if not result.stdout or result.stderr:
            problems.append("help or version not on stdout alone")
    elif expected.code is not None:  # a known workload: only the init talks
        strays = [line for line in lines if not line.startswith((PREFIX, "{"))]
        if strays:
            problems.append(f"stderr lines not the init's: {strays[:3]}")
        if any(not line.startswith("{") for line in result.stdout.splitlines()):
            problems.append(f"stdout not empty: {result.stdout[:200]!r}")
    return problems


def message_of(result: CliResult) -> str:
    """The first line the init printed (what a user sees first)."""
    for text in (result.stderr, result.stdout):
        if text.strip():
            return text.strip().splitlines()[0]
    return f"(nothing: the workload ran and exited {result.code})"


@dataclass
class BadInput:
    """One bad input of the README table: what it is, the command line, the
    environment changes (None unsets), the exit code the spec gives it."""

    what: str
    args: list[Arg]
    expected: int
    env: dict[str, str | None] = field(default_factory=dict)
    shown: str | None = None

    def environment(self) -> dict[str, str]:
        env = dict(CLI_BASE_ENV)
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def command_line(self) -> str:
        if self.shown is not None:
            return self.shown
        words = []
        for arg in self.args:
            if isinstance(arg, bytes):
                words.append("$'" + "".join(f"\\x{b:02x}" for b in arg) + "'")
            else:
                words.append(shlex.quote(arg))
        unset = [f"-u {key}" for key, value in self.env.items() if value is None]
        prefix = " ".join(
            [
                *(["env", *unset] if unset else []),
                *(f"{key}={shlex.quote(value)}" for key, value in self.env.items() if value),
                *(f"{key}=''" for key, value in self.env.items() if value == ""),
            ]
        )
        line = " ".join(["nucleus-trio", *words])
        return f"{prefix} {line}".strip() if prefix else line


HUGE = "9" * 100_000

BAD_INPUTS: list[BadInput] = [
    BadInput("no arguments at all", [], 2),
    BadInput("only `--`", ["--"], 2),
    BadInput("options but no PROGRAM", ["-s", "-w", "--"], 2),
    BadInput("unknown short flag", ["-z", "true"], 2),
    BadInput("unknown long flag", ["--yolo", "true"], 2),
    BadInput("unknown flag in a cluster", ["-vwz", "true"], 2),
    BadInput("ambiguous abbreviation", ["--s", "true"], 2),
    BadInput("a value for a switch", ["--subreaper=yes", "true"], 2),
    BadInput("value missing at the end", ["-v", "--rewrite"], 2),
    BadInput("flag eats `--` as its value", ["-e", "--", "3", "true"], 2),
    BadInput("PROGRAM with `-P`", ["-P", "true"], 2),
    BadInput("empty PROGRAM", [""], 2),
    BadInput("empty PROGRAM after `--`", ["--", ""], 2),
    BadInput("unknown signal name", ["-p", "NOPE", "true"], 2),
    BadInput("empty signal name", ["-p", "", "true"], 2),
    BadInput("signal 0", ["-p", "0", "true"], 2),
    BadInput("signal number out of range", ["-p", "65", "true"], 2),
    BadInput("negative signal number", ["-p", "-1", "true"], 2),
    BadInput("huge signal number", ["-p", "99999999999999999999", "true"], 2),
    BadInput("realtime signal out of range", ["-p", "RTMIN+99", "true"], 2),
    BadInput("non-ASCII digits", ["-p", "\u0661\u0665", "true"], 2),
    BadInput("invalid UTF-8 byte", ["-p", b"\xff", "true"], 2),
    BadInput("rewrite without `:`", ["-r", "TERM", "true"], 2),
    BadInput("rewrite with three parts", ["-r", "1:2:3", "true"], 2),
    BadInput("rewrite of a signal never forwarded", ["-r", "KILL:TERM", "true"], 2),
    BadInput("exit code 256", ["-e", "256", "true"], 2),
    BadInput("negative exit code", ["-e", "-1", "true"], 2),
    BadInput("fractional exit code", ["-e", "1.5", "true"], 2),
    BadInput(
        "100,000-digit exit code",
        ["-e", HUGE, "true"],
        2,
        shown="nucleus-trio -e 999…(100,000 digits) true",
    ),
    BadInput("negative grace", ["-t", "-1", "true"], 2),
    BadInput("grace NaN", ["-t", "nan", "true"], 2),
    BadInput("grace infinity", ["-t", "inf", "true"], 2),
    BadInput("grace 1e309", ["-t", "1e309", "true"], 2),
    BadInput("kill-after beyond the maximum", ["--kill-after", "99999999999", "true"], 2),
    BadInput("--env without `=`", ["--env", "NOVALUE", "true"], 2),
    BadInput("--env with an empty name", ["--env", "=x", "true"], 2),
    BadInput(
        "loader variable under --clean-env",
        ["--clean-env", "--env", "LD_PRELOAD=/x.so", "true"],
        2,
    ),
    BadInput("NOTIFY_SOCKET without --sd-notify", ["--env", "NOTIFY_SOCKET=/run/x", "true"], 2),
    BadInput("unknown user", ["--user", "no-such-user", "true"], 2),
    BadInput("user number without a passwd entry", ["--user", "4242", "true"], 2),
    BadInput("unknown group", ["--groups", "no-such-group", "true"], 2),
    BadInput("empty --audit", ["--audit", "", "true"], 2),
    BadInput("--audit fd:0", ["--audit", "fd:0", "true"], 2),
    BadInput("--audit on a descriptor not open", ["--audit", "fd:999", "true"], 2),
    BadInput("--audit in a missing directory", ["--audit", "/nonexistent/audit.log", "true"], 2),
    BadInput("--audit on a directory", ["--audit", "/", "true"], 2),
    BadInput("PROGRAM not found (path)", ["/nonexistent/prog"], 127),
    BadInput("PROGRAM not found (PATH)", ["no-such-program-xyz"], 127),
    BadInput("PROGRAM is `--` (a second `--`)", ["--", "--", "true"], 127),
    BadInput("PROGRAM looks like a flag after `--`", ["--", "-v"], 127),
    BadInput("PROGRAM is a directory", ["/"], 126),
    BadInput("PROGRAM not executable", ["/etc/passwd"], 126),
    BadInput("PROGRAM name too long", ["x" * 5000], 126, shown="nucleus-trio xxx…(5,000 x)"),
    BadInput("PATH empty", ["true"], 127, env={"PATH": ""}),
    BadInput("PATH unset", ["true"], 0, env={"PATH": None}),
    BadInput(
        "PYTHONWARNINGS=error and a bad flag",
        ["-z", "true"],
        2,
        env={"PYTHONWARNINGS": "error"},
    ),
    BadInput("unknown locale and a bad flag", ["--yolo", "true"], 2, env={"LC_ALL": "xx_XX.bogus"}),
    BadInput("help wins over what follows", ["-h", "--yolo"], 0),
]


def scratch_dir() -> str:
    """A scratch working directory that ``--user nobody`` can enter too."""
    path = tempfile.mkdtemp(prefix="nt-stress-cli-")
    os.chmod(path, 0o755)
    return path


def bad_inputs(entries: Sequence[BadInput] = BAD_INPUTS) -> list[Figures]:
    """Run every entry of the table; each row lists what went wrong, if anything."""
    rows: list[Figures] = []
    cwd = scratch_dir()
    try:
        for entry in entries:
            env = entry.environment()
            expected = expect_cli(entry.args, env, cwd)
            result = run_cli(entry.args, env, cwd, expected=expected)
            problems = check_cli(result, expected)
            if result.code != entry.expected:
                problems.append(f"exit {result.code}, the table says {entry.expected}")
            rows.append(
                {
                    "what": entry.what,
                    "command": entry.command_line(),
                    "code": result.code,
                    "message": message_of(result),
                    "tracebacks": tracebacks_in(result.stderr),
                    "seconds": round(result.seconds, 2),
                    "problems": problems,
                }
            )
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    return rows


def _cell(text: str, limit: int = 110) -> str:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'")


def bad_inputs_markdown(rows: Sequence[Figures]) -> str:
    """The README table of bad inputs: what each gets."""
    out = [
        "| bad input | command line | exit | what nucleus-trio says (first line) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        command = row["command"].replace("|", "\\|")
        if len(command) > 90:
            command = command[:89] + "…"
        out.append(
            f"| {_cell(row['what'])} | `{command}` | {row['code']} | {_cell(row['message'])} |"
        )
    out.append("")
    out.append(
        "A NUL byte cannot reach the init through `execve` (arguments are C strings): "
        "a caller's argument is cut at the NUL before the init sees it. Through the "
        "library, `parse_args` rejects it: `arguments must not contain NUL bytes`. "
        "Every usage error (exit 2) prints that one line, then the usage line and "
        "`Try 'nucleus-trio --help' for more information.`; never a traceback."
    )
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- fuzz (stdlib)


def _config_words() -> tuple[list[str], list[str]]:
    from nucleus_trio import config

    switches = sorted(config._SWITCHES | {"-h", "--help", "-V", "--version"})
    return switches, sorted(config._VALUED)


SWITCH_WORDS, VALUED_WORDS = _config_words()

#: Junk that looks like options: unknown flags, prefixes, odd dashes.
ODD_FLAGS = [
    "-z", "--yolo", "-", "--", "---", "--=", "-=", "-vvvv", "-gcsw", "--s", "--no",
    "--au", "--aud=-", "-rTERM:INT", "-e3", "--grace=1", "--audit=", "-qv", "-wP",
    "--env=A=B", "--help=1", "-h-", "--verbose", "--quiet", "-\u00e9", "--\u2028",
]  # fmt: skip

#: Values: signal specs, codes, durations, assignments, identities, sinks.
ODD_VALUES: list[Arg] = [
    "TERM", "SIGTERM", "sigusr1", "15", "0", "65", "-1", "99999999999999999999",
    "RTMIN+3", "SIGRTMAX-30", "RTMIN+99", "TERM:INT", "HUP:0", "KILL:TERM", "1:2:3",
    ":", "", " ", "\t", "\n", "3", "255", "256", "1.5", "nan", "inf", "-inf", "1e309",
    "0x10", "\u0663", "0.001", "10000001", "KEY=value", "=x", "A B=1", "LD_PRELOAD=/x",
    "NOTIFY_SOCKET=@x", "PATH=/nonexistent", "PATH=", "root", "nobody", "65534",
    "no-such-user", "nobody:nogroup", "0:0", ":0", "root,nobody", "-", "fd:1", "fd:2",
    "fd:0", "fd:3", "fd:999999999", "fd:-1", "fd:", "audit.log", "sub/dir/x", "x" * 10_000,
    "\u00e9", "\u2028", "--", "-v", b"\xff\xfe", b"caf\xe9",
]  # fmt: skip

#: What may come after the options: harmless workloads and programs that fail.
PROGRAM_TAILS: list[list[Arg]] = [
    ["true"], ["false"], ["sh", "-c", "exit 3"], ["sh", "-c", "exit 0"],
    ["sh", "-c", "exit 255"], ["sh", "-c", "exit 126"], ["/bin/true"], ["/bin/false", "x"],
    ["/nonexistent/prog"], ["no-such-program-xyz"], ["./noexec"], ["./dir"], ["."],
    ["/etc/passwd"], [""], ["--"], ["-h"], ["true", "-v", "--", "-g"], [],
]  # fmt: skip

#: Environment variables a user may have, with odd values (None: unset).
ENV_CHOICES: dict[str, list[str | None]] = {
    "PATH": [
        None, "", "/usr/bin:/bin", "/nonexistent", "relative", ":/usr/bin:/bin",
        "/usr/bin::/bin", "/x:" * 3000 + "/usr/bin",
    ],
    "NOTIFY_SOCKET": ["@abstract", "/run/notify", "/tmp/x", "../../run/x", "", "\u00e9"],
    "LANG": ["C", "POSIX", "xx_XX.bogus", "en_US.UTF-8", "tr_TR.UTF-8"],
    "LC_ALL": ["C", "xx_XX.bogus", ""],
    "PYTHONWARNINGS": ["error", "ignore", "default", "error::DeprecationWarning"],
    "PYTHONDEVMODE": ["1"],
    "PYTHONOPTIMIZE": ["2"],
    "PYTHONHASHSEED": ["0", "4294967295"],
    "PYTHONPATH": ["/nonexistent", ""],
    "PYTHONIOENCODING": ["ascii", "latin-1:strict"],
    "PYTHONUTF8": ["0", "1"],
    "HOME": ["/nonexistent", ""],
    "TERM": ["", "dumb"],
    "HUGE": ["v" * 100_000],
    "WEIRD": ["a\nb", "=", "\u2028"],
    # The peers' variables, which the init reads too.
    "TINI_VERBOSITY": ["0", "3", "9", "loud", ""],
    "TINI_KILL_PROCESS_GROUP": ["", "1"],
    "TINI_SUBREAPER": ["0"],
    "DUMB_INIT_DEBUG": ["1"],
}  # fmt: skip


def make_fixtures(cwd: str) -> None:
    """Files the fuzzed programs refer to: ``./noexec`` and ``./dir``."""
    noexec = Path(cwd, "noexec")
    if not noexec.exists():
        noexec.write_text("#!/bin/sh\nexit 0\n")
        noexec.chmod(0o644)
    Path(cwd, "dir").mkdir(exist_ok=True)


def strip_nul(arg: Arg) -> Arg:
    """An argument as ``execve`` passes it: cut at the first NUL."""
    if isinstance(arg, bytes):
        return arg.split(b"\0", 1)[0]
    return arg.split("\0", 1)[0]


def fuzz_case(rng: random.Random) -> tuple[list[Arg], dict[str, str]]:
    """One random command line and environment, from the same pools as the
    hypothesis test."""
    words: list[Arg] = []
    for _ in range(rng.randint(0, 6)):
        pick = rng.random()
        if pick < 0.3:
            words.append(rng.choice(SWITCH_WORDS))
        elif pick < 0.6:
            words += [rng.choice(VALUED_WORDS), rng.choice(ODD_VALUES)]
        elif pick < 0.75:
            words.append(rng.choice(ODD_FLAGS))
        elif pick < 0.85:
            words.append(rng.choice(ODD_VALUES))
        else:
            words.append(rng.choice(VALUED_WORDS))
    if rng.random() < 0.5:
        words.append("--")
    words += rng.choice(PROGRAM_TAILS)
    if words and rng.random() < 0.2:
        words.insert(rng.randrange(len(words) + 1), "--")
    env = dict(CLI_BASE_ENV)
    for key in rng.sample(sorted(ENV_CHOICES), rng.randint(0, 3)):
        value = rng.choice(ENV_CHOICES[key])
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return [strip_nul(word) for word in words], env


def fuzz_one(
    args: Sequence[Arg], env: Mapping[str, str], cwd: str
) -> tuple[CliResult, list[str]] | None:
    """Run one fuzzed command line; None when it was skipped (an ``--audit``
    path outside the scratch directory, which a fuzzer must not write)."""
    from nucleus_trio.config import UsageError, parse_args

    try:
        _, config = parse_args([as_text(arg) for arg in args], env)
    except UsageError:
        config = None
    if config is not None and not audit_is_safe(config.audit, cwd):
        return None
    expected = expect_cli(args, env, cwd)
    result = run_cli(args, env, cwd, expected=expected)
    return result, check_cli(result, expected)


def fuzz_cli(runs: int, *, seed: int = 2024) -> Figures:
    """``runs`` random command lines and environments through the real command."""
    rng = random.Random(seed)
    cwd = scratch_dir()
    make_fixtures(cwd)
    codes: dict[int, int] = {}
    failures: list[str] = []
    tried = skipped = tracebacks = hangs = 0
    began = time.monotonic()
    try:
        while tried < runs:
            args, env = fuzz_case(rng)
            outcome = fuzz_one(args, env, cwd)
            if outcome is None:
                skipped += 1
                continue
            result, problems = outcome
            tried += 1
            key = -1 if result.code is None else result.code
            codes[key] = codes.get(key, 0) + 1
            tracebacks += tracebacks_in(result.stderr)
            hangs += result.timed_out
            if problems and len(failures) < 20:
                shown_env = {k: v[:40] for k, v in env.items() if CLI_BASE_ENV.get(k) != v}
                shown = [as_text(a)[:60] for a in args]
                failures.append(f"{shown} env={shown_env}: {[p[:300] for p in problems]}")
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    return {
        "scenario": "fuzzed command lines",
        "mode": "-",
        "runs": tried,
        "skipped_unsafe_audit": skipped,
        "exit_codes": dict(sorted(codes.items())),
        "tracebacks": tracebacks,
        "hangs": hangs,
        "seconds": round(time.monotonic() - began, 1),
        "failures": failures,
    }


# ---------------------------------------------------------------- the suite


@dataclass
class Plan:
    """Sizes of one run of the suite."""

    mode: str
    orphans: int
    signals: int
    soak_seconds: float
    fuzz: int
    stop_orphans: int
    stdio_orphans: int
    flood_bytes: int


def plan_for(
    mode: str,
    *,
    orphans: int | None = None,
    signals: int | None = None,
    soak_seconds: float | None = None,
    fuzz: int | None = None,
) -> Plan:
    """Short mode (CI, a few minutes) or long mode (the published figures)."""
    if mode == "short":
        base = Plan("short", 5_000, 5_000, 20.0, 40, 5_000, 1_000, 8 << 20)
    elif mode == "long":
        base = Plan("long", 100_000, 100_000, 3600.0, 400, 50_000, 10_000, 256 << 20)
    else:
        raise ValueError(mode)
    if orphans is not None:
        base.orphans = orphans
        base.stop_orphans = max(1, orphans // 2)
        base.stdio_orphans = max(1, orphans // 10)
    if signals is not None:
        base.signals = signals
    if soak_seconds is not None:
        base.soak_seconds = soak_seconds
    if fuzz is not None:
        base.fuzz = fuzz
    return base


def _fmt(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def describe(fig: Figures) -> tuple[str, str]:
    """(load, figures) cells of the summary for one scenario."""
    name = fig["scenario"]
    if name == "zombie storm":
        load = f"{_fmt(fig['orphans'])} orphans"
        text = (
            f"peak zombies {_fmt(fig['peak_zombies'])} (children {_fmt(fig['peak_children'])}); "
            f"forked {_fmt(fig['fork_rate'])}/s, reaped {_fmt(fig['reap_rate'])}/s "
            f"(all {_fmt(fig['last_reaped_after_ms'])} ms after the last fork; "
            f"throttled {_fmt(fig['throttled'])}); init CPU {fig['init_cpu_s']} s; "
            + (
                f"backlog of {_fmt(fig['backlog_zombies'])} zombies (made while the init was "
                f"stopped) reaped in {_fmt(fig['backlog_reap_ms'])} ms "
                f"({_fmt(fig['backlog_reap_rate'])}/s); "
                if "backlog_zombies" in fig
                else ""
            )
            + f"RSS {_fmt(fig['rss_before_kib'])} → {_fmt(fig['rss_after_kib'])} KiB; "
            f"fds {fig['fds_before']} → {fig['fds_after']}; "
            f"threads {fig['threads_before']} → {fig['threads_after']}; "
            f"zombies left {fig['zombies_left']}"
        )
    elif name == "signal storm":
        load = f"{_fmt(fig['signals'])} signals, orphans meanwhile"
        text = (
            f"sent {_fmt(fig['sent'])} in {fig['burst_seconds']} s "
            f"({fig['kinds_sent']} kinds, {fig['kinds_forwardable']} forwardable); "
            f"kinds received {fig['kinds_received']}/{fig['kinds_forwardable']}, "
            f"missing {fig['kinds_missing'] or 'none'}, "
            f"unexpected {fig['kinds_unexpected'] or 'none'}; "
            f"{_fmt(fig['orphans_made'])} orphans reaped meanwhile "
            f"(peak zombies {_fmt(fig['peak_zombies'])}); "
            f"RSS {_fmt(fig['rss_before_kib'])} → {_fmt(fig['rss_after_kib'])} KiB; "
            f"zombies left {fig['zombies_left']}"
        )
    elif name.startswith("SIGSTOP"):
        load = f"{_fmt(fig['orphans'])} orphans, {fig['cycles']} stops"
        text = (
            f"stopped {fig['cycles']} times mid-storm, {fig['stopped_seconds']} s in all; "
            f"kinds sent while stopped received {fig['kinds_received']}/{fig['kinds_sent']}; "
            f"peak zombies {_fmt(fig['peak_zombies'])}; zombies left {fig['zombies_left']}"
        )
    elif name.startswith("stdio"):
        load = f"{_fmt(fig['orphans'])} orphans, -w"
        extra = ""
        if "flooded_bytes" in fig:
            extra = f"; {_fmt(fig['flooded_bytes'])} bytes flooded"
        if "prefilled_bytes" in fig:
            extra = f"; pipe prefilled with {_fmt(fig['prefilled_bytes'])} bytes, never read"
        text = (
            f"kinds received {fig['kinds_received']}/{fig['kinds_sent']}; zombies left "
            f"{fig['zombies_left']}; exit {fig['exit_after_term_s']} s after SIGTERM{extra}"
        )
    elif name == "soak":
        load = (
            f"{_fmt(round(fig['seconds']))} s: {_fmt(fig['children'])} children, "
            f"{_fmt(fig['daemons'])} daemons, {_fmt(fig['signals_sent'])} signals"
        )
        text = (
            f"RSS {_fmt(fig['rss_first_kib'])} (start) / {_fmt(fig['rss_after_warmup_kib'])} "
            f"(after warm-up) / {_fmt(fig['rss_max_kib'])} (max) / "
            f"{_fmt(fig['rss_last_kib'])} (end) KiB; fds {fig['fds_range']}; "
            f"threads {fig['threads_range']}; kinds received "
            f"{fig['kinds_received']}/{fig.get('kinds_forwardable', fig['kinds_sent'])} "
            f"(of {fig['kinds_sent']} sent, SIGCHLD kept); init CPU {fig['init_cpu_s']} s; "
            f"zombies left {fig['zombies_left']}"
        )
    elif name == "bad inputs (table)":
        load = f"{fig['runs']} command lines"
        text = f"exit codes {fig['exit_codes']}; tracebacks {fig['tracebacks']}"
    elif name == "fuzzed command lines":
        load = f"{fig['runs']} random command lines and environments"
        text = (
            f"exit codes {fig['exit_codes']}; tracebacks {fig['tracebacks']}; hangs {fig['hangs']}"
        )
    else:
        load, text = "", json.dumps({k: v for k, v in fig.items() if k != "failures"})
    return load, text


def summary_markdown(results: Sequence[Figures], meta: Figures) -> str:
    """The summary table, and the figures the README's Reliability section quotes."""
    lines = [
        f"nucleus-trio stress suite, {meta['mode']} mode, {meta['date']} "
        f"({meta['machine']}); {meta['seconds']:.0f} s in all.",
        "",
        "| scenario | mode | load | figures | exit (expected) | result |",
        "|---|---|---|---|---|---|",
    ]
    for fig in results:
        load, text = describe(fig)
        exit_cell = f"{fig['exit_code']} ({fig['expected_code']})" if "exit_code" in fig else "-"
        result = "ok" if not fig["failures"] else "FAIL: " + "; ".join(fig["failures"])[:300]
        lines.append(
            f"| {fig['scenario']} | {fig['mode']} | {load} | {_cell(text, 900)} | "
            f"{exit_cell} | {_cell(result, 400)} |"
        )
    totals = meta["totals"]
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key, value in totals.items():
        lines.append(f"| {key} | {_fmt(value)} |")
    return "\n".join(lines) + "\n"


def totals_of(results: Sequence[Figures]) -> Figures:
    storms = [r for r in results if r["scenario"] == "zombie storm"]
    sig = [r for r in results if r["scenario"] == "signal storm"]
    soaks = [r for r in results if r["scenario"] == "soak"]
    cli = [r for r in results if r["scenario"] in ("bad inputs (table)", "fuzzed command lines")]
    totals: Figures = {}
    for storm in storms:
        prefix = f"zombie storm ({storm['mode']})"
        totals[f"{prefix}: orphans"] = storm["made"]
        totals[f"{prefix}: peak zombies"] = storm["peak_zombies"]
        totals[f"{prefix}: reap rate (orphans/s)"] = storm["reap_rate"]
        if "backlog_zombies" in storm:
            totals[f"{prefix}: backlog reaped (zombies in ms)"] = (
                f"{_fmt(storm['backlog_zombies'])} in {_fmt(storm['backlog_reap_ms'])}"
            )
        totals[f"{prefix}: RSS before → after (KiB)"] = (
            f"{_fmt(storm['rss_before_kib'])} → {_fmt(storm['rss_after_kib'])}"
        )
        totals[f"{prefix}: zombies left"] = storm["zombies_left"]
    for storm in sig:
        prefix = f"signal storm ({storm['mode']})"
        totals[f"{prefix}: signals sent"] = storm["sent"]
        totals[f"{prefix}: kinds sent / forwardable / received"] = (
            f"{storm['kinds_sent']} / {storm['kinds_forwardable']} / {storm['kinds_received']}"
        )
        totals[f"{prefix}: exit code (expected)"] = (
            f"{storm['exit_code']} ({storm['expected_code']})"
        )
    for one in soaks:
        totals[f"soak ({one['mode']}): seconds"] = round(one["seconds"])
        totals[f"soak ({one['mode']}): RSS after warm-up → max → end (KiB)"] = (
            f"{_fmt(one['rss_after_warmup_kib'])} → {_fmt(one['rss_max_kib'])} → "
            f"{_fmt(one['rss_last_kib'])}"
        )
        totals[f"soak ({one['mode']}): fds, threads (min, max)"] = (
            f"{one['fds_range']}, {one['threads_range']}"
        )
    totals["bad inputs tried (table + fuzz)"] = sum(r["runs"] for r in cli)
    totals["tracebacks seen"] = sum(int(r.get("tracebacks", 0)) for r in results)
    totals["scenarios failed"] = sum(1 for r in results if r["failures"])
    return totals


def bad_inputs_figures() -> Figures:
    rows = bad_inputs()
    codes: dict[int, int] = {}
    for row in rows:
        codes[row["code"]] = codes.get(row["code"], 0) + 1
    return {
        "scenario": "bad inputs (table)",
        "mode": "-",
        "runs": len(rows),
        "exit_codes": dict(sorted(codes.items())),
        "tracebacks": sum(row["tracebacks"] for row in rows),
        "failures": [f"{row['what']}: {row['problems']}" for row in rows if row["problems"]],
        "rows": rows,
    }


def run_suite(plan: Plan, log: Callable[[str], None], only: Sequence[str] = ()) -> list[Figures]:
    """Every scenario at the plan's sizes (or those whose label contains one of
    ``only``); a scenario that cannot finish is a failure."""
    steps: list[tuple[str, Callable[[], Figures]]] = []
    for mode in MODES:
        steps.append((f"zombie storm {mode}", partial(zombie_storm, mode, plan.orphans)))
    for mode in MODES:
        steps.append((f"signal storm {mode}", partial(signal_storm, mode, plan.signals)))
    for mode in MODES:
        steps.append((f"stop/cont {mode}", partial(stop_cont, mode, plan.stop_orphans)))
    for case in STDIO_CASES:
        run = partial(
            stdio_faults, case, "subreaper", plan.stdio_orphans, flood_bytes=plan.flood_bytes
        )
        steps.append((f"stdio {case}", run))
    steps.append(("bad inputs", bad_inputs_figures))
    steps.append(("fuzz", lambda: fuzz_cli(plan.fuzz)))
    steps.append(("soak pid1", lambda: soak("pid1", plan.soak_seconds, progress=log)))
    if only:
        steps = [(label, step) for label, step in steps if any(o in label for o in only)]
    results: list[Figures] = []
    for label, step in steps:
        log(f"{label} ...")
        began = time.monotonic()
        try:
            fig = step()
        except Exception as exc:  # the harness goes on to the next scenario
            fig = {"scenario": label, "mode": "-", "failures": [f"{type(exc).__name__}: {exc}"]}
        fig["wall_seconds"] = round(time.monotonic() - began, 1)
        verdict = "ok" if not fig["failures"] else f"FAIL {fig['failures']}"
        log(f"{label}: {fig['wall_seconds']} s, {verdict}")
        results.append(fig)
    return results


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, pid_max "
        f"{Path('/proc/sys/kernel/pid_max').read_text().strip()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mode", choices=("short", "long"), default="short")
    parser.add_argument("--orphans", type=int, help="orphans per zombie storm")
    parser.add_argument("--signals", type=int, help="signals in the signal storm")
    parser.add_argument("--soak-seconds", type=float, help="duration of the soak")
    parser.add_argument("--fuzz", type=int, help="random command lines to try")
    parser.add_argument(
        "--only", action="append", default=[], help="run only the scenarios whose label has this"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", type=Path, help="write the summary table here")
    parser.add_argument(
        "--bad-inputs-table",
        action="store_true",
        help="only run the bad-input table and print it (Markdown, for the README)",
    )
    options = parser.parse_args(argv)

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    if options.bad_inputs_table:
        figures = bad_inputs_figures()
        table = bad_inputs_markdown(figures["rows"])
        if options.markdown:
            options.markdown.parent.mkdir(parents=True, exist_ok=True)
            options.markdown.write_text(table)
        print(table, end="")
        for failure in figures["failures"]:
            log(f"FAIL {failure}")
        return 1 if figures["failures"] else 0

    plan = plan_for(
        options.mode,
        orphans=options.orphans,
        signals=options.signals,
        soak_seconds=options.soak_seconds,
        fuzz=options.fuzz,
    )
    build_workload()
    began = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    log(f"plan: {plan}")
    results = run_suite(plan, log, options.only)
    meta: Figures = {
        "mode": plan.mode,
        "plan": plan.__dict__,
        "date": started,
        "machine": machine(),
        "seconds": time.monotonic() - began,
    }
    meta["totals"] = totals_of(results)
    table = summary_markdown(results, meta)
    print(table, end="")
    if options.markdown:
        options.markdown.parent.mkdir(parents=True, exist_ok=True)
        options.markdown.write_text(table)
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 1 if any(fig["failures"] for fig in results) else 0


if __name__ == "__main__":
    sys.exit(main())
