"""Measure nucleus-trio against tini, dumb-init and catatonit.

Run it with ``make bench`` (which installs matplotlib for the chart), or as
``python benchmarks/bench.py [--early N] [--quick]``. It needs root (PID
namespaces, apt-get), gcc and util-linux's ``unshare``.

What it does:

* installs the peers from Debian's packages when they are missing, compiles
  the C workloads of ``benchmarks/workloads/`` into ``benchmarks/build/``,
  and installs nucleus-trio from the repository root into
  ``benchmarks/build/venv`` as users would (``pip install``, not editable):
  the command measured is that venv's ``bin/nucleus-trio``;
* starts every init through ``launch``, a tiny C program that waits on a gate
  (so the harness knows the PID and holds a pidfd before anything happens),
  prints CLOCK_MONOTONIC and execs the init in the same process: every
  latency below starts at the exec of the init;
* runs each init as PID 1 of a fresh PID namespace (``unshare --pid --fork
  --kill-child --mount-proc``), except the early-signal test, where the init
  is an ordinary child so that "killed by the signal" can be told apart;
* interleaves: every round runs each init once (order rotated per round), so
  load noise hits all alike. Idle cost and signal latency run the four inits
  side by side, idle, and alternate the signals among them.

Every process it starts is in a session of its own and is killed in a
``finally``; the harness is a child subreaper, so orphans of an init that
died come back to it and are killed too. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

import signal_profile

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOADS = HERE / "workloads"
BUILD = HERE / "build"
LOGS = BUILD / "logs"
VENV = BUILD / "venv"
RESULTS = HERE / "results"

UNSHARE = ("unshare", "--pid", "--fork", "--kill-child", "--mount-proc")
PROGRAMS = ("launch", "sigwait", "storm", "burst")
PEER_PACKAGES = ("tini", "dumb-init", "catatonit")
PR_SET_CHILD_SUBREAPER = 36

T_START = time.monotonic()


class BenchError(Exception):
    """Something the benchmark cannot go on from."""


def note(text: str) -> None:
    """Progress on stderr, with the time since the start."""
    print(f"[{time.monotonic() - T_START:6.1f} s] {text}", file=sys.stderr, flush=True)


def run_quiet(argv: Sequence[str], what: str, env: dict[str, str] | None = None) -> str:
    """Run a set-up command; its output is shown only when it fails."""
    proc = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=600
    )
    if proc.returncode != 0:
        raise BenchError(f"{what} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


# --------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class Init:
    """An init under test: its name and the command before the workload."""

    name: str
    command: tuple[str, ...]


def find_catatonit() -> str | None:
    found = shutil.which("catatonit")
    if found:
        return found
    for path in ("/usr/libexec/podman/catatonit", "/usr/libexec/catatonit/catatonit"):
        if os.access(path, os.X_OK):
            return path
    return None


def ensure_peers() -> dict[str, str]:
    """The peers' binaries, installed from Debian's packages when missing."""

    def locate() -> dict[str, str | None]:
        return {
            "tini": shutil.which("tini"),
            "dumb-init": shutil.which("dumb-init"),
            "catatonit": find_catatonit(),
        }

    found = locate()
    missing = [name for name, path in found.items() if path is None]
    if missing:
        note(f"installing {' '.join(missing)} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", *missing]
        try:
            run_quiet(install, "apt-get install", env)
        except BenchError:
            run_quiet(["apt-get", "update", "-q"], "apt-get update", env)
            run_quiet(install, "apt-get install", env)
        found = locate()
    paths: dict[str, str] = {}
    for name, path in found.items():
        if path is None:
            raise BenchError(f"{name} is still missing after apt-get install")
        paths[name] = path
    return paths


def package_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


def build_workloads() -> dict[str, Path]:
    """Compile the C workloads (static when libc.a is there)."""
    if shutil.which("gcc") is None:
        note("installing gcc with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run_quiet(["apt-get", "install", "-y", "-q", "gcc", "libc6-dev"], "apt-get install", env)
    BUILD.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for name in PROGRAMS:
        source = WORKLOADS / f"{name}.c"
        target = BUILD / name
        base = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(target), str(source)]
        try:
            run_quiet([*base, "-static"], f"gcc {name}.c")
        except BenchError:
            run_quiet(base, f"gcc {name}.c")
        built[name] = target
    return built


def source_digest() -> str:
    """A digest of what the wheel is built from, to skip needless reinstalls."""
    digest = hashlib.sha256()
    files = [ROOT / "pyproject.toml", ROOT / "README.md", ROOT / "LICENSE"]
    for folder in ("src", "scripts"):
        files += sorted(
            path
            for path in (ROOT / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        )
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            pass
    return digest.hexdigest()


def build_pyz() -> Path:
    """``make zipapp``'s single-file build of the current tree."""
    output = BUILD / "nucleus-trio.pyz"
    run_quiet(
        [sys.executable, str(ROOT / "scripts" / "build_zipapp.py"), "--output", str(output)],
        "build_zipapp.py",
    )
    return output


def install_nucleus() -> Path:
    """A non-editable install of the repository in its own venv.

    Reinstalled (same version number, so forced) whenever the sources
    changed since the last install.
    """
    python = VENV / "bin" / "python"
    command = VENV / "bin" / "nucleus-trio"
    stamp = VENV / ".installed-source"
    wanted = source_digest()
    if not python.exists():
        note("creating benchmarks/build/venv")
        run_quiet([sys.executable, "-m", "venv", "--clear", str(VENV)], "python -m venv")
        run_quiet([str(python), "-m", "pip", "install", "-q", str(ROOT)], "pip install")
    elif not stamp.exists() or stamp.read_text() != wanted or not command.exists():
        note("installing the current tree into benchmarks/build/venv")
        run_quiet(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--force-reinstall",
                "--no-deps",
                str(ROOT),
            ],
            "pip install",
        )
        run_quiet([str(python), "-m", "pip", "install", "-q", str(ROOT)], "pip install")
    if not command.exists():
        raise BenchError(f"{command} was not installed")
    stamp.write_text(wanted)
    return command


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}" if head else "?"


def cpu_busy(seconds: float = 0.5) -> float:
    """The share of CPU time, all CPUs together, not idle over ``seconds``."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(word) for word in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    if total1 == total0:
        return 0.0
    return 1 - (idle1 - idle0) / (total1 - total0)


def load_average() -> str:
    try:
        with open("/proc/loadavg") as loadavg:
            return " ".join(loadavg.read().split()[:3])
    except OSError:
        return "?"


def machine_info(python: Path) -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    version = run_quiet(
        [str(python), "-c", "import sys; print(sys.version.split()[0])"], "python --version"
    ).strip()
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "nproc": str(len(os.sched_getaffinity(0))),
        "python": version,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_at_start": load_average(),
        "busy_at_start": f"{cpu_busy():.0%}",
    }


# --------------------------------------------------------------------------- processes

#: Every process the harness started, for the last clean-up.
STARTED: list[subprocess.Popen[bytes]] = []
#: Held while a process is started, and while adopted orphans are told from
#: the harness's own children (the early-signal trials run in two threads).
SPAWNING = threading.Lock()


def become_subreaper() -> None:
    """Orphans of an init that died come back here, to be killed and reaped."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise BenchError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def read_ints(path: str) -> list[int]:
    try:
        with open(path, "rb") as file:
            return [int(word) for word in file.read().split()]
    except (OSError, ValueError):
        return []


def tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def children(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (zombies included)."""
    found: list[int] = []
    for tid in tasks(pid):
        found += read_ints(f"/proc/{pid}/task/{tid}/children")
    return found


def only_child_left(pid: int, child: int) -> bool:
    """Whether ``child`` is the only child of ``pid``: reads a few bytes only."""
    for tid in tasks(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb", buffering=0) as file:
                head = file.read(64)
        except OSError:
            continue
        if head.split() not in ([], [str(child).encode()]):
            return False
    return True


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    queue = [pid]
    while queue and len(found) < 100_000:
        kids = children(queue.pop())
        found += kids
        queue += kids
    return found


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid``, in nanoseconds."""
    total = 0
    for tid in tasks(pid):
        values = read_ints(f"/proc/{pid}/task/{tid}/schedstat")
        if values:
            total += values[0]
    return total


def status_fields(pid: int, tid: int | None = None) -> dict[str, int]:
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    found: dict[str, int] = {}
    try:
        with open(path) as file:
            for line in file:
                key, _, value = line.partition(":")
                words = value.split()
                if words and words[0].isdigit():
                    found[key] = int(words[0])
    except OSError:
        pass
    return found


def context_switches(pid: int) -> int:
    total = 0
    for tid in tasks(pid):
        fields = status_fields(pid, int(tid))
        total += fields.get("voluntary_ctxt_switches", 0)
        total += fields.get("nonvoluntary_ctxt_switches", 0)
    return total


def kill_quietly(pid: int, signo: int) -> None:
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        pass


def reap_adopted() -> int:
    """Kill and reap the orphans re-parented to the harness; return how many."""
    with SPAWNING:
        ours = {proc.pid for proc in STARTED if proc.returncode is None}
        adopted = [pid for pid in children(os.getpid()) if pid not in ours]
    count = 0
    for pid in adopted:
        for kid in descendants(pid):
            kill_quietly(kid, signal.SIGKILL)
        kill_quietly(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        count += 1
    return count


def clean_up_everything() -> None:
    for proc in STARTED:
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                note(f"pid {proc.pid} survived SIGKILL for 5 s")
    reap_adopted()


class Session:
    """One init (or plain program) started through the gate of ``launch``.

    With ``pid1`` the init is PID 1 of a fresh PID namespace (under
    ``unshare``); otherwise it is the harness's own child. Either way it
    leads a session of its own, and ``close`` kills what is left.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        pid1: bool,
        label: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.label = label
        self.pid1 = pid1
        self.log_path = LOGS / f"{label}.log"
        self.pidfd = -1
        self._buf = b""
        gate_r, self._gate = os.pipe()
        self._out, out_w = os.pipe()
        command = [str(BUILD / "launch"), str(gate_r), *argv]
        if pid1:
            command = [*UNSHARE, *command]
        self._stderr = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        try:
            # Under the lock, a parallel reap_adopted() sees it as ours.
            with SPAWNING:
                self.proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=self._stderr,
                    pass_fds=(gate_r,),
                    start_new_session=True,
                    env=env,
                )
                STARTED.append(self.proc)
        except BaseException:
            os.close(self._gate)
            os.close(self._out)
            self._stderr.close()
            raise
        finally:
            os.close(gate_r)
            os.close(out_w)
        try:
            self.pid = self._find_init() if pid1 else self.proc.pid
            self.pidfd = os.pidfd_open(self.pid)
        except BaseException:
            self.close()
            raise

    def _find_init(self) -> int:
        """The host PID of the namespace's PID 1 (``unshare``'s child)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = read_ints(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            if kids:
                return kids[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.0002)
        raise BenchError(f"{self.label}: unshare did not start its child{self.tail()}")

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return f"; its stderr: {text[-600:]}" if text else ""

    def start(self) -> int:
        """Open the gate: the init is exec'd; return the time of its exec."""
        os.write(self._gate, b"g")
        os.close(self._gate)
        self._gate = -1
        return int(self.read_line(10))

    def poll_line(self, timeout: float) -> str | None:
        """The next line of output, or None if none came within ``timeout``."""
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self._out, select.POLLIN)
        while b"\n" not in self._buf:
            left = max(0.0, deadline - time.monotonic())
            if not poller.poll(left * 1000):
                return None
            chunk = os.read(self._out, 65536)
            if not chunk:
                raise BenchError(f"{self.label}: output ended{self.tail()}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def read_line(self, timeout: float) -> str:
        line = self.poll_line(timeout)
        if line is None:
            raise BenchError(f"{self.label}: no output within {timeout} s{self.tail()}")
        return line

    def expect(self, tag: str, timeout: float) -> list[int]:
        """Read the next line, check its tag, and return its numbers."""
        words = self.read_line(timeout).split()
        if not words or words[0] != tag:
            raise BenchError(f"{self.label}: expected {tag!r}, got {' '.join(words)!r}")
        return [int(word) for word in words[1:]]

    def _read_available(self) -> None:
        poller = select.poll()
        poller.register(self._out, select.POLLIN)
        while poller.poll(0):
            chunk = os.read(self._out, 65536)
            if not chunk:
                break
            self._buf += chunk

    def await_tag_or_exit(self, tag: str, timeout: float) -> bool | None:
        """Wait for a line tagged ``tag`` (True) or the init's exit (False).

        None when neither came within ``timeout``. A workload that outlives
        its init keeps the output open, hence the pidfd beside it.
        """
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self._out, select.POLLIN)
        poller.register(self.pidfd, select.POLLIN)
        exited = False
        while True:
            while b"\n" in self._buf:
                line, _, self._buf = self._buf.partition(b"\n")
                if line.split()[:1] == [tag.encode()]:
                    return True
            if exited:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for fd, _ in poller.poll(left * 1000):
                if fd == self.pidfd:
                    exited = True
                    # What it wrote before leaving is in the pipe by now.
                    self._read_available()
                    break
                chunk = os.read(self._out, 65536)
                if chunk:
                    self._buf += chunk
                else:
                    poller.unregister(self._out)

    def wait_exit(self, timeout: float) -> int | None:
        """The monotonic time at which the init was seen to exit, or None."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        if poller.poll(timeout * 1000):
            return time.monotonic_ns()
        return None

    def returncode(self, timeout: float = 10) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self._gate >= 0:
            os.close(self._gate)
            self._gate = -1
        if self.proc.returncode is None and self.proc.poll() is None:
            if not self.pid1:
                # The workload may lead a group or session of its own.
                for pid in descendants(self.proc.pid):
                    kill_quietly(pid, signal.SIGKILL)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if self.returncode(10) is None:
                note(f"{self.label}: pid {self.proc.pid} survived SIGKILL for 10 s")
        if not self.pid1:
            reap_adopted()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        if self._out >= 0:
            os.close(self._out)
            self._out = -1
        self._stderr.close()


def settle(seconds: float) -> None:
    time.sleep(seconds)


def sleep_until(deadline_ns: int) -> None:
    """Sleep, then spin the last 0.3 ms, until CLOCK_MONOTONIC reaches the deadline."""
    left = (deadline_ns - time.monotonic_ns()) / 1e9 - 0.0003
    if left > 0:
        time.sleep(left)
    while time.monotonic_ns() < deadline_ns:
        pass


def rotated(items: Sequence[Init], round_no: int) -> list[Init]:
    shift = round_no % len(items)
    return [*items[shift:], *items[:shift]]


# --------------------------------------------------------------------------- phases


@dataclass
class Params:
    rounds: int = 40
    true_rounds: int = 30
    signals: int = 2000
    idle: float = 10.0
    storm: int = 20_000
    storm_rounds: int = 2
    burst: int = 10_000
    burst_rounds: int = 3
    early: int = 1000
    early_window: float = 0.050
    early_timeout: float = 2.0
    early_workers: int = 2
    reference_signals: int = 1000
    profile_signals: int = 400


@dataclass
class StormRun:
    seconds: float
    fork_seconds: float
    peak_zombies: int
    cpu_us_per_orphan: float
    left: int
    hwm_kib: int
    fork_failures: int


@dataclass
class BurstRun:
    zombies: int
    seconds: float
    reaps_per_s: float
    cpu_us_per_reap: float
    left: int


@dataclass
class EarlyTrial:
    offset_ms: float
    outcome: str
    returncode: int | None


@dataclass
class Raw:
    floor_ms: list[float] = field(default_factory=list)
    start_ms: dict[str, list[float]] = field(default_factory=dict)
    shutdown_ms: dict[str, list[float]] = field(default_factory=dict)
    shutdown_tail_ms: dict[str, list[float]] = field(default_factory=dict)
    true_ms: dict[str, list[float]] = field(default_factory=dict)
    signal_us: dict[str, list[float]] = field(default_factory=dict)
    signal_lost: dict[str, int] = field(default_factory=dict)
    rss_rest_kib: dict[str, int] = field(default_factory=dict)
    idle_ctx: dict[str, int] = field(default_factory=dict)
    idle_cpu_ms: dict[str, float] = field(default_factory=dict)
    storm: dict[str, list[StormRun]] = field(default_factory=dict)
    burst: dict[str, list[BurstRun]] = field(default_factory=dict)
    early: dict[str, list[EarlyTrial]] = field(default_factory=dict)
    reference_us: dict[str, list[float]] = field(default_factory=dict)
    profile: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def warm_up(session: Session, timeout: float = 20) -> None:
    """Send SIGUSR1 and wait for the workload's receipt: the init is fully up."""
    os.kill(session.pid, signal.SIGUSR1)
    session.expect("U", timeout)


def stop(session: Session) -> None:
    """SIGTERM to the init; bounded wait for its exit."""
    kill_quietly(session.pid, signal.SIGTERM)
    session.wait_exit(10)


def phase_lifecycle(inits: Sequence[Init], floor: Sequence[str], raw: Raw, p: Params) -> None:
    """Start latency (exec of the init to the workload's first instruction),
    with the bare interpreter's run as a floor, and shutdown latency
    (SIGTERM to the init's exit, with a workload that exits at once)."""
    sigwait = str(BUILD / "sigwait")
    for round_no in range(p.rounds):
        with Session(floor, pid1=True, label="floor") as session:
            t0 = session.start()
            t_end = session.wait_exit(10)
            if t_end is None or session.returncode() != 0:
                raise BenchError(f"the interpreter floor failed{session.tail()}")
            raw.floor_ms.append((t_end - t0) / 1e6)
        for init in rotated(inits, round_no):
            with Session([*init.command, sigwait], pid1=True, label=init.name) as session:
                t0 = session.start()
                (t_first,) = session.expect("R", 10)
                raw.start_ms.setdefault(init.name, []).append((t_first - t0) / 1e6)
                warm_up(session)
                settle(0.02)
                t_kill = time.monotonic_ns()
                os.kill(session.pid, signal.SIGTERM)
                t_exit = session.wait_exit(10)
                code = session.returncode()
                if t_exit is None or code != 0:
                    raise BenchError(f"{init.name}: shutdown failed (exit {code}){session.tail()}")
                raw.shutdown_ms.setdefault(init.name, []).append((t_exit - t_kill) / 1e6)
                # The workload's receipt splits it: forwarding, then the init's own exit.
                receipt = session.poll_line(1.0)
                if receipt is not None and receipt.startswith("T "):
                    t_got = int(receipt.split()[1])
                    raw.shutdown_tail_ms.setdefault(init.name, []).append((t_exit - t_got) / 1e6)


def phase_true(inits: Sequence[Init], raw: Raw, p: Params) -> None:
    """Wall time of ``INIT -- true``, from the exec of the init to its exit."""
    for round_no in range(p.true_rounds):
        for init in rotated(inits, round_no):
            with Session([*init.command, "true"], pid1=True, label=init.name) as session:
                t0 = session.start()
                t_end = session.wait_exit(10)
                code = session.returncode()
                if t_end is None or code != 0:
                    raise BenchError(f"{init.name} -- true failed (exit {code}){session.tail()}")
                raw.true_ms.setdefault(init.name, []).append((t_end - t0) / 1e6)


def phase_steady(inits: Sequence[Init], raw: Raw, p: Params) -> None:
    """The four inits side by side, each PID 1 with a sigwait workload: RSS at
    rest, idle cost over ``p.idle`` seconds, then signal forwarding latency
    with the signals alternating among them."""
    sessions: list[tuple[Init, Session]] = []
    try:
        start_sigwait_sessions(inits, "steady", sessions)
        settle(1.0)
        before = {init.name: (cpu_ns(s.pid), context_switches(s.pid)) for init, s in sessions}
        settle(p.idle)
        for init, s in sessions:
            cpu0, ctx0 = before[init.name]
            raw.idle_cpu_ms[init.name] = (cpu_ns(s.pid) - cpu0) / 1e6
            raw.idle_ctx[init.name] = context_switches(s.pid) - ctx0
            raw.rss_rest_kib[init.name] = status_fields(s.pid).get("VmRSS", 0)
        note(f"idle done; {p.signals} signals to each init")
        times, lost = send_signals(sessions, p.signals, random.Random(1))
        for name, pairs in times.items():
            raw.signal_us[name] = [(got - sent) / 1e3 for sent, got in pairs]
        raw.signal_lost.update(lost)
        for _, s in sessions:
            stop(s)
    finally:
        for _, s in sessions:
            s.close()


def start_sigwait_sessions(
    inits: Sequence[Init],
    label: str,
    sessions: list[tuple[Init, Session]],
    env: Callable[[Init], dict[str, str] | None] = lambda init: None,
) -> None:
    """Start each init as PID 1 over ``sigwait`` and wait until it forwards;
    ``sessions`` gets each one as soon as it exists (the caller closes them)."""
    sigwait = str(BUILD / "sigwait")
    for init in inits:
        session = Session(
            [*init.command, sigwait], pid1=True, label=f"{init.name}-{label}", env=env(init)
        )
        sessions.append((init, session))
        session.start()
        session.expect("R", 20)
        warm_up(session)


def send_signals(
    sessions: Sequence[tuple[Init, Session]], count: int, rng: random.Random
) -> tuple[dict[str, list[tuple[int, int]]], dict[str, int]]:
    """``count`` SIGUSR1s to each session's init, alternating among them and
    spaced 0.3-1 ms: for each init, the ``kill()`` and the workload's receipt
    (CLOCK_MONOTONIC ns) of every signal received, and how many never were."""
    lost = {init.name: 0 for init, _ in sessions}
    times: dict[str, list[tuple[int, int]]] = {init.name: [] for init, _ in sessions}
    for number in range(count):
        shift = number % len(sessions)
        for init, s in [*sessions[shift:], *sessions[:shift]]:
            t_send = time.monotonic_ns()
            os.kill(s.pid, signal.SIGUSR1)
            line = s.poll_line(2.0)
            if line is None or not line.startswith("U "):
                lost[init.name] += 1
                continue
            times[init.name].append((t_send, int(line.split()[1])))
            sleep_until(time.monotonic_ns() + rng.randrange(300_000, 1_000_000))
    return times, lost


def signal_round(
    inits: Sequence[Init],
    label: str,
    count: int,
    seed: int,
    env: Callable[[Init], dict[str, str] | None] = lambda init: None,
) -> dict[str, list[tuple[int, int]]]:
    """Start ``inits`` side by side, send each ``count`` SIGUSR1s as
    :func:`send_signals` does, stop them; a lost signal is an error."""
    sessions: list[tuple[Init, Session]] = []
    try:
        start_sigwait_sessions(inits, label, sessions, env)
        settle(0.5)
        times, lost = send_signals(sessions, count, random.Random(seed))
        if any(lost.values()):
            raise BenchError(f"signals lost in the {label} run: {lost}")
        for _, s in sessions:
            stop(s)
    finally:
        for _, s in sessions:
            s.close()
    return times


def phase_signal_path(
    inits: Sequence[Init], references: Sequence[Init], raw: Raw, p: Params
) -> None:
    """Where nucleus-trio's forwarding time goes, in two interleaved runs of
    four: tini, nucleus-trio and the two reference forwarders, plain, then
    with ``signal_profile`` loaded (through a ``sitecustomize``) into all
    but tini, whose marks are lined up with the harness's ``kill()`` and the
    workload's receipt. Four at a time, as in row 3: how many processes run
    between two signals to one forwarder changes its latency (caches)."""
    four = [init for init in inits if init.name in (TINI, NUCLEUS)] + list(references)
    times = signal_round(four, "reference", p.reference_signals, 2)
    for name, pairs in times.items():
        raw.reference_us[name] = [(got - sent) / 1e3 for sent, got in pairs]

    site = BUILD / "profile_site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(signal_profile.SITECUSTOMIZE)
    marks_paths = {
        init.name: BUILD / f"profile-{init.name.replace(' ', '-')}.json"
        for init in four
        if init.name != TINI
    }
    for path in marks_paths.values():
        path.unlink(missing_ok=True)

    def profiled(init: Init) -> dict[str, str] | None:
        if init.name not in marks_paths:
            return None
        return {
            **os.environ,
            "PYTHONPATH": f"{site}{os.pathsep}{HERE}",
            signal_profile.ENV: str(marks_paths[init.name]),
        }

    # The installed command's interpreter is isolated (-I): PYTHONPATH, and so
    # the profiler, reach the same code only through `python -m nucleus_trio`.
    unisolated = (str(VENV / "bin" / "python3"), "-m", "nucleus_trio", "--")
    four = [
        dataclasses.replace(init, command=unisolated) if init.name == NUCLEUS else init
        for init in four
    ]
    times = signal_round(four, "profile", p.profile_signals, 3, profiled)
    for name, path in marks_paths.items():
        try:
            marks = [(str(kind), int(at)) for kind, at in json.loads(path.read_text())]
        except (OSError, ValueError) as exc:
            raise BenchError(f"{name}: no profile marks ({exc})") from exc
        kills = [sent for sent, _ in times[name]]
        receipts = [got for _, got in times[name]]
        found = signal_profile.stages(marks, kills, receipts, signal.SIGUSR1)
        if not found:
            raise BenchError(f"{name}: its profile marks do not line up with the signals sent")
        raw.profile[name] = found


def phase_storm(init: Init, raw: Raw, p: Params) -> None:
    """20,000 double-forked orphans, one after another, under PID 1."""
    with Session(
        [*init.command, str(BUILD / "storm"), str(p.storm)], pid1=True, label=f"{init.name}-storm"
    ) as session:
        session.start()
        session.expect("R", 10)
        (workload,) = children(session.pid) or [0]
        warm_up(session)  # the init's own start-up stays out of its CPU count
        settle(0.05)
        cpu0 = cpu_ns(session.pid)
        os.kill(session.pid, signal.SIGUSR1)
        (t_storm,) = session.expect("S", 30)
        peak = 0
        t_forked: int | None = None
        failures = 0
        t_clear: int | None = None
        deadline = time.monotonic() + 120
        left = 0
        while time.monotonic() < deadline:
            line = session.poll_line(0.002)
            if line is not None and line.startswith("D "):
                t_forked, failures = (int(word) for word in line.split()[1:3])
            left = len([pid for pid in children(session.pid) if pid != workload])
            peak = max(peak, left)
            if t_forked is not None and left == 0:
                t_clear = time.monotonic_ns()
                break
        cpu1 = cpu_ns(session.pid)
        hwm = status_fields(session.pid).get("VmHWM", 0)
        if t_forked is None or t_clear is None:
            raw.failures.append(f"{init.name}: storm not over in 120 s ({left} zombies left)")
            t_clear = time.monotonic_ns()
            t_forked = t_forked or t_clear
        raw.storm.setdefault(init.name, []).append(
            StormRun(
                seconds=(t_clear - t_storm) / 1e9,
                fork_seconds=(t_forked - t_storm) / 1e9,
                peak_zombies=peak,
                cpu_us_per_orphan=(cpu1 - cpu0) / 1e3 / p.storm,
                left=left,
                hwm_kib=hwm,
                fork_failures=failures,
            )
        )
        stop(session)


def phase_burst(init: Init, raw: Raw, p: Params) -> None:
    """10,000 zombies re-parented to PID 1 at the same moment."""
    with Session(
        [*init.command, str(BUILD / "burst"), str(p.burst)], pid1=True, label=f"{init.name}-burst"
    ) as session:
        session.start()
        session.expect("R", 10)
        (workload,) = children(session.pid) or [0]
        warm_up(session)  # the init's own start-up stays out of its CPU count
        settle(0.05)
        cpu0 = cpu_ns(session.pid)
        os.kill(session.pid, signal.SIGUSR1)
        t_burst, made = session.expect("B", 60)
        session.expect("X", 30)
        deadline = time.monotonic_ns() + 60 * 10**9
        t_clear: int | None = None
        while time.monotonic_ns() < deadline:
            if only_child_left(session.pid, workload):
                t_clear = time.monotonic_ns()
                break
            time.sleep(0.0001)
        cpu1 = cpu_ns(session.pid)
        left = len([pid for pid in children(session.pid) if pid != workload])
        if t_clear is None:
            raw.failures.append(f"{init.name}: burst not reaped in 60 s ({left} zombies left)")
            t_clear = time.monotonic_ns()
        seconds = (t_clear - t_burst) / 1e9
        raw.burst.setdefault(init.name, []).append(
            BurstRun(
                zombies=made,
                seconds=seconds,
                reaps_per_s=(made - left) / seconds if seconds > 0 else 0.0,
                cpu_us_per_reap=(cpu1 - cpu0) / 1e3 / max(made, 1),
                left=left,
            )
        )
        stop(session)


def phase_reaping(
    one: Callable[[Init, Raw, Params], None],
    inits: Sequence[Init],
    raw: Raw,
    p: Params,
    rounds: int,
) -> None:
    for round_no in range(rounds):
        for init in rotated(inits, round_no):
            one(init, raw, p)


def early_trial(init: Init, delay_ns: int, p: Params) -> EarlyTrial:
    """SIGTERM ``delay_ns`` after the exec of the init (an ordinary child here).

    The workload blocks SIGTERM on its first instruction and reports it;
    it exits 3 when nothing came within ``p.early_timeout``.
    """
    timeout_ms = str(int(p.early_timeout * 1000))
    with Session(
        [*init.command, str(BUILD / "sigwait"), timeout_ms], pid1=False, label=f"{init.name}-early"
    ) as session:
        t0 = session.start()
        sleep_until(t0 + delay_ns)
        t_kill = time.monotonic_ns()
        os.kill(session.pid, signal.SIGTERM)
        got = session.await_tag_or_exit("T", p.early_timeout + 3)
        code = session.returncode(5) if got is False else None
        if got:
            outcome = "delivered"
        elif code == 128 + signal.SIGTERM:
            outcome = "delivered_killed"  # the workload died of it, unhandled
        elif code == -signal.SIGTERM:
            outcome = "lost_init_killed"
        elif code == 3:
            outcome = "lost_alive"  # init and workload lived on, no receipt
        elif code is None:
            outcome = "lost_hung"
        else:
            outcome = "other"
        return EarlyTrial(offset_ms=(t_kill - t0) / 1e6, outcome=outcome, returncode=code)


def phase_early(inits: Sequence[Init], raw: Raw, p: Params) -> None:
    """``p.early`` trials per init, interleaved, ``p.early_workers`` at a time.

    A trial of nucleus-trio lasts about as long as importing trio (the
    signal is delivered once its receiver opens); two at a time keep a
    thousand per init within the benchmark's five minutes. Each trial's
    offset is measured from its own exec, so the overlap does not bias it.
    """
    rng = random.Random(8)
    jobs = [
        (init, int(rng.uniform(0, p.early_window) * 1e9))
        for number in range(p.early)
        for init in rotated(inits, number)
    ]
    results: dict[str, list[EarlyTrial]] = {init.name: [] for init in inits}

    def run(job: tuple[Init, int]) -> None:
        init, delay = job
        results[init.name].append(early_trial(init, delay, p))

    with concurrent.futures.ThreadPoolExecutor(max_workers=p.early_workers) as pool:
        for future in [pool.submit(run, job) for job in jobs]:
            future.result()
    raw.early.update(results)


# --------------------------------------------------------------------------- report


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def p99(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[98]


@dataclass
class Row:
    """One line of the table: a value per init, and a target for nucleus-trio."""

    key: str
    label: str
    short: str
    unit: str
    values: dict[str, float | None]
    p99: dict[str, float | None] = field(default_factory=dict)
    higher_is_better: bool = False
    chart: bool = True
    target: str = ""
    met: bool | None = None
    shown: dict[str, str] = field(default_factory=dict)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("count", ""):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


NUCLEUS = "nucleus-trio"
#: The single-file build, measured in the start-up phases only.
NUCLEUS_PYZ = "nucleus-trio.pyz"
TINI = "tini"
TRIO_FLOOR = "trio-receiver floor"
SIGNALFD_FLOOR = "signalfd floor"
LOSSES = ("lost_init_killed", "lost_alive", "lost_hung", "other")


def build_rows(raw: Raw, p: Params, names: Sequence[str]) -> list[Row]:
    def per(fn: Callable[[str], float | None]) -> dict[str, float | None]:
        return {name: fn(name) for name in names}

    def med_of(table: dict[str, list[float]]) -> dict[str, float | None]:
        return per(lambda name: median(table.get(name, [])))

    def storm_med(fn: Callable[[StormRun], float]) -> dict[str, float | None]:
        return per(lambda name: median([fn(run) for run in raw.storm.get(name, [])]))

    def burst_med(fn: Callable[[BurstRun], float]) -> dict[str, float | None]:
        return per(lambda name: median([fn(run) for run in raw.burst.get(name, [])]))

    def counted(table: dict[str, int] | dict[str, float]) -> dict[str, float | None]:
        return per(lambda name: float(table[name]) if name in table else None)

    def early_count(name: str, *outcomes: str) -> int:
        return sum(1 for trial in raw.early.get(name, []) if trial.outcome in outcomes)

    rows: list[Row] = []

    def add(
        key: str,
        label: str,
        short: str,
        unit: str,
        values: dict[str, float | None],
        *,
        chart: bool = True,
        target: str = "",
        higher_is_better: bool = False,
    ) -> Row:
        row = Row(
            key,
            label,
            short,
            unit,
            values,
            chart=chart,
            target=target,
            higher_is_better=higher_is_better,
        )
        rows.append(row)
        return row

    def nucleus_only(value: float | None) -> dict[str, float | None]:
        """A row's values with ``value`` in nucleus-trio's column alone."""
        return {name: value if name == NUCLEUS else None for name in names}

    def versus_tini(row: Row, factor: float, unit: str, digits: int) -> None:
        """Target: nucleus-trio within ``factor`` times tini's value."""
        base = row.values.get(TINI)
        nucleus = row.values.get(NUCLEUS)
        if base is None:
            return
        sign = "≥" if row.higher_is_better else "≤"
        row.target = f"{sign} {factor:g}x tini = {factor * base:,.{digits}f} {unit}"
        if nucleus is not None:
            limit = factor * base
            row.met = nucleus >= limit if row.higher_is_better else nucleus <= limit

    floor = median(raw.floor_ms)
    start = add(
        "start",
        "1. start latency, exec of the init → workload's first instruction",
        "start latency",
        "ms",
        med_of(raw.start_ms),
    )
    start.p99 = per(lambda name: p99(raw.start_ms.get(name, [])))
    if floor is not None:
        start.target = f"≤ 1.5x bare interpreter = {1.5 * floor:.1f} ms"
        nucleus = start.values.get(NUCLEUS)
        start.met = nucleus is not None and nucleus <= 1.5 * floor
    add(
        "floor",
        "   bare interpreter `python3 -I -S -c pass`, exec → exit",
        "",
        "ms",
        nucleus_only(floor),
        chart=False,
        target="(Python's floor)",
    )

    def pyz_row(
        key: str, label: str, samples: dict[str, list[float]], base: Row, factor: float
    ) -> None:
        """The single-file build's figure beside the installed command's row."""
        value = median(samples.get(NUCLEUS_PYZ, []))
        if value is None:
            return
        row = add(key, label, "", "ms", nucleus_only(value), chart=False)
        if floor is not None:
            row.target = base.target
            row.met = value <= factor * floor

    pyz_row(
        "start_pyz",
        "   start latency of `dist/nucleus-trio.pyz` (the single-file build)",
        raw.start_ms,
        start,
        1.5,
    )
    true = add("true", "2. wall time of `INIT -- true`", "INIT -- true", "ms", med_of(raw.true_ms))
    if floor is not None:
        # A workload that ends before trio is up costs the init its start-up
        # and its exit, not trio's import (README, "Benchmarks").
        true.target = f"≤ 2x bare interpreter = {2 * floor:.1f} ms"
        nucleus = true.values.get(NUCLEUS)
        true.met = nucleus is not None and nucleus <= 2 * floor
    pyz_row("true_pyz", "   wall time of `nucleus-trio.pyz -- true`", raw.true_ms, true, 2)
    versus_tini(
        add(
            "signal_p50",
            f"3. signal forwarding latency, p50 of {p.signals:,}",
            "signal p50",
            "µs",
            med_of(raw.signal_us),
        ),
        3,
        "µs",
        0,
    )
    add(
        "signal_p99",
        "   signal forwarding latency, p99",
        "signal p99",
        "µs",
        per(lambda name: p99(raw.signal_us.get(name, []))),
    )
    lost = add(
        "signal_lost",
        "   signals that never arrived",
        "",
        "count",
        counted(raw.signal_lost),
        chart=False,
        target="0",
    )
    lost.met = lost.values.get(NUCLEUS) == 0
    versus_tini(
        add(
            "shutdown",
            "4. shutdown latency, SIGTERM → init exit",
            "shutdown",
            "ms",
            med_of(raw.shutdown_ms),
        ),
        10,
        "ms",
        1,
    )
    add(
        "shutdown_tail",
        "   of which from the workload's receipt of SIGTERM to the init's exit",
        "",
        "ms",
        med_of(raw.shutdown_tail_ms),
        chart=False,
    )
    add(
        "storm_time",
        f"5. storm of {p.storm:,} orphans: until all reaped",
        "storm time",
        "s",
        storm_med(lambda run: run.seconds),
    )
    add(
        "storm_peak",
        "   storm: peak zombies (adopted, not yet reaped)",
        "storm peak zombies",
        "count",
        storm_med(lambda run: float(run.peak_zombies)),
    )
    versus_tini(
        add(
            "storm_cpu",
            "   storm: init CPU per orphan",
            "storm CPU/orphan",
            "µs",
            storm_med(lambda run: run.cpu_us_per_orphan),
        ),
        5,
        "µs",
        1,
    )
    left = add(
        "storm_left",
        "   storm: zombies left",
        "",
        "count",
        per(
            lambda name: (
                float(max(run.left for run in raw.storm[name])) if raw.storm.get(name) else None
            )
        ),
        chart=False,
        target="0",
    )
    left.met = left.values.get(NUCLEUS) == 0
    versus_tini(
        add(
            "burst",
            f"   burst of {p.burst:,} zombies at once: reaps per second",
            "burst reaps/s\n(higher is better)",
            "/s",
            burst_med(lambda run: run.reaps_per_s),
            higher_is_better=True,
        ),
        0.9,
        "/s",
        0,
    )
    add(
        "burst_cpu",
        "   burst: init CPU per reap",
        "burst CPU/reap",
        "µs",
        burst_med(lambda run: run.cpu_us_per_reap),
    )
    rss = add(
        "rss",
        "6. RSS at rest",
        "RSS at rest",
        "MiB",
        per(lambda name: raw.rss_rest_kib[name] / 1024 if name in raw.rss_rest_kib else None),
        target="≤ 28 MiB",
    )
    rss.met = (rss.values.get(NUCLEUS) or float("inf")) <= 28
    add(
        "hwm",
        "   RSS high-water mark after the storm",
        "RSS high-water",
        "MiB",
        storm_med(lambda run: run.hwm_kib / 1024),
    )
    ctx = add(
        "idle_ctx",
        f"7. idle: context switches in {p.idle:g} s",
        "",
        "count",
        counted(raw.idle_ctx),
        chart=False,
        target="0",
    )
    ctx.met = ctx.values.get(NUCLEUS) == 0
    add(
        "idle_cpu",
        f"   idle: CPU time in {p.idle:g} s",
        "",
        "ms",
        counted(raw.idle_cpu_ms),
        chart=False,
    )
    early = add(
        "early_lost",
        f"8. early SIGTERMs lost, of {p.early} sent 0-{p.early_window * 1000:g} ms after the exec",
        "",
        "count",
        per(lambda name: float(early_count(name, *LOSSES)) if name in raw.early else None),
        chart=False,
        target="0 after its first line",
    )
    for name in names:
        if name not in raw.early:
            continue
        killed = early_count(name, "lost_init_killed")
        dropped = early_count(name, "lost_alive", "lost_hung")
        other = early_count(name, "other")
        extra = f", {other} other" if other else ""
        if name == NUCLEUS:
            latest = max(
                (t.offset_ms for t in raw.early[name] if t.outcome == "lost_init_killed"),
                default=None,
            )
            window = f" (all ≤ {latest:.1f} ms)" if latest is not None else ""
            early.shown[name] = (
                f"{killed + dropped + other} ({killed} before its first line{window}, "
                f"{dropped + other} after)"
            )
            early.met = dropped + other == 0
        else:
            early.shown[name] = (
                f"{killed + dropped + other} ({killed} init killed, {dropped} dropped{extra})"
            )
    return rows


def render_table(
    rows: Sequence[Row], names: Sequence[str], machine: dict[str, str], versions: dict[str, str]
) -> str:
    lines = [
        "# nucleus-trio benchmark",
        "",
        f"Machine: Linux {machine['kernel']}, {machine['cpu']}, {machine['nproc']} CPUs; "
        f"Python {machine['python']}; {machine['date']}.",
        f"Load average at start {machine['load_at_start']} (CPUs {machine['busy_at_start']} "
        f"busy just before the first phase), at the end {machine.get('load_at_end', '?')}.",
        "Versions: " + ", ".join(f"{name} {versions.get(name, '?')}" for name in names) + ".",
        "",
        "Medians unless marked; (xN) is the ratio to tini. Every init runs as PID 1 of a fresh "
        "PID namespace, except in 8 (an ordinary child, so a signal that kills the init shows).",
        "",
        "| metric | " + " | ".join(names) + " | nucleus-trio target | met |",
        "|---|" + "---:|" * len(names) + "---|:-:|",
    ]
    for row in rows:
        base = row.values.get(TINI)
        cells = []
        for name in names:
            if name in row.shown:
                cells.append(row.shown[name])
                continue
            value = row.values.get(name)
            text = fmt(value, row.unit)
            r = ratio(value, base)
            if r is not None and name != TINI and row.chart:
                text += f" (x{r:.2f})"
            cells.append(text)
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {row.target} | {met} |")
    return "\n".join(lines) + "\n"


def render_signal_section(raw: Raw, p: Params) -> str:
    """Signal forwarding beside the two reference forwarders, and the
    profiled path stage by stage."""
    if not raw.reference_us:
        return ""
    base = median(raw.reference_us.get(TINI, []))
    lines = [
        "",
        "## 3. Signal forwarding: where the time goes",
        "",
        "A second interleaved run of four, as in row 3: tini, nucleus-trio and two "
        "reference forwarders (`benchmarks/workloads/forwarder.py`) that do nothing "
        "but forward. The *trio-receiver floor* takes the signal from "
        "`trio.open_signal_receiver`, as the spec has nucleus-trio do; the *signalfd "
        "floor* reads a signalfd that trio's epoll watches.",
        "",
        f"| forwarder ({p.reference_signals:,} signals each) | p50 | p99 | p50 ratio to tini |",
        "|---|---:|---:|---:|",
    ]
    for name, values in raw.reference_us.items():
        r = ratio(median(values), base)
        lines.append(
            f"| {name} | {fmt(median(values), 'µs')} | {fmt(p99(values), 'µs')} | "
            + (f"x{r:.2f}" if r is not None else "n/a")
            + " |"
        )
    profiled = list(raw.profile)
    if profiled:
        lines += [
            "",
            f"Stage by stage: medians of {p.profile_signals:,} signals in a third run of "
            "the same four, each forwarder but tini instrumented by "
            "`benchmarks/signal_profile.py` (its hooks add a few µs to every stage; the "
            "total is the median of the totals, not the sum of the medians):",
            "",
            "| stage | " + " | ".join(profiled) + " |",
            "|---|" + "---:|" * len(profiled),
        ]
        for key, label in signal_profile.STAGES:
            cells = [fmt(raw.profile[name].get(key), "µs") for name in profiled]
            lines.append(f"| {label} | " + " | ".join(cells).replace("n/a", "—") + " |")
    return "\n".join(lines) + "\n"


def render_chart(
    rows: Sequence[Row], names: Sequence[str], machine: dict[str, str], path: Path
) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        note("matplotlib is not installed (the 'bench' extra): no chart")
        return False
    charted = [row for row in rows if row.chart and row.values.get(TINI)]
    others = [name for name in names if name != TINI]
    fig, ax = plt.subplots(figsize=(13, 6.5))
    width = 0.8 / max(len(others), 1)
    colors = {"dumb-init": "#8c8c8c", "catatonit": "#5b8bd0", NUCLEUS: "#d0622b"}
    for index, name in enumerate(others):
        xs: list[float] = []
        ys: list[float] = []
        for position, row in enumerate(charted):
            r = ratio(row.values.get(name), row.values.get(TINI))
            if r is not None and r > 0:
                xs.append(position + (index - (len(others) - 1) / 2) * width)
                ys.append(r)
        ax.bar(xs, ys, width=width, label=name, color=colors.get(name))
    ax.axhline(1.0, color="black", linewidth=1, label="tini = 1")
    ax.set_yscale("log")
    ax.set_xticks(range(len(charted)))
    ax.set_xticklabels([row.short for row in charted], rotation=30, ha="right", fontsize=9)
    ax.set_ylabel("ratio to tini (log scale; lower is better unless noted)")
    ax.set_title(
        f"Inits compared with tini — Linux {machine['kernel']}, {machine['cpu']}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}, {machine['date']}",
        fontsize=10,
    )
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- main


def parse(argv: Sequence[str]) -> tuple[Params, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--early",
        type=int,
        default=Params.early,
        help="early SIGTERM trials per init (default %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=Params.rounds,
        help="rounds of start/shutdown latency (default %(default)s)",
    )
    parser.add_argument(
        "--signals",
        type=int,
        default=Params.signals,
        help="signals sent to each init (default %(default)s)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=Params.idle,
        help="idle window in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few rounds of everything, to check the harness"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="measure only this init (repeatable; tini is always kept)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    params = Params(early=args.early, rounds=args.rounds, signals=args.signals, idle=args.idle)
    if args.quick:
        params = Params(
            rounds=4,
            true_rounds=3,
            signals=100,
            idle=2.0,
            storm=2000,
            storm_rounds=1,
            burst=2000,
            burst_rounds=1,
            early=min(args.early, 10),
            reference_signals=50,
            profile_signals=50,
        )
    return params, args


def main(argv: Sequence[str]) -> int:
    params, args = parse(argv)
    if os.geteuid() != 0:
        print("bench.py needs root: PID namespaces (unshare --pid) and apt-get.", file=sys.stderr)
        return 2
    for tool in ("unshare",):
        if shutil.which(tool) is None:
            print(f"bench.py needs {tool} (util-linux)", file=sys.stderr)
            return 2
    try:
        become_subreaper()
        note("set-up: peers, workloads, nucleus-trio in benchmarks/build/venv")
        peers = ensure_peers()
        build_workloads()
        nucleus = install_nucleus()
        LOGS.mkdir(parents=True, exist_ok=True)
        inits = [
            Init(TINI, (peers["tini"], "--")),
            Init("dumb-init", (peers["dumb-init"], "--")),
            Init("catatonit", (peers["catatonit"], "--")),
            Init(NUCLEUS, (str(nucleus), "--")),
        ]
        if args.only:
            inits = [init for init in inits if init.name in {TINI, *args.only}]
        names = [init.name for init in inits]
        python = VENV / "bin" / "python3"
        # The .pyz starts the python3 on PATH: this venv's (a real binary,
        # where PATH's first may be a version manager's shell shim).
        os.environ["PATH"] = f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"
        start_up = [*inits, Init(NUCLEUS_PYZ, (str(build_pyz()), "--"))]
        references = [
            Init(TRIO_FLOOR, (str(python), str(WORKLOADS / "forwarder.py"), "trio")),
            Init(SIGNALFD_FLOOR, (str(python), str(WORKLOADS / "forwarder.py"), "signalfd")),
        ]
        floor = [str(python), "-I", "-S", "-c", "pass"]
        machine = machine_info(python)
        nucleus_version = run_quiet([str(nucleus), "--version"], "nucleus-trio --version").split()
        versions = {name: package_version(name) for name in PEER_PACKAGES}
        versions[NUCLEUS] = (nucleus_version[-1] if nucleus_version else "?") + (
            f" ({git_revision()})"
        )
        raw = Raw()
        phases: list[tuple[str, Callable[[], None]]] = [
            (
                f"1+4. start and shutdown latency, {params.rounds} rounds",
                lambda: phase_lifecycle(start_up, floor, raw, params),
            ),
            (
                f"2. INIT -- true, {params.true_rounds} rounds",
                lambda: phase_true(start_up, raw, params),
            ),
            (
                f"6+7+3. side by side: RSS, {params.idle:g} s idle, signals",
                lambda: phase_steady(inits, raw, params),
            ),
            (
                "3. signal path: reference forwarders, then stage by stage",
                lambda: phase_signal_path(inits, references, raw, params),
            ),
            (
                f"5. storm of {params.storm} orphans, {params.storm_rounds} rounds",
                lambda: phase_reaping(phase_storm, inits, raw, params, params.storm_rounds),
            ),
            (
                f"5. burst of {params.burst} zombies, {params.burst_rounds} rounds",
                lambda: phase_reaping(phase_burst, inits, raw, params, params.burst_rounds),
            ),
            (f"8. early SIGTERM, {params.early} per init", lambda: phase_early(inits, raw, params)),
        ]
        timings: dict[str, float] = {}
        for title, phase in phases:
            note(title)
            began = time.monotonic()
            phase()
            timings[title] = round(time.monotonic() - began, 1)
        machine["load_at_end"] = load_average()
        rows = build_rows(raw, params, names)
        table = render_table(rows, names, machine, versions)
        table += render_signal_section(raw, params)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "latest.md").write_text(table)
        charted = render_chart(rows, names, machine, args.out / "latest.png")
        summary = {
            row.key: {
                "label": row.label.strip(),
                "unit": row.unit,
                "values": row.values,
                **({"p99": row.p99} if row.p99 else {}),
                "target": row.target,
                "met": row.met,
            }
            for row in rows
        }
        document = {
            "machine": machine,
            "versions": versions,
            "params": asdict(params),
            "phase_seconds": timings,
            "total_seconds": round(time.monotonic() - T_START, 1),
            "summary": summary,
            "raw": asdict(raw),
        }
        (args.out / "latest.json").write_text(json.dumps(document, indent=1) + "\n")
        print(table)
        for failure in raw.failures:
            print(f"warning: {failure}")
        written = ["latest.md", "latest.json", *(["latest.png"] if charted else [])]
        note(
            f"done in {time.monotonic() - T_START:.0f} s; wrote "
            + ", ".join(str(args.out / name) for name in written)
        )
        return 0
    except BenchError as exc:
        print(f"bench.py: {exc}", file=sys.stderr)
        return 1
    finally:
        clean_up_everything()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
