"""nucleus-trio as PID 1 of a real podman container, beside tini and catatonit.

Run by `make e2e` (which installs podman and builds the image first); see
e2e/README.md. Every case runs each init in the same image, the same way; the
stop cases record their wall times for the table printed at the end.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from e2e.podman import (
    FAST,
    INITS,
    NUCLEUS,
    PYZ,
    STOP_TIMES,
    Containers,
    Init,
    StopTime,
    host_processes_with,
    run,
    sh,
)

# The inits that are nucleus-trio (the single-file build joins here).
NUCLEI = (NUCLEUS, PYZ)
GRACE = 3.0  # nucleus-trio's default

# A workload that exits 42 on SIGTERM, having ended its own child.
TERM_42 = "trap 'kill $c; wait $c; exit 42' TERM; sleep 1000 & c=$!; echo ready; wait $c"
# Two processes left behind that ignore SIGTERM: a shell and its sleep. The
# workload goes on once they are both there.
LEFTOVER_IGNORING_TERM = (
    "sh -c 'trap \"\" TERM; sleep 1000 & : > /tmp/leftover-up; wait' & "
    "while [ ! -e /tmp/leftover-up ]; do sleep 0.01; done; "
)


def by_name(init: Init) -> str:
    return init.name


def record(case: str, stop_timeout: int, init: Init, code: int, seconds: float) -> None:
    STOP_TIMES.append(StopTime(case, stop_timeout, init.name, code, seconds))


@pytest.mark.parametrize("init", INITS, ids=by_name)
def test_stop_workload_exits_on_term(containers: Containers, init: Init) -> None:
    """podman stop: the init forwards SIGTERM, the container exits 42 at once."""
    container = containers.start(init, sh(TERM_42))
    seconds = container.stop(10)
    code = container.exit_code()
    record("workload exits 42 on SIGTERM", 10, init, code, seconds)
    assert code == 42
    assert seconds < FAST


@pytest.mark.parametrize("init", INITS, ids=by_name)
def test_stop_with_leftover_ignoring_term(containers: Containers, init: Init) -> None:
    """A leftover that ignores SIGTERM: nucleus-trio gives it its grace, then
    SIGKILL, and exits 42 before the runtime's timeout; tini and catatonit exit
    with the workload and leave the leftover to the kernel's SIGKILL."""
    container = containers.start(init, sh(LEFTOVER_IGNORING_TERM + TERM_42))
    seconds = container.stop(10)
    code = container.exit_code()
    record("+ leftover ignoring SIGTERM", 10, init, code, seconds)
    assert code == 42
    if init in NUCLEI:
        assert GRACE - 0.1 <= seconds < GRACE + FAST
        assert "sent SIGKILL to 2 processes left behind" in container.logs()
    else:
        assert seconds < FAST


@pytest.mark.parametrize("init", INITS, ids=by_name)
def test_stop_timeout_equal_to_grace(containers: Containers, init: Init) -> None:
    """podman stop -t 3 with nucleus-trio's grace also 3 s: the runtime's SIGKILL
    and the end of the grace race, so the container exits 42 or 137 (the README
    says to choose the grace below the stop timeout). Recorded, not decided."""
    container = containers.start(init, sh(LEFTOVER_IGNORING_TERM + TERM_42))
    seconds = container.stop(3)
    code = container.exit_code()
    record("+ leftover ignoring SIGTERM", 3, init, code, seconds)
    if init in NUCLEI:
        assert code in (42, 137)
        assert seconds < GRACE + FAST
    else:
        assert code == 42
        assert seconds < FAST


@pytest.mark.parametrize("stop_timeout", [10, 3])
@pytest.mark.parametrize("init", NUCLEI, ids=by_name)
def test_stop_with_grace_from_environment(
    containers: Containers, init: Init, stop_timeout: int
) -> None:
    """NUCLEUS_TRIO_GRACE=1 (the environment form, as for podman --init): the
    leftover is killed after 1 s, and with -t 3 the workload's 42 wins."""
    container = containers.start(
        init, sh(LEFTOVER_IGNORING_TERM + TERM_42), "-e", "NUCLEUS_TRIO_GRACE=1"
    )
    seconds = container.stop(stop_timeout)
    code = container.exit_code()
    record("+ leftover ignoring SIGTERM, NUCLEUS_TRIO_GRACE=1", stop_timeout, init, code, seconds)
    assert code == 42
    assert 0.9 <= seconds < 1 + FAST


@pytest.mark.parametrize("init", INITS, ids=by_name)
def test_stop_right_after_start(containers: Containers, init: Init) -> None:
    """podman stop as soon as podman run -d returns, while the init may still be
    starting (nucleus-trio: the interpreter loading): the SIGTERM is not lost,
    it reaches the workload, which dies of it (143)."""
    container = containers.start(init, ["sleep", "1000"], ready=None)
    seconds = container.stop(10)
    code = container.exit_code()
    record("sleep 1000, stopped right after start", 10, init, code, seconds)
    assert code == 143
    assert seconds < FAST


def test_pause_mode(containers: Containers) -> None:
    """nucleus-trio -P (catatonit -P's part in a pod): stopped, it exits 0."""
    pause = Init("nucleus-trio -P", NUCLEUS.options, ("-P",))
    container = containers.start(pause, [], ready=None)
    time.sleep(0.5)
    assert container.state() == "running"
    seconds = container.stop(10)
    code = container.exit_code()
    record("-P (pause), no workload", 10, NUCLEUS, code, seconds)
    assert code == 0
    assert seconds < FAST


SIGNALLED = (
    "trap 'kill $c; exit 11' HUP; trap 'kill $c; exit 12' USR1; "
    "sleep 1000 & c=$!; echo ready; wait $c"
)


@pytest.mark.parametrize(("signal", "code"), [("HUP", 11), ("USR1", 12)])
@pytest.mark.parametrize("init", INITS, ids=by_name)
def test_kill_signal_reaches_workload(
    containers: Containers, init: Init, signal: str, code: int
) -> None:
    """podman kill -s HUP / USR1: the init forwards it, the workload's trap
    exits with its code."""
    container = containers.start(init, sh(SIGNALLED))
    container.kill(signal)
    assert container.wait() == code


ORPHANS = """
for i in $(seq 20); do (sleep 1 &); done
sleep 0.3
n=0
for s in /proc/[0-9]*/status; do
    grep -qx 'Name:[[:space:]]*sleep' "$s" 2>/dev/null \
        && grep -qx 'PPid:[[:space:]]*1' "$s" 2>/dev/null && n=$((n+1))
done
echo "orphans of PID 1: $n"
sleep 1.7
z=0
for s in /proc/[0-9]*/status; do
    grep -q '^State:[[:space:]]*Z' "$s" 2>/dev/null && z=$((z+1))
done
echo "zombies: $z"
"""


@pytest.mark.parametrize("init", INITS, ids=by_name)
def test_orphans_reaped(init: Init) -> None:
    """20 double-forked orphans, re-parented to PID 1, exit: no zombie stays."""
    ran = run(init, sh(ORPHANS))
    assert ran.code == 0, ran.output
    assert "orphans of PID 1: 20" in ran.output
    assert "zombies: 0" in ran.output


EXITS = {
    "exit 7": (sh("exit 7"), 7),
    "killed by SIGKILL": (sh("kill -KILL $$"), 137),
    "missing program": (["/nonexistent/program"], 127),
    "not executable": (["/opt/e2e/not-executable"], 126),
}
# catatonit exits 1 when it cannot execute the program.
PEER_EXITS = {("catatonit", "missing program"): 1, ("catatonit", "not executable"): 1}


@pytest.mark.parametrize("case", list(EXITS))
@pytest.mark.parametrize("init", INITS, ids=by_name)
def test_exit_code(init: Init, case: str) -> None:
    command, code = EXITS[case]
    ran = run(init, command)
    assert ran.code == PEER_EXITS.get((init.name, case), code), ran.output


EXECED = {
    "handles SIGTERM": (
        "trap 'echo term >> /out/exec.log; exit 0' TERM; "
        "echo started >> /out/exec.log; sleep 1000 & wait"
    ),
    "ignores SIGTERM": "trap '' TERM; echo started >> /out/exec.log; sleep 1000",
}


@pytest.mark.parametrize("kind", list(EXECED))
@pytest.mark.parametrize("init", INITS, ids=by_name)
def test_exec_process_ended_at_shutdown(
    containers: Containers, init: Init, kind: str, tmp_path: Path
) -> None:
    """A process entered with podman exec (not a descendant of PID 1) is ended
    when the container stops: by nucleus-trio with SIGTERM (one that handles it
    cleans up), then SIGKILL after the grace; under tini and catatonit by the
    kernel's SIGKILL when PID 1 exits."""
    container = containers.start(init, sh(TERM_42), "-v", f"{tmp_path}:/out")
    token = f"nucleus-e2e-exec-{uuid.uuid4().hex}"
    container.exec_detached(sh(EXECED[kind], token))
    log = tmp_path / "exec.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and "started" in log.read_text()):
        assert time.monotonic() < deadline, "the exec'd process did not start"
        time.sleep(0.05)
    seconds = container.stop(10)
    code = container.exit_code()
    record(f"+ podman exec'd process that {kind}", 10, init, code, seconds)
    assert code == 42
    assert host_processes_with(token) == []
    got_term = "term" in log.read_text()
    if init in NUCLEI:
        if kind == "handles SIGTERM":
            assert got_term
            assert seconds < FAST
        else:
            assert GRACE - 0.1 <= seconds < GRACE + FAST
    else:
        assert not got_term  # killed by the kernel, never told
        assert seconds < FAST


@pytest.mark.parametrize("init", INITS, ids=by_name)
def test_python_variables_reach_workload(containers: Containers, init: Init) -> None:
    """PYTHONPATH (with a trio.py that raises) and PYTHONHOME=/nonexistent set
    for the container are the workload's business: the init must start, pass
    them on unchanged, forward SIGTERM and exit with the workload's code."""
    script = 'echo "PYTHONPATH=$PYTHONPATH"; echo "PYTHONHOME=$PYTHONHOME"; ' + TERM_42
    container = containers.start(
        init, sh(script), "-e", "PYTHONPATH=/opt/e2e/badpath", "-e", "PYTHONHOME=/nonexistent"
    )
    logs = container.logs()
    assert "PYTHONPATH=/opt/e2e/badpath\n" in logs
    assert "PYTHONHOME=/nonexistent\n" in logs
    seconds = container.stop(10)
    assert container.exit_code() == 42
    assert seconds < FAST
