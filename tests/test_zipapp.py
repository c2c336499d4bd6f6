"""The single-file build (README, "Single-file build"): ``make zipapp``'s
``dist/nucleus-trio.pyz`` runs on every Python 3.11+ found here with
nothing installed, isolated from the image's Python variables, as PID 1
and as subreaper."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.launch import pidns_available, run_init, start_init
from tests.test_isolation import SHOW, expected_lines, hostile_env  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
MODES = pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])

pytestmark = pytest.mark.timeout(120)


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_zipapp", ROOT / "scripts" / "build_zipapp.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILDER = _builder()


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("zipapp") / "nucleus-trio.pyz"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_zipapp.py"), "--output", str(output)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return output


def path_with(python: str, tmp_path: Path) -> dict[str, str]:
    """An environment whose only ``python3`` is ``python``, and nothing of
    this test run's venv."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / "python3").unlink(missing_ok=True)
    (folder / "python3").symlink_to(python)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = f"{folder}:/usr/bin:/bin"
    return env


def test_the_archive_holds_bytecode_for_each_python_and_the_sources(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as archive:
        names = set(archive.namelist())
        stored = {i.filename for i in archive.infolist() if i.compress_type == zipfile.ZIP_STORED}
    tags = sorted(BUILDER._interpreters())
    assert "cp311" in tags
    for tag in tags:
        assert f"{tag}/nucleus_trio/cli.pyc" in names
        assert f"{tag}/trio/__init__.pyc" in names
        assert f"{tag}/nucleus_trio/cli.py" not in names
        assert f"{tag}/nucleus_trio/cli.pyc" in stored  # read without zlib
    for package in ("nucleus_trio", "trio", "anyio", "attr", "attrs", "outcome", "sniffio"):
        assert f"src/{package}/__init__.py" in names
    assert not any("/_tests/" in name for name in names)
    assert pyz.read_bytes().startswith(b"#!/bin/sh\n")


@pytest.mark.parametrize("tag", ["cp311", "cp312", "cp313"])
def test_it_runs_on_each_python_with_nothing_installed(pyz: Path, tmp_path: Path, tag: str) -> None:
    python = BUILDER._interpreters().get(tag)
    if python is None:
        pytest.skip(f"no Python {tag} on this machine")
    env = path_with(python, tmp_path)
    done = subprocess.run(
        [str(pyz), "--", "sh", "-c", "exit 7"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 7, done.stderr
    assert done.stderr == b""
    # The same as `python3 nucleus-trio.pyz`, which starts again isolated.
    done = subprocess.run(
        [python, str(pyz), "--", "sh", "-c", "exit 8"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 8, done.stderr


@MODES
def test_the_workload_gets_the_image_s_python_variables(
    pyz: Path,
    pid1: bool,
    hostile_env: dict[str, str],  # noqa: F811
) -> None:
    if pid1 and not pidns_available():
        pytest.skip("needs root and unshare for a PID namespace")
    code, out, err = run_init(
        ["--", "sh", "-c", SHOW + "; exit 3"], pid1=pid1, env=hostile_env, init=[str(pyz)]
    )
    assert code == 3, err
    assert out.splitlines() == expected_lines(hostile_env)
    assert err == ""


@MODES
def test_it_forwards_and_reaps(pyz: Path, pid1: bool) -> None:
    if pid1 and not pidns_available():
        pytest.skip("needs root and unshare for a PID namespace")
    script = (
        "sh -c 'sleep 0.1 &' ; trap 'echo got TERM; exit 42' TERM; echo ready; "
        "while :; do sleep 0.05; done"
    )
    with start_init(["-v", "--", "sh", "-c", script], pid1=pid1, init=[str(pyz)]) as run:
        assert run.readline(30) == "ready\n"
        run.send(signal.SIGTERM)
        out, err = run.communicate(30)
        assert run.proc.returncode == 42, err
    assert "got TERM" in out
    assert "Traceback" not in err


def test_without_python3_on_path_it_says_so(pyz: Path) -> None:
    done = subprocess.run(
        [str(pyz), "--", "true"], env={"PATH": "/nonexistent"}, capture_output=True, timeout=30
    )
    assert done.returncode == 127
    assert done.stderr == b"nucleus-trio: no python3 on PATH\n"


def test_it_knows_its_version(pyz: Path, tmp_path: Path) -> None:
    import importlib.metadata

    env = path_with(sys.executable, tmp_path)
    done = subprocess.run([str(pyz), "--version"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    version = importlib.metadata.version("nucleus-trio")
    assert done.stdout.decode().split() == ["nucleus-trio", version]


def test_the_index_at_the_end_says_where_each_module_is(pyz: Path) -> None:
    import marshal

    data = pyz.read_bytes()
    tail = data[-1024:]
    where = dict(
        item.split(b":", 1) for item in tail[tail.rindex(b"nucleus-trio-index ") + 19 :].split()
    )
    assert b"cp311" in where
    offset, size = map(int, where[b"cp311"].split(b":"))
    index = marshal.loads(data[offset : offset + size])
    start, length, package = index["nucleus_trio.cli"]
    assert not package and index["trio"][2] is True
    code = marshal.loads(data[start + 16 : start + length])
    assert code.co_filename.endswith("cli.py")
