"""The harness: every init is started through the gate of ``launch`` and
watched from outside.

:class:`Session` starts an init (or a plain program) through ``launch``, a
tiny C program that waits on a gate (so the harness knows the PID and holds
a pidfd before anything happens), prints CLOCK_MONOTONIC and execs the init
in the same process; it reads the workload's tagged lines and the init's
exit.

Every process it starts is in a session of its own and is killed in a
``finally``; the harness is a child subreaper, so orphans of an init that
died come back to it and are killed too. Every wait is bounded.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from benchmarks.procfs import children, descendants, read_ints

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOADS = HERE / "workloads"
BUILD = HERE / "build"
LOGS = BUILD / "logs"
VENV = BUILD / "venv"
RESULTS = HERE / "results"

UNSHARE = ("unshare", "--pid", "--fork", "--kill-child", "--mount-proc")
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


@dataclass(frozen=True)
class Init:
    """An init under test: its name and the command before the workload."""

    name: str
    command: tuple[str, ...]


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
