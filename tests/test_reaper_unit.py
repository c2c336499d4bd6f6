"""Unit tests for :mod:`nucleus_trio.reaper` with real children of the test process.

Each test forks a few short-lived children. Whatever is still ours when the
test ends is killed and reaped in a ``finally`` (a PID already reaped is never
signalled: it may belong to someone else by then), and every wait is bounded.
Children that existed before the test are always counted as claimed, so the
reaper under test never takes another test's child.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Collection, Iterator

import pytest

from nucleus_trio import reaper
from nucleus_trio.proctree import _children_from_stat, list_children
from nucleus_trio.reaper import BATCH, OwnerGrace, Reaper, reap_pid, reap_unclaimed
from nucleus_trio.status import ExitStatus

pytestmark = pytest.mark.timeout(30)


class Kids:
    """The children one test forks, and the claims it makes on them."""

    def __init__(self) -> None:
        self.baseline: frozenset[int] = frozenset(list_children())
        self.pids: list[int] = []
        self.claims: set[int] = set()

    def claimed(self) -> Collection[int]:
        return self.baseline | self.claims

    def exit_with(self, code: int) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(code)
        self.pids.append(pid)
        return pid

    def sleeper(self) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                time.sleep(60)
            finally:
                os._exit(99)
        self.pids.append(pid)
        return pid

    def wait_zombie(self, pid: int, timeout: float = 10.0) -> None:
        """Wait until ``pid`` has exited, leaving it a zombie."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
            time.sleep(0.005)
        raise AssertionError(f"child {pid} did not exit within {timeout}s")

    def wait_all(self) -> None:
        for pid in self.pids:
            self.wait_zombie(pid)

    def cleanup(self) -> None:
        for pid in self.pids:
            try:
                seen = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                continue  # reaped already: never signal a PID that is not ours
            if seen is None:
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


@pytest.fixture
def kids() -> Iterator[Kids]:
    state = Kids()
    try:
        yield state
    finally:
        state.cleanup()


def is_zombie_child(pid: int) -> bool:
    """True when ``pid`` is our exited, not yet reaped child."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False


def is_our_child(pid: int) -> bool:
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def require_no_baseline_zombie(kids: Kids) -> None:
    """Tests of the P_ALL order need no older zombie of someone else's in front."""
    if any(is_zombie_child(pid) for pid in kids.baseline):
        pytest.skip("the test process has an older zombie child")


def codes(reaped: list[ExitStatus]) -> dict[int, int | None]:
    return {status.pid: status.code for status in reaped}


class Spy:
    """Wraps ``list_children`` to see whether the claimed-head path ran."""

    def __init__(self, real: Callable[[], list[int]]) -> None:
        self.real = real
        self.calls = 0

    def __call__(self) -> list[int]:
        self.calls += 1
        return self.real()


# ---------------------------------------------------------------- list_children


def test_list_children_sees_running_and_exited_children(kids: Kids) -> None:
    running = kids.sleeper()
    exited = kids.exit_with(4)
    kids.wait_zombie(exited)
    found = list_children()
    assert running in found
    assert exited in found
    assert os.getpid() not in found
    assert len(found) == len(set(found))
    assert set(found) == set(_children_from_stat())
    os.waitpid(exited, 0)
    found = list_children()
    assert exited not in found
    assert running in found


def test_list_children_only_lists_children(kids: Kids) -> None:
    assert set(list_children()) == kids.baseline
    assert os.getppid() not in list_children()
    assert 1 not in list_children() or os.getpid() == 1


# ---------------------------------------------------------------------- reap_pid


def test_reap_pid(kids: Kids) -> None:
    running = kids.sleeper()
    assert reap_pid(running) is None  # still running: untouched
    assert is_our_child(running)
    exited = kids.exit_with(9)
    kids.wait_zombie(exited)
    assert reap_pid(exited) == ExitStatus(exited, code=9)
    assert not is_our_child(exited)
    assert reap_pid(exited) is None  # already gone
    os.kill(running, signal.SIGKILL)
    kids.wait_zombie(running)
    assert reap_pid(running) == ExitStatus(running, signal=signal.SIGKILL)


def test_reap_pid_of_a_non_child() -> None:
    assert reap_pid(os.getpid()) is None
    assert reap_pid(os.getppid()) is None


# ---------------------------------------------------------------- reap_unclaimed


def test_nothing_to_reap(kids: Kids) -> None:
    assert reap_unclaimed(kids.claimed) == ([], False)


def test_unclaimed_children_are_reaped(kids: Kids) -> None:
    first, second, third = kids.exit_with(3), kids.exit_with(4), kids.exit_with(5)
    kids.wait_all()
    reaped, more = reap_unclaimed(kids.claimed)
    assert codes(reaped) == {first: 3, second: 4, third: 5}
    assert len(reaped) == 3
    assert more is False
    for pid in (first, second, third):
        assert not is_our_child(pid)
    assert reap_unclaimed(kids.claimed) == ([], False)


def test_running_children_are_left_alone(kids: Kids) -> None:
    running = kids.sleeper()
    exited = kids.exit_with(6)
    kids.wait_zombie(exited)
    reaped, more = reap_unclaimed(kids.claimed)
    assert codes(reaped) == {exited: 6}
    assert more is False
    assert is_our_child(running)
    assert not is_zombie_child(running)


def test_claimed_children_stay_zombies(kids: Kids) -> None:
    first, second, third = kids.exit_with(10), kids.exit_with(11), kids.exit_with(12)
    kids.claims.add(second)
    kids.wait_all()
    reaped, more = reap_unclaimed(kids.claimed)
    assert codes(reaped) == {first: 10, third: 12}
    assert more is False
    assert is_zombie_child(second)
    # The owner still gets the status.
    assert os.waitpid(second, 0) == (second, 11 << 8)


def test_claimed_zombie_at_the_head(kids: Kids, monkeypatch: pytest.MonkeyPatch) -> None:
    require_no_baseline_zombie(kids)
    spy = Spy(reaper.list_children)  # type: ignore[attr-defined]
    monkeypatch.setattr(reaper, "list_children", spy)
    head = kids.exit_with(20)  # the oldest child: P_ALL sees it first
    behind = [kids.exit_with(21), kids.exit_with(22), kids.exit_with(23)]
    running = kids.sleeper()
    kids.claims.add(head)
    for pid in (head, *behind):
        kids.wait_zombie(pid)
    reaped, more = reap_unclaimed(kids.claimed)
    assert spy.calls == 1, "the claimed-head path was not taken"
    assert codes(reaped) == {behind[0]: 21, behind[1]: 22, behind[2]: 23}
    assert more is False
    assert is_zombie_child(head)
    assert is_our_child(running) and not is_zombie_child(running)
    assert os.waitpid(head, 0) == (head, 20 << 8)


def test_every_child_claimed(kids: Kids) -> None:
    pids = [kids.exit_with(30), kids.exit_with(31)]
    kids.claims.update(pids)
    kids.wait_all()
    assert reap_unclaimed(kids.claimed) == ([], False)
    for pid, code in zip(pids, (30, 31), strict=True):
        assert is_zombie_child(pid)
        assert os.waitpid(pid, 0) == (pid, code << 8)


def test_claims_are_asked_after_the_zombie_is_seen(kids: Kids) -> None:
    pid = kids.exit_with(40)
    kids.wait_zombie(pid)
    asked: list[int] = []

    def claimed() -> Collection[int]:
        # Someone registers the child only now, while the reaper is looking.
        asked.append(1)
        return kids.baseline | {pid}

    assert reap_unclaimed(claimed) == ([], False)
    assert asked
    assert is_zombie_child(pid)


def test_killed_child_is_reported_with_its_signal(kids: Kids) -> None:
    pid = kids.sleeper()
    os.kill(pid, signal.SIGKILL)
    kids.wait_zombie(pid)
    reaped, _ = reap_unclaimed(kids.claimed)
    assert reaped == [ExitStatus(pid, signal=signal.SIGKILL)]


def test_limit_and_more(kids: Kids) -> None:
    require_no_baseline_zombie(kids)
    pids = [kids.exit_with(50 + n) for n in range(3)]
    kids.wait_all()
    reaped, more = reap_unclaimed(kids.claimed, limit=2)
    assert len(reaped) == 2
    assert more is True
    assert set(codes(reaped)) <= set(pids)
    rest, more = reap_unclaimed(kids.claimed, limit=2)
    assert len(rest) == 1
    assert more is False
    assert codes(reaped) | codes(rest) == {pids[0]: 50, pids[1]: 51, pids[2]: 52}


def test_default_limit_is_batch() -> None:
    assert BATCH == 256
    assert reap_unclaimed.__defaults__ == (BATCH,)


def test_limit_holds_when_the_head_is_claimed(kids: Kids) -> None:
    require_no_baseline_zombie(kids)
    head = kids.exit_with(60)
    behind = [kids.exit_with(61 + n) for n in range(3)]
    kids.claims.add(head)
    kids.wait_all()
    reaped, more = reap_unclaimed(kids.claimed, limit=1)
    assert len(reaped) <= 1
    assert more is True
    assert set(codes(reaped)) <= set(behind)


# ------------------------------------------------------------------------ Reaper


def test_reaper_reap_now_reports_each_unclaimed_child(kids: Kids) -> None:
    claimed_pid = kids.exit_with(70)
    pids = [kids.exit_with(71), kids.exit_with(72)]
    kids.claims.add(claimed_pid)
    kids.wait_all()
    seen: list[ExitStatus] = []
    the_reaper = Reaper(kids.claimed, seen.append)
    assert the_reaper.reap_now() == 2
    assert the_reaper.reaped_count == 2
    assert codes(seen) == {pids[0]: 71, pids[1]: 72}
    assert the_reaper.reap_now() == 0
    assert is_zombie_child(claimed_pid)


# ---------------------------------------------------------------- owner's grace


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_young_zombie_is_left_to_its_owner_then_reaped(kids: Kids) -> None:
    clock = Clock()
    owners = OwnerGrace(0.02, clock)
    pid = kids.exit_with(3)
    kids.wait_zombie(pid)
    assert reap_unclaimed(kids.claimed, owners=owners) == ([], False)
    assert is_zombie_child(pid)  # its owner's waitpid would still get it
    assert owners.next_look() == pytest.approx(0.02)
    clock.now += 0.01
    assert reap_unclaimed(kids.claimed, owners=owners) == ([], False)
    assert owners.next_look() == pytest.approx(0.01)
    clock.now += 0.01
    reaped, _ = reap_unclaimed(kids.claimed, owners=owners)
    assert codes(reaped) == {pid: 3}
    assert not is_our_child(pid)


def test_the_grace_forgets_a_zombie_its_owner_took(kids: Kids) -> None:
    clock = Clock()
    owners = OwnerGrace(0.02, clock)
    pid = kids.exit_with(4)
    kids.wait_zombie(pid)
    reap_unclaimed(kids.claimed, owners=owners)
    assert os.waitpid(pid, 0) == (pid, 4 << 8)  # the owner takes it
    assert reap_unclaimed(kids.claimed, owners=owners) == ([], False)
    assert owners.next_look() is None  # no timer left behind


def test_a_young_zombie_at_the_head_does_not_hide_a_ripe_one(kids: Kids) -> None:
    clock = Clock()
    owners = OwnerGrace(0.02, clock)
    old = kids.exit_with(5)
    kids.wait_zombie(old)
    reap_unclaimed(kids.claimed, owners=owners)
    clock.now += 0.05
    young = kids.exit_with(6)
    kids.wait_zombie(young)
    reaped, _ = reap_unclaimed(kids.claimed, owners=owners)
    assert codes(reaped) == {old: 5}
    assert is_zombie_child(young)
    with owners.waived():
        reaped, _ = reap_unclaimed(kids.claimed, owners=owners)
    assert codes(reaped) == {young: 6}
