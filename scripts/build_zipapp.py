"""Build ``dist/nucleus-trio.pyz``: the init and everything it imports in one
file that runs on any Python 3.11 or later with nothing installed (README,
"Single-file build").

    python scripts/build_zipapp.py [--output dist/nucleus-trio.pyz]

The packages are taken from this interpreter's environment (nucleus-trio's
own source from ``src/``, its dependencies as installed), so the build needs
no network. Inside the archive:

- ``src/``: every module as source, for a Python it has no bytecode for;
- ``cp311/``, ``cp312``, ...: the same modules as bytecode only (the
  legacy ``.pyc`` layout that ``zipimport`` reads), one folder for each
  interpreter found here (``python3.11``, ``python3.12``, ...), so start-up
  compiles nothing;
- ``__main__.py``: for ``python3 nucleus-trio.pyz``, starts again as below.

The file starts with a few lines of ``sh`` (a zip archive may have any
prefix) that exec ``python3 -I -S -c BOOT ARCHIVE ARGS...``: BOOT puts the
folder for the running version on ``sys.path`` and runs the entry point,
which blocks signals first. Everything is inside, so the site packages are
not even looked at. ``#!/usr/bin/env python3`` could pass no
``-I`` (busybox's ``env`` has no ``-S``), and an image's ``PYTHONHOME`` kills
an interpreter started without it before any line of ours runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import marshal
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "nucleus-trio"
VERSIONS = ("3.11", "3.12", "3.13", "3.14")

#: What the interpreter runs, given the archive and the init's arguments: a
#: ``-c`` program rather than the archive's ``__main__`` (running a zip
#: imports ``runpy``, about 10 ms). Its second statement blocks the signals.
BOOT = """import sys
if sys.version_info < (3, 11):
    sys.exit("nucleus-trio: needs Python 3.11 or later")
sys.argv[0] = sys.argv.pop(1)
_tag = "cp%d%d" % sys.version_info[:2]
if _tag in {built}:
    import marshal

    # The modules of this Python, loaded from their offsets in the archive
    # (an index at the end of it says where): zipimport would first read
    # the whole directory, 4 ms of the start.
    class _Bytecode:
        def __init__(self, archive, index):
            self.archive, self.index = archive, index

        def find_spec(self, name, path=None, target=None):
            entry = self.index.get(name)
            if entry is None:
                return None
            spec_type = sys.modules["_frozen_importlib"].ModuleSpec
            return spec_type(name, self, origin=self.archive, is_package=entry[2])

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            offset, size, _ = self.index[module.__spec__.name]
            with open(self.archive, "rb") as archive:
                archive.seek(offset)
                code = marshal.loads(archive.read(size)[16:])
            exec(code, module.__dict__)

    with open(sys.argv[0], "rb") as archive:
        archive.seek(-1024, 2)
        tail = archive.read()
        where = dict(
            item.split(b":", 1) for item in tail[tail.rindex(b"{marker} ") + {skip}:].split()
        )
        offset, size = map(int, where[_tag.encode()].split(b":"))
        archive.seek(offset)
        index = marshal.loads(archive.read(size))
    sys.meta_path.insert(0, _Bytecode(sys.argv[0], index))
    sys.path.append(sys.argv[0])  # what the index lacks: the metadata
else:
    sys.path[0:0] = [sys.argv[0] + "/src", sys.argv[0]]
from nucleus_trio._entry import main
main()
"""

PREAMBLE = """#!/bin/sh
command -v python3 >/dev/null || {{ echo "nucleus-trio: no python3 on PATH" >&2; exit 127; }}
case $0 in /*) self=$0 ;; *) self=$PWD/$0 ;; esac  # the init leaves its directory
_nt_size() {{ shift 47 && export _NUCLEUS_TRIO_ENV_SIZE=$(($2 - $1)); }}  # see scripts/nucleus-trio
{{ read -r _nt_stat </proc/$$/stat && _nt_size ${{_nt_stat##*) }}; }} 2>/dev/null
exec python3 -I -S -c '{boot}' "$self" "$@"
"""

#: For ``python3 nucleus-trio.pyz``: the same start, isolated, before any
#: signal is blocked (so the image's Python variables stay out).
MAIN = """import os
import sys

archive = os.path.abspath(sys.path[0])
os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", {boot!r}, archive, *sys.argv[1:]])
"""


def _requirement_names(dist: importlib.metadata.Distribution) -> list[str]:
    """The names of ``dist``'s requirements that hold on Python 3.11+ on
    Linux without extras (markers judged for the oldest supported Python)."""
    from packaging.requirements import Requirement

    names = []
    environment = {"python_version": "3.11", "python_full_version": "3.11.0", "extra": ""}
    for line in dist.requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            names.append(requirement.name)
    return names


def _closure() -> list[importlib.metadata.Distribution]:
    """The installed distributions nucleus-trio needs, itself excluded."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = _requirement_names(importlib.metadata.distribution(PROJECT))
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        dist = importlib.metadata.distribution(name)
        seen[name] = dist
        todo += _requirement_names(dist)
    return sorted(seen.values(), key=lambda d: d.metadata["Name"].lower())


#: Folders of the dependencies that the init never imports: their own tests
#: and development tools. Each entry of the archive costs start-up time
#: (``zipimport`` reads the whole directory, about 8 us an entry).
_SKIPPED = frozenset({"_tests", "tests", "_tools"})


def _copy_dist(dist: importlib.metadata.Distribution, into: Path) -> None:
    """Copy the importable files of an installed distribution."""
    for file in dist.files or []:
        parts = file.parts
        if parts[0].endswith(".dist-info") and file.name not in {"METADATA", "LICENSE"}:
            continue
        if "__pycache__" in parts or parts[0] in {"..", "bin"} or file.suffix in {".pth", ".pyi"}:
            continue
        if _SKIPPED.intersection(parts[1:-1]):
            continue
        if file.suffix in {".so", ".pyd"}:
            raise SystemExit(f"{dist.metadata['Name']} is not pure Python ({file})")
        source = Path(str(dist.locate_file(file)))
        target = into / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _interpreters() -> dict[str, str]:
    """``cpXY`` -> an interpreter of that version found on this machine (on
    ``PATH``, or installed by pyenv)."""
    found: dict[str, str] = {}
    for version in VERSIONS:
        pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
        candidates = [
            shutil.which(f"python{version}"),
            *map(str, sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)),
        ]
        if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
            candidates.insert(0, sys.executable)
        for candidate in candidates:
            if candidate is None:
                continue
            probe = subprocess.run(
                [candidate, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                check=False,
            )
            tag = probe.stdout.strip()
            if probe.returncode == 0 and tag == "cp" + version.replace(".", ""):
                found[tag] = candidate
                break
    return found


def _compiled(source: Path, into: Path, python: str) -> None:
    """A copy of ``source`` with each module as a legacy ``.pyc`` only."""
    shutil.copytree(
        source, into, ignore=shutil.ignore_patterns("*.py", "*.pyi", "py.typed", "*.dist-info")
    )
    for path in source.rglob("*.py"):
        target = into / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    # -b: the legacy layout; unchecked-hash: zip times would never match.
    options = ["-q", "-b", "-j", "0", "--invalidation-mode", "unchecked-hash", "-d", ""]
    subprocess.run([python, "-m", "compileall", *options, str(into)], check=True)
    for path in into.rglob("*.py"):
        path.unlink()


#: Where the zip comment lists each Python's module index: ``TAG:OFFSET:SIZE``.
INDEX_MARKER = b"nucleus-trio-index"


def _data_offset(info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start in the file (after its local header)."""
    return info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)


def _index(index: dict[str, tuple[int, int, bool]], info: zipfile.ZipInfo) -> None:
    """Add one ``.pyc`` member: module name -> (offset, size, is a package)."""
    parts = info.filename[: -len(".pyc")].split("/")[1:]
    package = parts[-1] == "__init__"
    name = ".".join(parts[:-1] if package else parts)
    index[name] = (_data_offset(info), info.file_size, package)


def _check_offsets(
    archive: Path, indexes: dict[str, dict[str, tuple[int, int, bool]]], stage: Path
) -> None:
    """Every indexed module's bytes are where the index says."""
    data = archive.read_bytes()
    for tag, index in indexes.items():
        for name, (offset, size, package) in index.items():
            path = stage / tag / name.replace(".", "/")
            source = (path / "__init__.pyc") if package else path.with_suffix(".pyc")
            if data[offset : offset + size] != source.read_bytes():
                raise SystemExit(f"{archive}: the index of {tag} is wrong for {name}")


def build(output: Path) -> Path:
    """Build the archive at ``output``; return it."""
    with tempfile.TemporaryDirectory(prefix="nucleus-trio-pyz-") as work:
        stage = Path(work) / "stage"
        src = stage / "src"
        shutil.copytree(
            ROOT / "src" / "nucleus_trio",
            src / "nucleus_trio",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        for dist in _closure():
            _copy_dist(dist, src)
        own = importlib.metadata.distribution(PROJECT)
        metadata = Path(f"nucleus_trio-{own.version}.dist-info") / "METADATA"
        built = _interpreters()
        for tag, python in sorted(built.items()):
            _compiled(src, stage / tag, python)
        # Its version, for `nucleus-trio --version` (importlib.metadata finds
        # distributions at the top of a zip on sys.path, not in its folders).
        (stage / metadata).parent.mkdir(parents=True)
        (stage / metadata).write_text(own.read_text("METADATA") or "")
        # Double quotes only: BOOT sits inside single quotes in the preamble.
        boot = BOOT.format(
            built="(" + "".join(f'"{tag}", ' for tag in sorted(built)) + ")",
            marker=INDEX_MARKER.decode(),
            skip=len(INDEX_MARKER) + 1,
        )
        assert "'" not in boot
        (stage / "__main__.py").write_text(MAIN.format(boot=boot))
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_suffix(".partial")
        with open(partial, "wb") as handle:
            handle.write(PREAMBLE.format(boot=boot).encode())
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
                indexes: dict[str, dict[str, tuple[int, int, bool]]] = {tag: {} for tag in built}
                for path in sorted(stage.rglob("*")):
                    if path.is_file():
                        name = path.relative_to(stage).as_posix()
                        # Bytecode stored: reading it needs no zlib (whose
                        # import and inflating cost about 3 ms at start).
                        tag = name.split("/")[0]
                        stored = tag in built
                        archive.write(path, name, zipfile.ZIP_STORED if stored else None)
                        if stored and name.endswith(".pyc"):
                            _index(indexes[tag], archive.infolist()[-1])
                where = []
                for tag, index in sorted(indexes.items()):
                    archive.writestr(f"{tag}.index", marshal.dumps(index), zipfile.ZIP_STORED)
                    info = archive.infolist()[-1]
                    where.append(f"{tag}:{_data_offset(info)}:{info.file_size}")
                archive.comment = INDEX_MARKER + b" " + " ".join(where).encode()
            _check_offsets(partial, indexes, stage)
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(partial, output)
    size = output.stat().st_size / 1e6
    print(f"{output}: {size:.1f} MB, bytecode for {', '.join(sorted(built))}")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "nucleus-trio.pyz")
    build(parser.parse_args().output)


if __name__ == "__main__":
    main()
