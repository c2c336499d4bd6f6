"""The memory-limit warning (README, "Containers"): the pure reading of
cgroup files, then the init in a real memory cgroup with a tight limit."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nucleus_trio.cgroups import INIT_MEMORY, TIGHT, limit_files, memory_warning, parse_limit
from tests.support.launch import run_init

MIB = 1024 * 1024

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max\n", None),
        ("12582912\n", 12 * MIB),
        ("9223372036854771712\n", None),  # v1's "unlimited"
        ("", None),
        ("junk", None),
    ],
)
def test_limit_files_are_read_as_bytes(text: str, expected: int | None) -> None:
    assert parse_limit(text) == expected


def test_the_v2_and_v1_files_nearest_first() -> None:
    v2 = limit_files("0::/system.slice/app.scope\n")
    assert v2 == [
        "/sys/fs/cgroup/system.slice/app.scope/memory.max",
        "/sys/fs/cgroup/memory.max",
    ]
    hybrid = limit_files("4:memory:/ci/job\n1:cpu:/\n0::/\n")
    assert hybrid[:2] == [
        "/sys/fs/cgroup/memory/ci/job/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    assert "/sys/fs/cgroup/memory.max" in hybrid
    # A container's own namespace: its cgroup is the root.
    assert limit_files("0::/\n") == ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.max"]


def test_only_a_tight_limit_is_warned_of() -> None:
    assert memory_warning(None) is None
    assert memory_warning(TIGHT) is None
    warning = memory_warning(12 * MIB)
    assert warning is not None
    assert "12 MiB" in warning and f"{INIT_MEMORY // MIB} MiB" in warning and "137" in warning


V1 = Path("/sys/fs/cgroup/memory")


@pytest.fixture
def tight_cgroup() -> Iterator[Path]:
    """A v1 memory cgroup of 40 MiB (room for the init, below the warning's line)."""
    if not (V1 / "memory.limit_in_bytes").exists() or not os.access(V1, os.W_OK):
        pytest.skip("no writable cgroup v1 memory hierarchy (needs root on a hybrid host)")
    own = next(
        (
            line.split(":", 2)[2]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.split(":")[1] == "memory"
        ),
        "/",
    )
    group = V1 / own.strip("/") / f"nt-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(40 * MIB))
        yield group
    finally:
        group.rmdir()  # empty again: every process of the test has exited


def test_the_init_warns_at_once_under_a_tight_limit(tight_cgroup: Path) -> None:
    def enter() -> None:
        (tight_cgroup / "cgroup.procs").write_text(str(os.getpid()))

    code, _, err = run_init(["--", "sh", "-c", "exit 3"], preexec_fn=enter)
    assert code == 3
    assert "nucleus-trio: warning: the memory limit is 40 MiB" in err
    quiet_code, _, quiet = run_init(["-q", "--", "true"], preexec_fn=enter)
    assert quiet_code == 0 and quiet == ""


def test_no_warning_without_a_limit() -> None:
    code, _, err = run_init(["--", "true"])
    assert code == 0 and "memory limit" not in err
