"""The e2e's fixtures: the image must be there (make e2e builds it), each
test's containers are removed after it, and the stop times are reported."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from e2e.podman import (
    IMAGE,
    OUT,
    STOP_TIMES,
    Containers,
    podman,
    remove_leftover_containers,
    stop_table,
)


def pytest_report_header() -> str:
    if shutil.which("podman") is None:
        return "e2e: podman NOT installed"
    info = podman(
        "info", "--format",
        "{{.Version.Version}} {{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} "
        "cgroups {{.Host.CgroupsVersion}}, storage {{.Store.GraphDriverName}}",
        check=False,
    ).stdout.strip()
    image = podman("image", "inspect", "-f", "{{.Id}}", IMAGE, check=False).stdout.strip()
    return f"e2e: podman {info}; image {IMAGE} {image[:12] or 'MISSING'}"


@pytest.fixture(scope="session", autouse=True)
def _image() -> Iterator[None]:
    if shutil.which("podman") is None or podman("image", "exists", IMAGE, check=False).returncode:
        pytest.exit(f"no podman or no {IMAGE}: run `make e2e`, which builds it", returncode=3)
    remove_leftover_containers()
    yield
    remove_leftover_containers()


@pytest.fixture
def containers() -> Iterator[Containers]:
    started = Containers()
    yield started
    started.remove()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STOP_TIMES:
        return
    table = stop_table()
    terminalreporter.section("podman stop: exit code and wall time, per init")
    terminalreporter.write_line(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "stop-times.md").write_text(table + "\n")
    terminalreporter.write_line(f"(also in {OUT / 'stop-times.md'})")
