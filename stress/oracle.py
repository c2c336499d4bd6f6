"""The oracle of the command line: the outcome the spec prescribes for
``nucleus-trio ARGS`` in an environment and a directory (:func:`expect_cli`),
one real run of it (:func:`run_cli`), and what is wrong with that run
(:func:`check_cli`). The bad-input table and the fuzzer (:mod:`stress.fuzz`)
and tests/test_fuzz_cli.py judge every run with it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stress.harness import init_command, kill_tree
from stress.procfs import StressError, blocks, wait_until

PREFIX = "nucleus-trio: "

Arg = str | bytes

#: The base environment of every command-line run (plus what a case adds).
CLI_BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass
class CliResult:
    """One run of the real command line."""

    args: list[Arg]
    env: dict[str, str]
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool


@dataclass
class Expected:
    """What the spec says a command line must end with.

    ``kind``: ``usage`` (2, a reason and the usage), ``audit`` (2, one line),
    ``exec`` (126 or 127, one line), ``run`` (the workload's code, or any
    code when ``code`` is None), ``info`` (0, help or version on stdout),
    ``pause`` (0 on SIGTERM).
    """

    kind: str
    code: int | None


def as_text(arg: Arg) -> str:
    return os.fsdecode(arg) if isinstance(arg, bytes) else arg


def _audit_opens(dest: str, cwd: str) -> bool:
    if dest == "-":
        return True
    if dest.startswith("fd:"):
        return int(dest[3:]) in (1, 2)
    path = os.path.join(cwd, dest)
    raw = os.fsencode(path)
    if len(raw) >= 4096 or any(len(part) > 255 for part in raw.split(b"/")):
        return False
    if os.path.isdir(path):
        return False
    if os.path.exists(path):
        return os.access(path, os.W_OK)
    return os.path.isdir(os.path.dirname(path) or cwd)


def audit_is_safe(dest: str | None, cwd: str) -> bool:
    """Whether a fuzzed ``--audit DEST`` stays inside the scratch directory
    (a random command line must never append to ``/etc/passwd``)."""
    if dest is None or dest == "-" or dest.startswith("fd:"):
        return True
    if dest.startswith("/") or "\\" in dest:
        return False
    real = os.path.realpath(os.path.join(cwd, dest))
    return real.startswith(os.path.realpath(cwd) + os.sep)


def _exec_errno(path: str) -> int | None:
    """What ``execve(path)`` fails with as root, or None when it would run."""
    raw = os.fsencode(path)
    if len(raw) >= 4096 or any(len(part) > 255 for part in raw.split(b"/")):
        return errno.ENAMETOOLONG
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return errno.ENOENT
    except NotADirectoryError:
        return errno.ENOTDIR
    except OSError as exc:
        return exc.errno
    import stat

    if stat.S_ISDIR(info.st_mode) or not stat.S_ISREG(info.st_mode):
        return errno.EACCES
    if not info.st_mode & 0o111:
        return errno.EACCES
    return None


#: What the harmless workloads of the fuzz exit with (None: not predicted).
def _workload_code(real: str, argv: Sequence[str]) -> int | None:
    base = os.path.basename(real)
    if base == "true":
        return 0
    if base == "false":
        return 1
    if base in ("sh", "dash", "bash") and len(argv) == 3 and argv[1] == "-c":
        words = argv[2].split()
        if len(words) == 2 and words[0] == "exit" and words[1].isdigit():
            return int(words[1]) % 256
    return None


def expect_cli(args: Sequence[Arg], env: Mapping[str, str], cwd: str) -> Expected:
    """The outcome the spec prescribes for ``nucleus-trio ARGS`` in ``env``/``cwd``.

    Which words are options is the parser's business (tested on its own in
    tests/test_config.py); from there on, the exit code is worked out here
    independently: the program looked up the way ``execvp`` does, in the
    workload's PATH.
    """
    from nucleus_trio.config import Action, UsageError, parse_args
    from nucleus_trio.environment import MINIMAL_ENV

    try:
        action, config = parse_args([as_text(arg) for arg in args], env)
    except UsageError:
        return Expected("usage", 2)
    if action != Action.RUN:
        return Expected("info", 0)
    if config.audit is not None and not _audit_opens(config.audit, cwd):
        return Expected("audit", 2)
    if config.pause:
        return Expected("pause", 0)
    workload_env = dict(MINIMAL_ENV) if config.clean_env else dict(env)
    workload_env.update(config.env)
    program = config.argv[0]
    if "/" in program:
        candidates = [program]
    else:
        search = workload_env.get("PATH")
        dirs = (os.defpath if search is None else search).split(os.pathsep)
        candidates = [os.path.join(d, program) for d in dirs]
    saved: int | None = None
    for candidate in candidates:
        full = os.path.join(cwd, candidate)
        failure = _exec_errno(full)
        if failure is None:
            code = _workload_code(os.path.realpath(full), config.argv)
            if code is not None and code in config.remap_exit:
                code = 0
            return Expected("run", code)
        if failure not in (errno.ENOENT, errno.ENOTDIR) and saved is None:
            saved = failure
    return Expected("exec", 126 if saved is not None else 127)


def run_cli(
    args: Sequence[Arg],
    env: Mapping[str, str],
    cwd: str,
    *,
    expected: Expected | None = None,
    timeout: float = 30.0,
) -> CliResult:
    """Run ``nucleus-trio ARGS`` to its end (a pause is ended with SIGTERM once
    the init blocks it); a run past ``timeout`` is a hang, killed and reported."""
    began = time.monotonic()
    proc = subprocess.Popen(
        [*init_command(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    timed_out = False
    out = err = b""
    try:
        if expected is not None and expected.kind == "pause":
            with contextlib.suppress(StressError):
                wait_until(
                    lambda: proc.poll() is not None or blocks(proc.pid, signal.SIGTERM),
                    timeout / 2,
                    "the init to block SIGTERM",
                )
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.poll() is None or timed_out:
            kill_tree(proc, 0, "-")
            with contextlib.suppress(Exception):
                more_out, more_err = proc.communicate(timeout=5)
                out += more_out or b""
                err += more_err or b""
    return CliResult(
        list(args),
        dict(env),
        None if timed_out else proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        time.monotonic() - began,
        timed_out,
    )


def check_cli(result: CliResult, expected: Expected) -> list[str]:
    """What is wrong with a run, as the spec's exit status and usage rules see it."""
    from nucleus_trio.config import PROG, USAGE

    problems: list[str] = []
    if result.timed_out:
        return [f"hang: no exit within {result.seconds:.0f} s"]
    if "Traceback" in result.stderr or "Traceback" in result.stdout:
        problems.append("a traceback")
    code = result.code
    if code is None or not 0 <= code <= 255:
        problems.append(f"exit status {code} (killed by a signal?)")
    if expected.code is not None and code != expected.code:
        problems.append(f"exit code {code}, expected {expected.code} ({expected.kind})")
    lines = result.stderr.splitlines()
    if expected.kind == "usage":
        try_line = f"Try '{PROG} --help' for more information."
        if not (
            len(lines) == 3
            and lines[0].startswith(PREFIX)
            and lines[1] == USAGE
            and lines[2] == try_line
        ):
            problems.append(f"not one line of reason and the usage: {lines[:6]}")
        if result.stdout:
            problems.append("output on stdout")
    elif expected.kind == "audit":
        if not (len(lines) == 1 and lines[0].startswith(PREFIX + "--audit ")):
            problems.append(f"not one line about --audit: {lines[:6]}")
    elif expected.kind == "exec":
        # With --audit - (or fd:1, fd:2) the exec_failed record is a JSON line there.
        said = [line for line in lines if not line.startswith("{")]
        if not (len(said) == 1 and said[0].startswith(PREFIX + "cannot run ")):
            problems.append(f"not one 'cannot run' line: {said[:6]}")
        if any(not line.startswith("{") for line in result.stdout.splitlines()):
            problems.append("output on stdout")
    elif expected.kind == "info":
        if not result.stdout or result.stderr:
            problems.append("help or version not on stdout alone")
    elif expected.code is not None:  # a known workload: only the init talks
        strays = [line for line in lines if not line.startswith((PREFIX, "{"))]
        if strays:
            problems.append(f"stderr lines not the init's: {strays[:3]}")
        if any(not line.startswith("{") for line in result.stdout.splitlines()):
            problems.append(f"stdout not empty: {result.stdout[:200]!r}")
    return problems


def message_of(result: CliResult) -> str:
    """The first line the init printed (what a user sees first)."""
    for text in (result.stderr, result.stdout):
        if text.strip():
            return text.strip().splitlines()[0]
    return f"(nothing: the workload ran and exited {result.code})"
