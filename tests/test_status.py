"""Tests for :mod:`nucleus_trio.status` and :func:`nucleus_trio.spawn.exec_failure_code`.

Pure except for the ``from_siginfo`` tests, which fork short-lived children of
the test process and reap them with ``os.waitid``.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nucleus_trio import spawn, status
from nucleus_trio.status import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    ExitStatus,
    exec_failure_code,
    init_exit_code,
)

VALID = sorted(int(s) for s in signal.valid_signals())
CODES = st.integers(min_value=0, max_value=255)
SIGNALS = st.sampled_from(VALID)
PIDS = st.integers(min_value=1, max_value=2**22)


def statuses() -> st.SearchStrategy[ExitStatus]:
    exited = st.builds(lambda pid, code: ExitStatus(pid, code=code), PIDS, CODES)
    killed = st.builds(
        lambda pid, signo, core: ExitStatus(pid, signal=signo, core_dumped=core),
        PIDS,
        SIGNALS,
        st.booleans(),
    )
    return st.one_of(exited, killed)


# ------------------------------------------------------------------ ExitStatus


def test_exactly_one_of_code_and_signal() -> None:
    with pytest.raises(ValueError):
        ExitStatus(1)
    with pytest.raises(ValueError):
        ExitStatus(1, code=0, signal=15)
    with pytest.raises(ValueError):
        ExitStatus(1, code=None, signal=None, core_dumped=True)
    assert ExitStatus(1, code=0).code == 0
    assert ExitStatus(1, signal=9).signal == 9


def test_exit_status_is_frozen_and_comparable() -> None:
    first = ExitStatus(10, code=3)
    with pytest.raises(AttributeError):
        first.code = 4
    assert first == ExitStatus(10, code=3)
    assert hash(first) == hash(ExitStatus(10, code=3))
    assert first != ExitStatus(11, code=3)
    assert first != ExitStatus(10, code=4)
    assert ExitStatus(10, signal=3) != ExitStatus(10, code=3)
    assert ExitStatus(10, signal=3) != ExitStatus(10, signal=3, core_dumped=True)


@given(statuses())
def test_invariants(exit_status: ExitStatus) -> None:
    assert (exit_status.code is None) != (exit_status.signal is None)
    if exit_status.signal is not None:
        assert exit_status.shell_code == 128 + exit_status.signal
        assert exit_status.shell_code > 128
        assert exit_status.describe().startswith("killed by SIG")
        assert ("core dumped" in exit_status.describe()) is exit_status.core_dumped
    else:
        assert exit_status.shell_code == exit_status.code
        assert exit_status.describe() == f"exited with {exit_status.code}"
        assert not exit_status.core_dumped


def test_shell_code() -> None:
    assert ExitStatus(1, code=0).shell_code == 0
    assert ExitStatus(1, code=3).shell_code == 3
    assert ExitStatus(1, code=255).shell_code == 255
    assert ExitStatus(1, signal=signal.SIGTERM).shell_code == 143
    assert ExitStatus(1, signal=signal.SIGKILL).shell_code == 137
    assert ExitStatus(1, signal=signal.SIGRTMAX).shell_code == 128 + signal.SIGRTMAX


def test_describe() -> None:
    assert ExitStatus(1, code=3).describe() == "exited with 3"
    assert ExitStatus(1, signal=15).describe() == "killed by SIGTERM"
    assert ExitStatus(1, signal=6, core_dumped=True).describe() == "killed by SIGABRT (core dumped)"
    rt = signal.SIGRTMIN + 3
    assert ExitStatus(1, signal=rt).describe() == "killed by SIGRTMIN+3"


def test_from_wait_status_words() -> None:
    assert ExitStatus.from_wait_status(5, 0) == ExitStatus(5, code=0)
    assert ExitStatus.from_wait_status(5, 7 << 8) == ExitStatus(5, code=7)
    assert ExitStatus.from_wait_status(5, 255 << 8) == ExitStatus(5, code=255)
    assert ExitStatus.from_wait_status(5, 15) == ExitStatus(5, signal=15)
    assert ExitStatus.from_wait_status(5, 0x80 | 6) == ExitStatus(5, signal=6, core_dumped=True)


@given(PIDS, CODES)
def test_from_wait_status_exited(pid: int, code: int) -> None:
    assert ExitStatus.from_wait_status(pid, code << 8) == ExitStatus(pid, code=code)


@given(PIDS, SIGNALS, st.booleans())
def test_from_wait_status_signaled(pid: int, signo: int, core: bool) -> None:
    word = signo | (0x80 if core else 0)
    assert ExitStatus.from_wait_status(pid, word) == ExitStatus(
        pid, signal=signo, core_dumped=core
    )


@given(PIDS, CODES)
def test_from_siginfo_synthetic_exit(pid: int, code: int) -> None:
    info = os.waitid_result((pid, 0, signal.SIGCHLD, code, os.CLD_EXITED))
    assert ExitStatus.from_siginfo(info) == ExitStatus(pid, code=code)


@given(PIDS, SIGNALS, st.sampled_from([os.CLD_KILLED, os.CLD_DUMPED]))
def test_from_siginfo_synthetic_signal(pid: int, signo: int, how: int) -> None:
    info = os.waitid_result((pid, 0, signal.SIGCHLD, signo, how))
    assert ExitStatus.from_siginfo(info) == ExitStatus(
        pid, signal=signo, core_dumped=how == os.CLD_DUMPED
    )


# ---------------------------------------------------- from_siginfo, real kernel


@pytest.fixture
def children() -> Iterator[list[int]]:
    """PIDs forked by the test; any still ours at the end are killed and reaped."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        for pid in pids:
            _kill_and_reap(pid)


def _kill_and_reap(pid: int) -> None:
    try:
        seen = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return  # already reaped: the PID may be someone else's now, never signal it
    if seen is None:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _fork(children: list[int], body: str, code: int = 0) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            if body == "exit":
                os._exit(code)
            elif body == "kill-self":
                signal.signal(code, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                os.kill(os.getpid(), code)
            elif body == "sleep":
                time.sleep(60)
        finally:
            os._exit(99)
    children.append(pid)
    return pid


def _wait_exited(pid: int, timeout: float = 10.0) -> os.waitid_result:
    """Wait (bounded) until ``pid`` is a zombie, without reaping it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            return info
        time.sleep(0.005)
    raise AssertionError(f"child {pid} did not exit within {timeout}s")


@pytest.mark.timeout(30)
def test_from_siginfo_real_exit(children: list[int]) -> None:
    pid = _fork(children, "exit", 7)
    peeked = _wait_exited(pid)
    info = os.waitid(os.P_PID, pid, os.WEXITED)
    assert info is not None
    exit_status = ExitStatus.from_siginfo(info)
    assert exit_status == ExitStatus(pid, code=7)
    assert ExitStatus.from_siginfo(peeked) == exit_status
    assert exit_status.shell_code == 7
    assert init_exit_code(exit_status) == 7
    assert init_exit_code(exit_status, frozenset({7})) == 0


@pytest.mark.timeout(30)
def test_from_siginfo_real_sigkill(children: list[int]) -> None:
    pid = _fork(children, "sleep")
    os.kill(pid, signal.SIGKILL)
    _wait_exited(pid)
    info = os.waitid(os.P_PID, pid, os.WEXITED)
    assert info is not None
    exit_status = ExitStatus.from_siginfo(info)
    assert exit_status == ExitStatus(pid, signal=signal.SIGKILL, core_dumped=False)
    assert exit_status.shell_code == 137
    assert init_exit_code(exit_status) == 137
    assert exit_status.describe() == "killed by SIGKILL"


@pytest.mark.timeout(30)
def test_from_siginfo_real_sigterm_and_remap(children: list[int]) -> None:
    pid = _fork(children, "kill-self", signal.SIGTERM)
    _wait_exited(pid)
    info = os.waitid(os.P_PID, pid, os.WEXITED)
    assert info is not None
    exit_status = ExitStatus.from_siginfo(info)
    assert exit_status == ExitStatus(pid, signal=signal.SIGTERM)
    assert init_exit_code(exit_status) == 143
    assert init_exit_code(exit_status, frozenset({143})) == 0
    assert init_exit_code(exit_status, frozenset({15})) == 143


@pytest.mark.timeout(30)
@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_from_siginfo_agrees_with_from_wait_status(children: list[int], code: int) -> None:
    pid = _fork(children, "exit", code)
    peeked = _wait_exited(pid)  # WNOWAIT: still a zombie
    waited_pid, word = os.waitpid(pid, 0)
    assert waited_pid == pid
    assert ExitStatus.from_siginfo(peeked) == ExitStatus.from_wait_status(pid, word)
    assert ExitStatus.from_siginfo(peeked).code == code


# ---------------------------------------------------------------- init_exit_code


def test_init_exit_code_examples() -> None:
    assert init_exit_code(ExitStatus(1, code=0)) == 0
    assert init_exit_code(ExitStatus(1, code=3)) == 3
    assert init_exit_code(ExitStatus(1, code=3), frozenset({3})) == 0
    assert init_exit_code(ExitStatus(1, code=3), frozenset({4, 143})) == 3
    assert init_exit_code(ExitStatus(1, signal=15)) == 143
    assert init_exit_code(ExitStatus(1, signal=15), frozenset({143})) == 0
    assert init_exit_code(ExitStatus(1, signal=9), frozenset({143})) == 137
    # A workload that itself exits 127 or 126 is the workload's code: remappable.
    assert init_exit_code(ExitStatus(1, code=127), frozenset({127})) == 0


def test_init_exit_code_is_modulo_256() -> None:
    assert init_exit_code(ExitStatus(1, code=256)) == 0
    assert init_exit_code(ExitStatus(1, code=300)) == 44
    assert init_exit_code(ExitStatus(1, code=300), frozenset({44})) == 0
    assert init_exit_code(ExitStatus(1, code=300), frozenset({300})) == 44
    assert init_exit_code(ExitStatus(1, signal=signal.SIGRTMAX)) == (128 + signal.SIGRTMAX) % 256
    assert init_exit_code(ExitStatus(1, signal=200)) == (328 % 256)


@given(statuses(), st.frozensets(CODES, max_size=6))
def test_init_exit_code_property(exit_status: ExitStatus, remap: frozenset[int]) -> None:
    result = init_exit_code(exit_status, remap)
    assert 0 <= result <= 255
    shell = exit_status.shell_code % 256
    assert result == (0 if shell in remap else shell)
    assert init_exit_code(exit_status) == shell
    # Remapping never produces anything but the plain code or 0.
    assert result in (0, init_exit_code(exit_status))


@given(PIDS, st.integers(min_value=0, max_value=10**6), st.frozensets(CODES, max_size=4))
def test_init_exit_code_any_code(pid: int, code: int, remap: frozenset[int]) -> None:
    result = init_exit_code(ExitStatus(pid, code=code), remap)
    assert result == (0 if code % 256 in remap else code % 256)


# ------------------------------------------------------------ exec_failure_code


def test_exit_constants() -> None:
    assert EXIT_USAGE == 2
    assert EXIT_CANNOT_EXECUTE == 126
    assert EXIT_NOT_FOUND == 127
    assert status.exec_failure_code is spawn.exec_failure_code


@pytest.mark.parametrize("value", [errno.ENOENT, errno.ENOTDIR])
def test_exec_failure_not_found(value: int) -> None:
    assert exec_failure_code(value) == 127


@pytest.mark.parametrize(
    "value",
    [errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR, errno.ELOOP, errno.E2BIG,
     errno.ETXTBSY, errno.ENAMETOOLONG, errno.ENOMEM, errno.EINVAL, 0],
)
def test_exec_failure_cannot_execute(value: int) -> None:
    assert exec_failure_code(value) == 126


@given(st.sampled_from(sorted(errno.errorcode)) | st.integers())
def test_exec_failure_code_property(value: int) -> None:
    expected = 127 if value in (errno.ENOENT, errno.ENOTDIR) else 126
    assert exec_failure_code(value) == expected
