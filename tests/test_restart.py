"""Restart policies (README, "Restarting workers"): the pure decision, then
real workers under a supervisor on trio and asyncio."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import anyio
import jsonschema
import pytest

from nucleus_trio import ExitStatus, Process, RestartPolicy, Worker, open_supervisor
from nucleus_trio.restart import RestartHistory, decide
from tests.support.library import BOTH, children, cleanup, zombie_children
from tests.test_events import SCHEMA

T = 30.0

pytestmark = pytest.mark.timeout(60)

FAILED = ExitStatus(10, code=3)
KILLED = ExitStatus(10, signal=signal.SIGKILL)

# -- the decision --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "wanted"),
    [
        (ExitStatus(1, code=0), False),
        (ExitStatus(1, code=1), True),
        (ExitStatus(1, signal=signal.SIGKILL), True),
        (ExitStatus(1, signal=signal.SIGSEGV), True),
        (ExitStatus(1, signal=signal.SIGTERM), False),
        (ExitStatus(1, signal=signal.SIGINT), False),
    ],
)
def test_on_failure_restarts_failures_only(status: ExitStatus, wanted: bool) -> None:
    assert RestartPolicy().wants_restart(status) is wanted
    assert RestartPolicy(when="always").wants_restart(status) is True


def test_backoff_doubles_up_to_the_maximum() -> None:
    policy = RestartPolicy(initial_delay=0.5, factor=2.0, max_delay=3.0, burst=100)
    history = RestartHistory()
    delays = []
    now = 0.0
    for _ in range(6):
        decision = decide(policy, history, FAILED, started_at=now, now=now + 0.01)
        assert decision.action == "restart"
        delays.append(decision.delay)
        history = decision.history
        now += 0.01 + decision.delay
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert history.restarts == 6


def test_a_long_run_starts_the_backoff_again() -> None:
    policy = RestartPolicy(initial_delay=0.1, reset_after=5.0)
    history = RestartHistory(restarts=3, recent=(), streak=3)
    long_run = decide(policy, history, FAILED, started_at=0.0, now=5.0)
    short_run = decide(policy, history, FAILED, started_at=4.0, now=5.0)
    assert long_run.delay == pytest.approx(0.1)
    assert short_run.delay == pytest.approx(0.8)


def test_the_burst_limit_gives_up_and_forgets_old_restarts() -> None:
    policy = RestartPolicy(burst=2, window=10.0)
    history = RestartHistory(restarts=2, recent=(1.0, 2.0), streak=2)
    assert decide(policy, history, KILLED, started_at=2.5, now=3.0).action == "give_up"
    later = decide(policy, history, KILLED, started_at=11.0, now=11.5)
    assert later.action == "restart" and later.history.recent == (2.0, 11.5)


def test_a_clean_exit_is_not_restarted_nor_counted() -> None:
    history = RestartHistory(restarts=1, recent=(1.0,), streak=1)
    decision = decide(RestartPolicy(), history, ExitStatus(1, code=0), started_at=0.0, now=2.0)
    assert decision.action == "stop" and decision.history == history


@pytest.mark.parametrize(
    "bad",
    [{"when": "sometimes"}, {"initial_delay": -1}, {"factor": 0.5}, {"burst": -1}],
)
def test_a_bad_policy_is_refused_at_once(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**bad)  # type: ignore[arg-type]


# -- real workers ----------------------------------------------------------------

#: Fails (exit 3) on its first five runs, then runs until stopped.
FLAKY = (
    'n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"; '
    '[ "$n" -le 5 ] && exit 3; echo up; exec sleep 30'
)

class Recorder:
    """An event sink whose records a test can wait for, without a timer."""

    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []
        self._waiters: list[tuple[str, int, anyio.Event]] = []

    def __call__(self, record: dict[str, object]) -> None:
        self.records.append(record)
        for event_type, count, event in self._waiters:
            if len(self.of(event_type)) >= count:
                event.set()

    def of(self, event_type: str) -> list[dict[str, object]]:
        return [r for r in self.records if r["event_type"] == event_type]

    async def until(self, event_type: str, count: int) -> None:
        """Wait until ``count`` records of ``event_type`` have arrived."""
        event = anyio.Event()
        self._waiters.append((event_type, count, event))
        if len(self.of(event_type)) >= count:
            event.set()
        await event.wait()


async def current_run(worker: Worker, pid: object) -> Process:
    """The worker's run with ``pid``: its record can arrive before the
    worker holds it."""
    while worker.process.pid != pid:
        assert await worker.next_run() is not None
    return worker.process


FAST = RestartPolicy(initial_delay=0.01, factor=2.0, max_delay=1.0, burst=5, window=60.0)


@pytest.mark.anyio
@BOTH
async def test_a_worker_that_crashes_five_times_then_runs(
    anyio_backend: str, tmp_path: Path
) -> None:
    recorder = Recorder()
    records = recorder.records
    before = children()
    pids: list[int] = []
    try:
        with anyio.fail_after(T):
            async with open_supervisor(events=recorder) as sup:
                worker = await sup.start_worker(
                    ["sh", "-c", FLAKY, "flaky", str(tmp_path / "runs")],
                    restart=FAST,
                    stdout=subprocess.PIPE,
                )
                # The sixth run is the one that stays.
                await recorder.until("container_exec", 6)
                pids.extend(int(r["pid"]) for r in recorder.of("container_exec"))  # type: ignore[call-overload]
                running = await current_run(worker, pids[-1])
                assert running.stdout is not None
                assert await running.stdout.receive_some(100) == b"up\n"
                assert not running.exited and not worker.done
                assert [s.code for s in worker.statuses] == [3, 3, 3, 3, 3]
                worker.stop()
                final = await worker.wait()
    finally:
        cleanup(pids)
    assert final.signal == signal.SIGTERM
    assert (worker.done, worker.gave_up) == (True, False)
    assert worker.restarts == 5
    assert (tmp_path / "runs").read_text().strip() == "6"
    restarting = [r for r in records if r["event_type"] == "workload_restarting"]
    assert [r["restarts"] for r in restarting] == [1, 2, 3, 4, 5]
    assert [r["delay"] for r in restarting] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16])
    assert all(r["exit_code"] == 3 for r in restarting)
    execs = [r for r in records if r["event_type"] == "container_exec"]
    assert len(execs) == 6
    for record in records:
        jsonschema.validate(record, SCHEMA)
    assert children() - before == set() and zombie_children() == set()


@pytest.mark.anyio
@BOTH
async def test_a_worker_that_always_fails_is_given_up(anyio_backend: str) -> None:
    records: list[dict[str, object]] = []
    policy = RestartPolicy(initial_delay=0.0, burst=3, window=60.0)
    with anyio.fail_after(T):
        async with open_supervisor(events=records.append) as sup:
            worker = await sup.start_worker(["sh", "-c", "exit 9"], restart=policy)
            status = await worker.wait()
    assert status.code == 9 and worker.gave_up and worker.restarts == 3
    assert len(worker.statuses) == 4
    gave_up = [r for r in records if r["event_type"] == "restart_limit_reached"]
    assert len(gave_up) == 1 and gave_up[0]["is_error"] is True
    assert gave_up[0]["restarts"] == 3 and gave_up[0]["exit_code"] == 9
    jsonschema.validate(gave_up[0], SCHEMA)


@pytest.mark.anyio
@BOTH
async def test_on_failure_leaves_a_clean_exit_alone_and_always_does_not(
    anyio_backend: str,
) -> None:
    with anyio.fail_after(T):
        async with open_supervisor() as sup:
            clean = await sup.start_worker(["true"])
            assert (await clean.wait()).code == 0
            assert clean.restarts == 0 and not clean.gave_up
            again = await sup.start_worker(
                ["true"], restart=RestartPolicy(when="always", initial_delay=0.0, burst=2)
            )
            assert (await again.wait()).code == 0
            assert again.restarts == 2 and again.gave_up


@pytest.mark.anyio
@BOTH
async def test_leaving_the_block_during_the_backoff_starts_nothing_more(
    anyio_backend: str,
) -> None:
    recorder = Recorder()
    records = recorder.records
    slow = RestartPolicy(initial_delay=30.0)
    with anyio.fail_after(T):
        async with open_supervisor(events=recorder) as sup:
            worker = await sup.start_worker(["sh", "-c", "exit 4"], restart=slow)
            first = worker.process
            await recorder.until("workload_restarting", 1)
        # Left 30 s early: the backoff is cancelled, the worker is over.
    assert worker.done and worker.process is first and worker.statuses[-1].code == 4
    assert len([r for r in records if r["event_type"] == "container_exec"]) == 1


@pytest.mark.anyio
@BOTH
async def test_the_block_s_end_stops_a_running_worker_without_a_restart(
    anyio_backend: str,
) -> None:
    records: list[dict[str, object]] = []
    with anyio.fail_after(T):
        async with open_supervisor(events=records.append, grace=5.0) as sup:
            # Killed by SIGKILL is a failure, but the block's end restarts nothing.
            worker = await sup.start_worker(
                # (Short sleeps: one forked as the TERM arrives keeps the shell's
                # trap until its exec, and loses the TERM.)
                ["sh", "-c", "trap 'kill -KILL $$' TERM; echo ready; while :; do sleep 0.05; done"],
                stdout=subprocess.PIPE,
            )
            assert worker.process.stdout is not None
            assert await worker.process.stdout.receive_some(100) == b"ready\n"
    assert worker.done and worker.restarts == 0
    assert worker.statuses[-1].signal == signal.SIGKILL
    assert not [r for r in records if r["event_type"] == "workload_restarting"]


@pytest.mark.anyio
@BOTH
async def test_forwarded_signals_reach_every_run(anyio_backend: str, tmp_path: Path) -> None:
    # The worker exits 5 on its first USR1 and is restarted; the second run
    # must get the next USR1 too.
    marker = tmp_path / "got"
    script = (
        f'trap \'echo $$ >> {marker}; exit 5\' USR1; echo ready; '
        "while :; do sleep 0.05; done"
    )
    recorder = Recorder()
    with anyio.fail_after(T):
        async with open_supervisor(events=recorder) as sup:
            worker = await sup.start_worker(
                ["sh", "-c", script],
                restart=RestartPolicy(initial_delay=0.0),
                stdout=subprocess.PIPE,
            )
            sup.forward_signals(worker, [signal.SIGUSR1])
            for run in range(2):
                process = worker.process
                assert process.stdout is not None
                assert await process.stdout.receive_some(100) == b"ready\n"
                signal.raise_signal(signal.SIGUSR1)
                assert (await process.wait()).code == 5
                assert await worker.next_run() is not None
                assert worker.restarts == run + 1
            worker.stop()
            await worker.wait()
    assert len(marker.read_text().split()) == 2
