"""The structure ARCHITECTURE.md describes, held by tests.

The modules on the start-up path run between the first line of the entry
point and the workload's exec: they must import neither trio nor anyio nor
attrs (together about 150 ms, README "Benchmarks"), and the crash guard must
work when those fail to import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "nucleus_trio"

#: Importable before trio, as ARCHITECTURE.md lists them.
BEFORE_TRIO = (
    "nucleus_trio",
    "nucleus_trio._entry",
    "nucleus_trio.cli",
    "nucleus_trio.handover",
    "nucleus_trio.config",
    "nucleus_trio.environment",
    "nucleus_trio.events",
    "nucleus_trio.exits",
    "nucleus_trio.identity",
    "nucleus_trio.kernel",
    "nucleus_trio.levels",
    "nucleus_trio.records",
    "nucleus_trio.signals",
    "nucleus_trio.spawn",
    "nucleus_trio.stderr",
    "nucleus_trio.claims",
    "nucleus_trio.reaper",
    "nucleus_trio.status",
    "nucleus_trio.early",
    "nucleus_trio.cgroups",
)

HEAVY = ("trio", "anyio", "attrs", "sniffio")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("module", BEFORE_TRIO)
def test_start_up_modules_import_no_loop_library(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    # _entry blocks signals on import: harmless in a child of its own.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=True
    )
    assert done.stdout.strip() == "", f"{module} imports {done.stdout.strip()}"


def test_architecture_names_every_module() -> None:
    text = (SRC.parent.parent / "ARCHITECTURE.md").read_text()
    for path in sorted(SRC.glob("*.py")):
        name = "nucleus_trio" if path.stem == "__init__" else path.stem
        assert f"`{name}`" in text, path.name


def longest(kind: type[ast.AST] | tuple[type[ast.AST], ...]) -> tuple[int, str]:
    sizes = []
    for path in SRC.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, kind):
                end = getattr(node, "end_lineno", 0) or 0
                sizes.append((end - getattr(node, "lineno", 0) + 1, f"{path.name}:{node.name}"))  # type: ignore[attr-defined]
    return max(sizes)


def test_no_class_over_250_lines_and_no_function_over_80() -> None:
    assert longest(ast.ClassDef)[0] <= 250, longest(ast.ClassDef)
    assert longest((ast.FunctionDef, ast.AsyncFunctionDef))[0] <= 80, longest(
        (ast.FunctionDef, ast.AsyncFunctionDef)
    )


@pytest.mark.timeout(60)
def test_the_command_line_never_loads_anyio() -> None:
    """On trio the machinery uses trio's own calls (backend.Loop): anyio and
    its trio backend would cost the command line about 50 ms and 2 MiB at
    every start."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nucleus_trio", "--", "true"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trio" in done.stderr  # the measurement itself works
    loaded = [line for line in done.stderr.splitlines() if "anyio" in line]
    assert loaded == []


#: What the start-up path may load before the workload's fork, as PID 1: no
#: ``os`` (its import, with ``_collections_abc``, costs 1.5 ms of the 6 ms
#: that the start latency may add to the interpreter's own, README
#: "Benchmarks"), no ``__future__``, nothing from ``collections.abc``. The
#: spawn itself adds one C module, ``_posixsubprocess`` (its quick way). The
#: exit codes and the log levels are imported where a failure or an event
#: needs them: each module costs about 0.1 ms of importlib's own work.
START_PATH = {
    "errno",
    "nucleus_trio",
    "nucleus_trio._entry",
    "nucleus_trio.cli",
    "nucleus_trio.config",
    "nucleus_trio.environment",
    "nucleus_trio.signals",
    "nucleus_trio.spawn",
}

_AT_THE_FORK = """
import sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import nucleus_trio._entry as entry
from nucleus_trio import cli

def fork_exec(*args, **kwargs):
    print(" ".join(sorted(set(sys.modules) - before)), flush=True)
    import posix
    posix._exit(0)

cli.fork_exec = fork_exec
cli.run(["--", "true"], inherited_ignored=entry._INHERITED_IGNORED)
"""


@pytest.mark.pid1
@pytest.mark.timeout(60)
def test_the_start_up_path_loads_only_what_it_needs(tmp_path: Path) -> None:
    from tests.support.launch import UNSHARE

    script = tmp_path / "at_the_fork.py"
    script.write_text(_AT_THE_FORK)
    done = subprocess.run(
        [*UNSHARE, sys.executable, "-I", "-S", str(script), str(SRC.parent)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(done.stdout.split()) == START_PATH
