"""The set-up: the peers, the C workloads, and nucleus-trio as users install it.

The peers come from Debian's packages when they are missing; the C workloads
of ``benchmarks/workloads/`` are compiled into ``benchmarks/build/``;
nucleus-trio is installed from the repository root into
``benchmarks/build/venv`` as users would (``pip install``, not editable): the
command measured is that venv's ``bin/nucleus-trio``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from benchmarks.harness import BUILD, ROOT, VENV, WORKLOADS, BenchError, note, run_quiet

PROGRAMS = ("launch", "sigwait", "storm", "burst")
PEER_PACKAGES = ("tini", "dumb-init", "catatonit")


def find_catatonit() -> str | None:
    found = shutil.which("catatonit")
    if found:
        return found
    for path in ("/usr/libexec/podman/catatonit", "/usr/libexec/catatonit/catatonit"):
        if os.access(path, os.X_OK):
            return path
    return None


def ensure_peers() -> dict[str, str]:
    """The peers' binaries, installed from Debian's packages when missing."""

    def locate() -> dict[str, str | None]:
        return {
            "tini": shutil.which("tini"),
            "dumb-init": shutil.which("dumb-init"),
            "catatonit": find_catatonit(),
        }

    found = locate()
    missing = [name for name, path in found.items() if path is None]
    if missing:
        note(f"installing {' '.join(missing)} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", *missing]
        try:
            run_quiet(install, "apt-get install", env)
        except BenchError:
            run_quiet(["apt-get", "update", "-q"], "apt-get update", env)
            run_quiet(install, "apt-get install", env)
        found = locate()
    paths: dict[str, str] = {}
    for name, path in found.items():
        if path is None:
            raise BenchError(f"{name} is still missing after apt-get install")
        paths[name] = path
    return paths



def build_workloads() -> dict[str, Path]:
    """Compile the C workloads (static when libc.a is there)."""
    if shutil.which("gcc") is None:
        note("installing gcc with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run_quiet(["apt-get", "install", "-y", "-q", "gcc", "libc6-dev"], "apt-get install", env)
    BUILD.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for name in PROGRAMS:
        source = WORKLOADS / f"{name}.c"
        target = BUILD / name
        base = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(target), str(source)]
        try:
            run_quiet([*base, "-static"], f"gcc {name}.c")
        except BenchError:
            run_quiet(base, f"gcc {name}.c")
        built[name] = target
    return built


def source_digest() -> str:
    """A digest of what the wheel is built from, to skip needless reinstalls."""
    digest = hashlib.sha256()
    files = [ROOT / "pyproject.toml", ROOT / "README.md", ROOT / "LICENSE"]
    for folder in ("src", "scripts"):
        files += sorted(
            path
            for path in (ROOT / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        )
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            pass
    return digest.hexdigest()


def build_pyz() -> Path:
    """``make zipapp``'s single-file build of the current tree."""
    output = BUILD / "nucleus-trio.pyz"
    run_quiet(
        [sys.executable, str(ROOT / "scripts" / "build_zipapp.py"), "--output", str(output)],
        "build_zipapp.py",
    )
    return output


def install_nucleus() -> Path:
    """A non-editable install of the repository in its own venv.

    Reinstalled (same version number, so forced) whenever the sources
    changed since the last install.
    """
    python = VENV / "bin" / "python"
    command = VENV / "bin" / "nucleus-trio"
    stamp = VENV / ".installed-source"
    wanted = source_digest()
    if not python.exists():
        note("creating benchmarks/build/venv")
        run_quiet([sys.executable, "-m", "venv", "--clear", str(VENV)], "python -m venv")
        run_quiet([str(python), "-m", "pip", "install", "-q", str(ROOT)], "pip install")
    elif not stamp.exists() or stamp.read_text() != wanted or not command.exists():
        note("installing the current tree into benchmarks/build/venv")
        run_quiet(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--force-reinstall",
                "--no-deps",
                str(ROOT),
            ],
            "pip install",
        )
        run_quiet([str(python), "-m", "pip", "install", "-q", str(ROOT)], "pip install")
    if not command.exists():
        raise BenchError(f"{command} was not installed")
    stamp.write_text(wanted)
    return command

