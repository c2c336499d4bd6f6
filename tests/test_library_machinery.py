"""The library's share of the machinery (README, "Library" and "Shutdown").

What the command line guarantees, the supervisor guarantees too, on trio and
on asyncio:

- leaving the block ends what the workloads left behind (orphans re-parented
  to the subreaper, the children of a worker still running): no process and
  no zombie outlives it, and the grace ends as soon as they are gone;
- the host's own SIGPIPE is never forwarded, and a set the backend refuses is
  an error at the call, not in a background task;
- the default forwarding set works on asyncio too, and several workers share
  one signal;
- a second Ctrl-C, a KeyboardInterrupt or a cancellation during the grace
  never skips the SIGKILL, and the exception comes out as it went in;
- orphan reaping never polls while a zombie someone else will collect waits.

Every test runs on both backends, bounds its time (pytest-timeout and
``fail_after``) and kills and reaps what it started by PID on the way out,
pass or fail (the :func:`lab` fixture, :func:`child_python`).
Processes the test does not own are known by PID and start time, so a reused
PID is never taken for them. The Ctrl-C and wake-up tests run the supervisor
in a child Python process under ``anyio.run`` (one per backend): a real SIGINT
sent to pytest would be handled by the test runner's event loop, not by a
program's, and could end the whole test session.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, ParamSpec

import anyio
import pytest

from nucleus_trio import Process, Supervisor, open_supervisor
from nucleus_trio.kernel import PR_SET_CHILD_SUBREAPER, prctl
from tests.support.launch import Lines, kill_session, workload
from tests.support.library import (
    BOTH,
    Pipe,
    children,
    cleanup,
    cmdline,
    is_my_child,
    leaves,
    subreaper_restored,
    zombie_children,
)
from tests.support.procfs import children_of, ctxt_switches, group_members, start_time, state_of

P = ParamSpec("P")

#: For the tests that run the supervisor in a child Python process.
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
#: Generous bound of each block: the machine is small and shared.
T = 30.0

#: The library's default forwarding set (README, "Library"): the seed's, plus WINCH.
DEFAULT_SET = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)

#: A worker whose whole process group (the shell and its ``sleep``) ignores SIGTERM.
#: It ends by itself within 10 s once its parent is gone (a test killed midway).
STUBBORN = 'trap "" TERM; echo ready; while kill -0 $PPID 2>/dev/null; do sleep 10; done'


# -- helpers ------------------------------------------------------------------


def plain_failures(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Let no BaseExceptionGroup leave an async test: turn it into an
    AssertionError naming what is inside.

    anyio's asyncio test runner task dies of a BaseException that is no pytest
    outcome (a group holding ``Failed`` or a cancellation); its unretrieved
    error is then logged whenever the task is collected, possibly inside
    pytest's own ``ast.parse``, which Python 3.11 cannot take (INTERNALERROR:
    "AST constructor recursion depth mismatch")."""

    @functools.wraps(test)
    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await test(*args, **kwargs)
        except BaseExceptionGroup as group:
            if isinstance(group, Exception):
                raise
            raise AssertionError(f"the test ended with {group!r}: {leaves(group)}") from group

    return run


def on_both_backends(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """An async test run on asyncio and on trio, within 60 s (pytest-timeout),
    under :func:`plain_failures`."""
    return pytest.mark.timeout(60)(pytest.mark.anyio(BOTH(plain_failures(test))))


class Tracked:
    """A process the test watches but may not own, known by PID and start time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        started = start_time(pid)
        assert started is not None, f"pid {pid} is gone already"
        self.started = started

    def state(self) -> str | None:
        """Its state (``Z`` for a zombie), or None once it is gone and reaped."""
        state = state_of(self.pid)
        return state if start_time(self.pid) == self.started else None

    def end_group(self) -> None:
        """Kill its whole process group (it leads one), if it is still there."""
        if self.state() is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def end(self) -> None:
        """Kill it (and reap it when it is this process's child), if it is still there."""
        if is_my_child(self.pid):
            cleanup([self.pid])
        elif self.state() not in (None, "Z"):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def still_there(tracked: Iterable[Tracked]) -> dict[int, str]:
    """Those of ``tracked`` that still exist, zombies included: PID -> state."""
    return {t.pid: state for t in tracked if (state := t.state()) is not None}


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` (the test's own look at ``/proc``) until it holds, or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.01)


async def line_of(pipe: Pipe, what: str, timeout: float = 10.0) -> str:
    """The next line of ``pipe``, or fail naming ``what`` was awaited."""
    with anyio.move_on_after(timeout):
        return await pipe.readline()
    raise AssertionError(f"{what}: no line within {timeout}s")


def harmless(signo: int, frame: object) -> None:
    """A do-nothing handler: a signal sent to pytest while no receiver is
    installed never kills it."""


@contextmanager
def host_signals(*harmless_on: int) -> Iterator[None]:
    """Put back every signal disposition the test may change (asyncio leaves
    SIG_DFL behind when a receiver closes); meanwhile :func:`harmless`
    handles each of ``harmless_on``, and SIGPIPE is ignored as Python starts."""
    touched = {*DEFAULT_SET, signal.SIGPIPE, *harmless_on}
    previous = {signo: signal.getsignal(signo) for signo in touched}
    for signo in harmless_on:
        signal.signal(signo, harmless)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        yield
    finally:
        for signo, handler in previous.items():
            if handler is not None:
                signal.signal(signo, handler)


def send_to_self(signo: int) -> None:
    """Send ``signo`` to this process, unless that would kill pytest: a
    receiver that closed may have left SIG_DFL behind (asyncio does)."""
    handler = signal.getsignal(signo)
    if signo != signal.SIGWINCH:
        assert handler not in (signal.SIG_DFL, None), (
            f"signal {signo} has no handler left here (SIG_DFL): not sent, it would kill pytest"
        )
    os.kill(os.getpid(), signo)


async def receivers_installed(signals: Iterable[int]) -> None:
    """Wait until the forwarding tasks run and hold each of ``signals``."""
    await anyio.wait_all_tasks_blocked()
    for signo in signals:
        assert signal.getsignal(signo) is not harmless, f"no receiver for {signo}"


def print_signals() -> list[str]:
    """A worker that prints the number of each signal it receives (after
    ``ready PID``); on SIGTERM it prints 15 and exits 115."""
    return workload("print_signals.py", str(int(signal.SIGTERM)))


class Lab:
    """What one test starts: its pipes, the workers it starts through
    :meth:`start` (in the supervisor :meth:`supervisor` opened last) and the
    processes it watches. The :func:`lab` fixture closes the pipes and kills
    and reaps the rest by PID when the test ends, whatever happened."""

    def __init__(self) -> None:
        self.pipes: list[Pipe] = []
        self.workers: list[Process] = []
        self.tracked: list[Tracked] = []
        self._supervisor: Supervisor | None = None

    def pipe(self) -> Pipe:
        """A new pipe, closed on the way out."""
        pipe = Pipe()
        self.pipes.append(pipe)
        return pipe

    def track(self, pid: int) -> Tracked:
        """Watch ``pid`` (see :class:`Tracked`); it is ended on the way out."""
        tracked = Tracked(pid)
        self.tracked.append(tracked)
        return tracked

    @asynccontextmanager
    async def supervisor(
        self, *, grace: float, subreaper: bool = False, reap_orphans: bool = False
    ) -> AsyncIterator[Supervisor]:
        """``open_supervisor(...)``, the one :meth:`start` starts workers in."""
        async with open_supervisor(
            grace=grace, subreaper=subreaper, reap_orphans=reap_orphans
        ) as supervisor:
            self._supervisor = supervisor
            yield supervisor

    @asynccontextmanager
    async def reaping_supervisor(self, *, grace: float) -> AsyncIterator[Supervisor]:
        """A subreaper that reaps orphans, within :data:`T` seconds; the
        subreaper flag is put back afterwards."""
        with subreaper_restored(), anyio.fail_after(T):
            async with self.supervisor(subreaper=True, reap_orphans=True, grace=grace) as sup:
                yield sup

    @asynccontextmanager
    async def forwarding_supervisor(self, *harmless_on: int) -> AsyncIterator[Supervisor]:
        """A supervisor (grace 5 s) within :data:`T` seconds, inside
        :func:`host_signals` (``harmless_on``)."""
        with host_signals(*harmless_on), anyio.fail_after(T):
            async with self.supervisor(grace=5) as sup:
                yield sup

    async def start(
        self, argv: list[str], out: Pipe | None = None, *, process_group: bool = True
    ) -> Process:
        """Start ``argv`` (its stdout to ``out``, whose write end this process
        then closes) and own it."""
        assert self._supervisor is not None, "no supervisor opened"
        worker = await self._supervisor.start(
            argv, stdout=None if out is None else out.w, process_group=process_group
        )
        self.workers.append(worker)
        if out is not None:
            out.close_write()
        return worker

    async def start_reporting(self, out: Pipe) -> Process:
        """Start :func:`print_signals` writing to ``out``; return once it is ready."""
        worker = await self.start(print_signals(), out)
        assert await line_of(out, "the worker's ready line") == f"ready {worker.pid}"
        return worker

    async def start_stubborn(self, out: Pipe) -> Process:
        """Start :data:`STUBBORN` writing to ``out``; return once it ignores SIGTERM."""
        worker = await self.start(["sh", "-c", STUBBORN], out)
        assert await line_of(out, "the stubborn worker's ready line") == "ready"
        return worker

    def end(self) -> None:
        """Close every pipe; kill and reap by PID every process still there."""
        for pipe in self.pipes:
            pipe.close()
        for process in reversed(self.tracked):
            process.end()
        cleanup(w.pid for w in self.workers)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A :class:`Lab`, ended when the test ends, pass or fail."""
    started = Lab()
    yield started  # pytest runs what follows whether the test passed or not
    started.end()


async def stop_reporting(worker: Process) -> None:
    """SIGTERM the :func:`print_signals` worker and check that it took it."""
    worker.terminate()
    assert (await worker.wait()).code == 100 + signal.SIGTERM


def write_to_a_broken_pipe() -> None:
    """What raises SIGPIPE in this process: a write to a pipe without a reader."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with pytest.raises(BrokenPipeError):
            os.write(write_end, b"x")
    finally:
        os.close(write_end)


class ChildPython:
    """A workload script run with this Python, its stdout read by line."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: Path) -> None:
        self.proc = proc
        self.stderr = stderr
        assert proc.stdout is not None
        self.out = Lines(proc.stdout.fileno(), errors="strict")
        #: Process groups to kill on the way out, whatever happened.
        self.groups: list[Tracked] = []

    def readline(self, timeout: float, what: str) -> str:
        """One line of stdout (without its newline), or fail naming ``what``
        was awaited, with the script's stderr."""
        try:
            return self.out.readline(timeout, keepends=False)
        except AssertionError as exc:
            stderr = self.stderr.read_text()
            raise AssertionError(f"{what}: {exc}; stderr: {stderr!r}") from None

    def json(self, timeout: float, what: str) -> dict[str, Any]:
        """One line of stdout, a JSON object (see :meth:`readline`)."""
        line = self.readline(timeout, what)
        result = json.loads(line)
        assert isinstance(result, dict), line
        return result


@contextmanager
def child_python(tmp_path: Path, name: str, *args: str) -> Iterator[ChildPython]:
    """Run ``tests/workloads/NAME ARGS``; this process is a subreaper meanwhile,
    so what the script leaves behind is re-parented here, then killed and
    reaped by PID whatever happened."""
    before = children()
    stderr = tmp_path / f"{name}.stderr"
    with subreaper_restored(), stderr.open("wb") as err:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        proc = subprocess.Popen(
            workload(name, *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
        child = ChildPython(proc, stderr)
        try:
            yield child
        finally:
            for group in child.groups:
                group.end_group()
            kill_session(proc)
            cleanup(children() - before)
            assert proc.stdout is not None
            proc.stdout.close()


# -- leaving the block ends what the workloads left behind ------------------------------


@on_both_backends
async def test_leftover_of_an_exited_worker_is_ended(anyio_backend: str, lab: Lab) -> None:
    """``sh -c "sleep 30 & exit 0"``: the ``sleep``, re-parented to the
    subreaper, is gone after the block (no process, no zombie), and the grace
    ended with it, not after 30 s."""
    out = lab.pipe()
    async with lab.reaping_supervisor(grace=30):
        worker = await lab.start(["sh", "-c", "sleep 30 >/dev/null & echo $!; exit 0"], out)
        leftover = lab.track(int(await line_of(out, "the sleep's PID")))
        assert (await worker.wait()).code == 0
        await eventually(lambda: is_my_child(leftover.pid), "the sleep's re-parenting")
        left_at = time.monotonic()
    ended = time.monotonic() - left_at
    assert still_there(lab.tracked) == {}, "the worker's leftover outlived the block"
    assert ended < 10, f"the block took {ended:.1f}s: the grace must end with the leftover"


@on_both_backends
async def test_leftover_that_ignores_sigterm_is_killed_after_the_grace(
    anyio_backend: str, lab: Lab
) -> None:
    """The leftovers get the command line's schedule: SIGTERM, and SIGKILL
    once the grace is over."""
    out = lab.pipe()
    script = '(trap "" TERM; exec sleep 30) >/dev/null & echo $!; exit 0'
    async with lab.reaping_supervisor(grace=1):
        worker = await lab.start(["sh", "-c", script], out)
        leftover = lab.track(int(await line_of(out, "the sleep's PID")))
        assert (await worker.wait()).code == 0
        # Once it runs sleep, the subshell has set SIGTERM ignored.
        await eventually(
            lambda: (cmdline(leftover.pid) or "").startswith("sleep") and is_my_child(leftover.pid),
            "the leftover sleep, re-parented to the subreaper",
        )
        left_at = time.monotonic()
    ended = time.monotonic() - left_at
    assert still_there(lab.tracked) == {}, "the leftover that ignores SIGTERM outlived the block"
    assert 0.9 <= ended < 10, f"the block took {ended:.1f}s, grace 1s"


@pytest.mark.parametrize("leave", ["before_it_exits", "after_it_exited"])
@on_both_backends
async def test_subshell_leftover_leaves_no_zombie(anyio_backend: str, leave: str, lab: Lab) -> None:
    """``sh -c "(sleep .4; exit 3) & exit 0"``: leaving the block while the
    subshell runs (about 0.1 s in) or once it has exited leaves no process and
    no zombie of it or of its ``sleep``, then nor later."""
    out = lab.pipe()
    zombies_before = zombie_children()
    async with lab.reaping_supervisor(grace=5):
        started = time.monotonic()
        worker = await lab.start(["sh", "-c", "(sleep .4; exit 3) & echo $!; exit 0"], out)
        subshell = lab.track(int(await line_of(out, "the subshell's PID")))
        await eventually(lambda: bool(children_of(subshell.pid)), "the subshell's sleep")
        for pid in children_of(subshell.pid):
            lab.track(pid)
        assert (await worker.wait()).code == 0
        if leave == "before_it_exits":
            await anyio.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
            assert subshell.state() not in (None, "Z"), (
                "too slow: the subshell ended before the block did"
            )
        else:
            await eventually(lambda: subshell.state() in (None, "Z"), "the subshell's exit")
    assert still_there(lab.tracked) == {}, "left right after the block"
    await anyio.sleep(0.6)  # past the subshell's own end: nothing turns up later
    assert still_there(lab.tracked) == {}, "left 0.6 s after the block"
    assert zombie_children() - zombies_before == set()


@pytest.mark.parametrize("process_group", [True, False], ids=["own_group", "callers_group"])
@on_both_backends
async def test_children_of_a_running_worker_are_ended(
    anyio_backend: str, process_group: bool, lab: Lab
) -> None:
    """A worker still running with children of its own
    (``sh -c "sleep 30 & sleep 30 & wait"``): all of them are gone after the
    block, whether the worker has a process group of its own or not."""
    out = lab.pipe()
    script = "sleep 30 >/dev/null & echo $!; sleep 30 >/dev/null & echo $!; wait"
    async with lab.reaping_supervisor(grace=30):
        worker = await lab.start(["sh", "-c", script], out, process_group=process_group)
        lab.track(worker.pid)
        for _ in range(2):
            lab.track(int(await line_of(out, "a sleep's PID")))
        left_at = time.monotonic()
    ended = time.monotonic() - left_at
    assert worker.returncode == -signal.SIGTERM
    assert still_there(lab.tracked) == {}, "the worker's children outlived the block"
    assert ended < 10, f"the block took {ended:.1f}s: the grace must end with them"


# -- SIGPIPE and the sets a backend refuses ---------------------------------------------


@on_both_backends
async def test_the_hosts_own_sigpipe_is_never_forwarded(anyio_backend: str, lab: Lab) -> None:
    """After ``forward_signals(worker)`` (the default set), this process's own
    write to a broken pipe does not reach the worker; the SIGUSR1 sent after it
    does. The worker reports signals in order of their numbers (13 < 15), so a
    forwarded SIGPIPE would show before the SIGTERM that ends it."""
    out = lab.pipe()
    async with lab.forwarding_supervisor(signal.SIGUSR1) as sup:
        worker = await lab.start_reporting(out)
        sup.forward_signals(worker)
        await receivers_installed([signal.SIGUSR1])
        write_to_a_broken_pipe()
        send_to_self(signal.SIGUSR1)
        assert await line_of(out, "the forwarded SIGUSR1") == str(int(signal.SIGUSR1))
        await stop_reporting(worker)
    reported = out.read_all().split()
    assert reported == [str(int(signal.SIGTERM))], (
        f"after SIGUSR1 the worker reported {reported} (13 is SIGPIPE)"
    )


@on_both_backends
async def test_the_sigpipe_probe_reports_a_sigpipe_that_reaches_it(
    anyio_backend: str, lab: Lab
) -> None:
    """The control of the test above: the same worker does report a SIGPIPE
    sent to it, and a SIGUSR1 forwarded to it."""
    out = lab.pipe()
    async with lab.forwarding_supervisor(signal.SIGUSR1) as sup:
        worker = await lab.start_reporting(out)
        sup.forward_signals(worker, [signal.SIGUSR1])
        await receivers_installed([signal.SIGUSR1])
        worker.send_signal(signal.SIGPIPE)
        assert await line_of(out, "the SIGPIPE sent") == str(int(signal.SIGPIPE))
        send_to_self(signal.SIGUSR1)
        assert await line_of(out, "the forwarded SIGUSR1") == str(int(signal.SIGUSR1))
        await stop_reporting(worker)


REFUSED = {
    "SIGPIPE": [signal.SIGPIPE],
    "SIGKILL": [signal.SIGKILL],
    "SIGSTOP": [signal.SIGSTOP],
    "SIGUSR1+SIGKILL": [signal.SIGUSR1, signal.SIGKILL],
}


@pytest.mark.parametrize("name", list(REFUSED))
@on_both_backends
async def test_a_refused_set_is_an_error_at_the_call(
    anyio_backend: str, name: str, lab: Lab
) -> None:
    """SIGPIPE, SIGKILL or SIGSTOP in the set: ValueError from
    ``forward_signals`` itself; nothing is left running in the background (no
    receiver installed) and the block ends normally."""
    async with lab.forwarding_supervisor(signal.SIGUSR1) as sup:
        worker = await lab.start(["sleep", "30"])
        with pytest.raises(ValueError):
            sup.forward_signals(worker, REFUSED[name])
        await anyio.wait_all_tasks_blocked()
        assert signal.getsignal(signal.SIGUSR1) is harmless
        assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
        assert worker.returncode is None
    assert worker.returncode == -signal.SIGTERM


@on_both_backends
async def test_a_realtime_signal_is_refused_on_asyncio_and_forwarded_on_trio(
    anyio_backend: str, lab: Lab
) -> None:
    """asyncio cannot receive ``SIGRTMIN + 3``: ValueError at the call. trio
    can: it is forwarded."""
    realtime = signal.SIGRTMIN + 3
    out = lab.pipe()
    async with lab.forwarding_supervisor(realtime) as sup:
        worker = await lab.start_reporting(out)
        if anyio_backend == "asyncio":
            with pytest.raises(ValueError):
                sup.forward_signals(worker, [realtime])
            await anyio.wait_all_tasks_blocked()
            assert signal.getsignal(realtime) is harmless
        else:
            sup.forward_signals(worker, [realtime])
            await receivers_installed([realtime])
            send_to_self(realtime)
            assert await line_of(out, "the forwarded SIGRTMIN+3") == str(realtime)
        await stop_reporting(worker)


# -- the default set, and one signal for several workers ---------------------------------


async def workers_sharing(
    lab: Lab, sup: Supervisor, signo: int, outs: Iterable[Pipe]
) -> list[Process]:
    """A :func:`print_signals` worker writing to each of ``outs``, then
    ``forward_signals(worker, [signo])`` for each, one after the other, in
    this order."""
    workers = [await lab.start_reporting(out) for out in outs]
    for worker in workers:
        sup.forward_signals(worker, [signo])
        await receivers_installed([signo])
    return workers


@on_both_backends
async def test_the_default_set_forwards_without_tearing_the_block_down(
    anyio_backend: str, lab: Lab
) -> None:
    """``forward_signals(worker)`` with the default set: SIGUSR1 and SIGWINCH
    sent to this process reach the worker, and the block ends normally."""
    out = lab.pipe()
    async with lab.forwarding_supervisor(signal.SIGUSR1) as sup:
        worker = await lab.start_reporting(out)
        sup.forward_signals(worker)
        await receivers_installed([signal.SIGUSR1])
        for signo in (signal.SIGUSR1, signal.SIGWINCH):
            send_to_self(signo)
            assert await line_of(out, f"the forwarded {signo.name}") == str(int(signo))
        await stop_reporting(worker)


@on_both_backends
async def test_several_workers_share_one_signal(anyio_backend: str, lab: Lab) -> None:
    """Two workers, each ``forward_signals(..., [SIGUSR1])``: one SIGUSR1 sent
    to this process reaches both."""
    outs = [lab.pipe(), lab.pipe()]
    async with lab.forwarding_supervisor(signal.SIGUSR1) as sup:
        workers = await workers_sharing(lab, sup, signal.SIGUSR1, outs)
        send_to_self(signal.SIGUSR1)
        got: list[tuple[int, str]] = []
        for number, out in enumerate(outs):
            with anyio.move_on_after(5):
                got.append((number, await out.readline()))
        assert got == [(0, "10"), (1, "10")], "SIGUSR1 did not reach every worker"
        for worker in workers:
            await stop_reporting(worker)


@on_both_backends
async def test_one_call_forwards_to_several_workers(anyio_backend: str, lab: Lab) -> None:
    """``forward_signals([w1, w2], [SIGUSR1])``: one call, one SIGUSR1, both get it."""
    outs = [lab.pipe(), lab.pipe()]
    async with lab.forwarding_supervisor(signal.SIGUSR1) as sup:
        workers = [await lab.start_reporting(out) for out in outs]
        sup.forward_signals(workers, [signal.SIGUSR1])
        await receivers_installed([signal.SIGUSR1])
        send_to_self(signal.SIGUSR1)
        for out in outs:
            with anyio.fail_after(10):
                assert await out.readline() == "10"
        for worker in workers:
            await stop_reporting(worker)


@on_both_backends
async def test_a_shared_signal_still_reaches_a_worker_after_another_exits(
    anyio_backend: str, lab: Lab
) -> None:
    """Two workers share SIGUSR1; when the first exits (its forwarding ends),
    SIGUSR1 still reaches the second."""
    outs = [lab.pipe(), lab.pipe()]
    async with lab.forwarding_supervisor(signal.SIGUSR1) as sup:
        workers = await workers_sharing(lab, sup, signal.SIGUSR1, outs)
        await stop_reporting(workers[0])
        await anyio.wait_all_tasks_blocked()
        send_to_self(signal.SIGUSR1)
        assert await line_of(outs[1], "SIGUSR1 at the second worker", timeout=5) == "10"
        await stop_reporting(workers[1])


# -- Ctrl-C, cancellation and exceptions during the grace ------------------------------------


def _assert_killed_and_reaped(report: dict[str, Any]) -> None:
    assert report["returncode"] == -signal.SIGKILL, f"the worker was not killed: {report}"
    assert report["group"] == {"alive": [], "my_zombies": []}, f"left of its group: {report}"


@pytest.mark.timeout(120)
@BACKENDS
def test_a_second_ctrl_c_during_the_grace_never_skips_the_sigkill(
    backend: str, tmp_path: Path
) -> None:
    """Body raises KeyboardInterrupt (grace 30 s, the worker ignores SIGTERM);
    a second SIGINT 0.5 s later: the block ends well before 30 s, the worker
    and its children are killed and reaped, and KeyboardInterrupt comes out
    as itself."""
    with child_python(tmp_path, "lib_ctrl_c.py", backend, "30", "second") as child:
        child.groups.append(Tracked(child.json(30, "the worker's PID")["worker"]))
        report = child.json(45, "the end of the block (grace 30 s), after the second Ctrl-C")
    assert report["raised"] == "KeyboardInterrupt", f"came out of the block: {report}"
    assert report["elapsed"] < 10, f"the second Ctrl-C did not end the grace: {report}"
    _assert_killed_and_reaped(report)


@pytest.mark.timeout(60)
@BACKENDS
def test_a_keyboard_interrupt_in_the_body_comes_out_as_itself(backend: str, tmp_path: Path) -> None:
    """Body raises KeyboardInterrupt (grace 1 s, the worker ignores SIGTERM):
    SIGKILL after the grace, and KeyboardInterrupt comes out as itself."""
    with child_python(tmp_path, "lib_ctrl_c.py", backend, "1") as child:
        child.groups.append(Tracked(child.json(30, "the worker's PID")["worker"]))
        report = child.json(30, "the end of the block (grace 1 s)")
    assert report["raised"] == "KeyboardInterrupt", f"came out of the block: {report}"
    assert 0.9 <= report["elapsed"] < 10, report
    _assert_killed_and_reaped(report)


async def _assert_killed(worker: Process) -> None:
    """The worker was SIGKILLed and reaped, and its process group killed: once
    dead (looked at for up to 1 s), none of it is left alive, nor a zombie of
    this process (its children's zombies are their new parent's)."""
    assert worker.returncode == -signal.SIGKILL, worker
    assert not is_my_child(worker.pid), f"{worker} is still a child ({state_of(worker.pid)})"
    await eventually(
        lambda: all(state == "Z" for state in group_members(worker.pid).values()),
        "the death of the worker's process group",
        timeout=1.0,
    )
    mine = [pid for pid, state in group_members(worker.pid).items() if is_my_child(pid)]
    assert mine == [], "zombies of this process left of the worker's group"


@on_both_backends
async def test_a_cancellation_while_the_body_waits_ends_with_sigkill(
    anyio_backend: str, lab: Lab
) -> None:
    """The block inside a scope whose deadline passes while the body waits
    on the worker (grace 1 s, the worker ignores SIGTERM): the block ends
    within a few seconds, the worker killed and reaped."""
    out = lab.pipe()
    with anyio.fail_after(T):
        with anyio.CancelScope() as scope:
            async with lab.supervisor(grace=1):
                worker = await lab.start_stubborn(out)
                cancelled_at = time.monotonic() + 0.5
                scope.deadline = anyio.current_time() + 0.5
                await worker.wait()
        ended = time.monotonic() - cancelled_at
    assert scope.cancelled_caught
    await _assert_killed(worker)
    assert ended < 5, f"the block took {ended:.1f}s after the cancellation, grace 1s"


@on_both_backends
async def test_a_cancellation_during_the_grace_never_skips_the_sigkill(
    anyio_backend: str, lab: Lab
) -> None:
    """The body raises ValueError (grace 2 s, the worker ignores SIGTERM); the
    surrounding scope's deadline passes during the grace: the worker is still
    killed and reaped, and ValueError comes out as itself."""
    out = lab.pipe()
    with anyio.fail_after(T):
        with pytest.raises(ValueError) as info, anyio.CancelScope() as scope:
            async with lab.supervisor(grace=2):
                worker = await lab.start_stubborn(out)
                scope.deadline = anyio.current_time() + 0.5
                left_at = time.monotonic()
                raise ValueError("from the body")
        ended = time.monotonic() - left_at
    assert type(info.value) is ValueError
    assert str(info.value) == "from the body"
    await _assert_killed(worker)
    assert ended < 10, f"the block took {ended:.1f}s, grace 2s"


@on_both_backends
async def test_an_exception_in_the_body_comes_out_as_itself(anyio_backend: str, lab: Lab) -> None:
    """ValueError from the body (the worker ignores SIGTERM, grace 0.5 s):
    the very same exception comes out, not a group, after the SIGKILL."""
    out = lab.pipe()
    error = ValueError("from the body")
    with anyio.fail_after(T):
        with pytest.raises(ValueError) as info:
            async with lab.supervisor(grace=0.5):
                worker = await lab.start_stubborn(out)
                raise error
    assert info.value is error
    await _assert_killed(worker)


# -- no idle wake-ups -------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("zombie", [True, False], ids=["unpolled_popen", "nothing_exits"])
@BACKENDS
def test_orphan_reaping_never_wakes_up_while_idle(
    backend: str, zombie: bool, tmp_path: Path
) -> None:
    """``open_supervisor(reap_orphans=True)`` in a program that sleeps, with a
    ``Popen(["true"])`` exited and not yet polled (a zombie the Popen will
    collect), or with nothing at all: over 1.5 s the program's threads switch
    at most a handful of times (polling every 20 ms would be 75 and more)."""
    mode = "zombie" if zombie else "none"
    with child_python(tmp_path, "lib_idle_zombie.py", backend, "3", mode) as child:
        word, pid = child.readline(30, "the ready line").split()
        assert word == "ready"
        before = ctxt_switches(child.proc.pid)
        time.sleep(1.5)
        after = ctxt_switches(child.proc.pid)
        assert child.out.peek() == "", "the measurement outlasted the program's sleep"
        if zombie:
            assert state_of(int(pid)) == "Z", "the Popen's zombie was taken meanwhile"
        assert child.readline(30, "the done line") == "done"
        assert child.proc.wait(timeout=30) == 0, child.stderr.read_text()
    assert after - before <= 10, f"{after - before} context switches in 1.5 s while idle"
