"""The harness: the storm workload built, the init launched under it (as PID 1
of a fresh PID namespace, or as a subreaper), its report lines read, signals
sent to it, and every process a launch started killed by PID on the way out.

The storm workload is a small C program (``ntw.c``), compiled at run time
into ``stress/build/``. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import launch as launched

from stress.procfs import (
    TAG_VAR,
    Figures,
    StressError,
    children_of,
    descendants_of,
    receiver_up,
    start_time,
    state_of,
    tagged_processes,
    wait_until,
)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "ntw.c"
BUILD = HERE / "build"
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
MIB = 1024

#: The throttle of the storm workload: it waits while the init has this many
#: children (zombies included). A lagging init never fills the PID table of a
#: shared machine; how often it had to wait is reported ("throttled").
DEFAULT_CAP = 4000


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
    """Report lines from a pipe, every wait bounded, never losing data: the
    tests' reader underneath (:class:`tests.support.launch.Lines`), with the
    stress scenarios' manners: ``None`` at end of file or timeout instead of
    a failure, and the ``kind`` lines recorded."""

    def __init__(self, fd: int) -> None:
        self._reader = launched.Lines(fd)
        self.kinds: set[int] = set()

    @property
    def eof(self) -> bool:
        """Whether the pipe has ended."""
        return self._reader.eof

    @property
    def seen(self) -> list[str]:
        """The lines read so far."""
        return self._reader.seen

    def readline(self, timeout: float) -> str | None:
        """One line, or None at end of file or timeout."""
        try:
            text = self._reader.readline(timeout, keepends=False)
        except AssertionError:  # the tests' reader's way to say so
            return None
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
        reader = self._reader
        while not reader.eof and reader._fill(time.monotonic()):
            pass
        pending = reader.buffer.split(b"\n")[:-1]
        return any(line.startswith(prefix.encode()) for line in pending) or any(
            line.startswith(prefix) for line in reader.seen
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
