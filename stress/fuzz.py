"""Bad input through the real command line: the README's table of bad inputs
(:data:`BAD_INPUTS`, run by :func:`bad_inputs`) and random command lines and
environments (:func:`fuzz_cli`, from the same pools as the hypothesis test in
tests/test_fuzz_cli.py). :mod:`stress.oracle` judges every run: the spec's
exit code, one ``nucleus-trio:`` line (and the usage), never a traceback,
never a hang.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stress.harness import tracebacks_in
from stress.oracle import (
    CLI_BASE_ENV,
    Arg,
    CliResult,
    as_text,
    audit_is_safe,
    check_cli,
    expect_cli,
    message_of,
    run_cli,
)
from stress.procfs import Figures


@dataclass
class BadInput:
    """One bad input of the README table: what it is, the command line, the
    environment changes (None unsets), the exit code the spec gives it."""

    what: str
    args: list[Arg]
    expected: int
    env: dict[str, str | None] = field(default_factory=dict)
    shown: str | None = None

    def environment(self) -> dict[str, str]:
        env = dict(CLI_BASE_ENV)
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def command_line(self) -> str:
        if self.shown is not None:
            return self.shown
        words = []
        for arg in self.args:
            if isinstance(arg, bytes):
                words.append("$'" + "".join(f"\\x{b:02x}" for b in arg) + "'")
            else:
                words.append(shlex.quote(arg))
        unset = [f"-u {key}" for key, value in self.env.items() if value is None]
        prefix = " ".join(
            [
                *(["env", *unset] if unset else []),
                *(f"{key}={shlex.quote(value)}" for key, value in self.env.items() if value),
                *(f"{key}=''" for key, value in self.env.items() if value == ""),
            ]
        )
        line = " ".join(["nucleus-trio", *words])
        return f"{prefix} {line}".strip() if prefix else line


HUGE = "9" * 100_000

BAD_INPUTS: list[BadInput] = [
    BadInput("no arguments at all", [], 2),
    BadInput("only `--`", ["--"], 2),
    BadInput("options but no PROGRAM", ["-s", "-w", "--"], 2),
    BadInput("unknown short flag", ["-z", "true"], 2),
    BadInput("unknown long flag", ["--yolo", "true"], 2),
    BadInput("unknown flag in a cluster", ["-vwz", "true"], 2),
    BadInput("ambiguous abbreviation", ["--s", "true"], 2),
    BadInput("a value for a switch", ["--subreaper=yes", "true"], 2),
    BadInput("value missing at the end", ["-v", "--rewrite"], 2),
    BadInput("flag eats `--` as its value", ["-e", "--", "3", "true"], 2),
    BadInput("PROGRAM with `-P`", ["-P", "true"], 2),
    BadInput("empty PROGRAM", [""], 2),
    BadInput("empty PROGRAM after `--`", ["--", ""], 2),
    BadInput("unknown signal name", ["-p", "NOPE", "true"], 2),
    BadInput("empty signal name", ["-p", "", "true"], 2),
    BadInput("signal 0", ["-p", "0", "true"], 2),
    BadInput("signal number out of range", ["-p", "65", "true"], 2),
    BadInput("negative signal number", ["-p", "-1", "true"], 2),
    BadInput("huge signal number", ["-p", "99999999999999999999", "true"], 2),
    BadInput("realtime signal out of range", ["-p", "RTMIN+99", "true"], 2),
    BadInput("non-ASCII digits", ["-p", "\u0661\u0665", "true"], 2),
    BadInput("invalid UTF-8 byte", ["-p", b"\xff", "true"], 2),
    BadInput("rewrite without `:`", ["-r", "TERM", "true"], 2),
    BadInput("rewrite with three parts", ["-r", "1:2:3", "true"], 2),
    BadInput("rewrite of a signal never forwarded", ["-r", "KILL:TERM", "true"], 2),
    BadInput("exit code 256", ["-e", "256", "true"], 2),
    BadInput("negative exit code", ["-e", "-1", "true"], 2),
    BadInput("fractional exit code", ["-e", "1.5", "true"], 2),
    BadInput(
        "100,000-digit exit code",
        ["-e", HUGE, "true"],
        2,
        shown="nucleus-trio -e 999…(100,000 digits) true",
    ),
    BadInput("negative grace", ["-t", "-1", "true"], 2),
    BadInput("grace NaN", ["-t", "nan", "true"], 2),
    BadInput("grace infinity", ["-t", "inf", "true"], 2),
    BadInput("grace 1e309", ["-t", "1e309", "true"], 2),
    BadInput("kill-after beyond the maximum", ["--kill-after", "99999999999", "true"], 2),
    BadInput("--env without `=`", ["--env", "NOVALUE", "true"], 2),
    BadInput("--env with an empty name", ["--env", "=x", "true"], 2),
    BadInput(
        "loader variable under --clean-env",
        ["--clean-env", "--env", "LD_PRELOAD=/x.so", "true"],
        2,
    ),
    BadInput("NOTIFY_SOCKET without --sd-notify", ["--env", "NOTIFY_SOCKET=/run/x", "true"], 2),
    BadInput("unknown user", ["--user", "no-such-user", "true"], 2),
    BadInput("user number without a passwd entry", ["--user", "4242", "true"], 2),
    BadInput("unknown group", ["--groups", "no-such-group", "true"], 2),
    BadInput("empty --audit", ["--audit", "", "true"], 2),
    BadInput("--audit fd:0", ["--audit", "fd:0", "true"], 2),
    BadInput("--audit on a descriptor not open", ["--audit", "fd:999", "true"], 2),
    BadInput("--audit in a missing directory", ["--audit", "/nonexistent/audit.log", "true"], 2),
    BadInput("--audit on a directory", ["--audit", "/", "true"], 2),
    BadInput("PROGRAM not found (path)", ["/nonexistent/prog"], 127),
    BadInput("PROGRAM not found (PATH)", ["no-such-program-xyz"], 127),
    BadInput("PROGRAM is `--` (a second `--`)", ["--", "--", "true"], 127),
    BadInput("PROGRAM looks like a flag after `--`", ["--", "-v"], 127),
    BadInput("PROGRAM is a directory", ["/"], 126),
    BadInput("PROGRAM not executable", ["/etc/passwd"], 126),
    BadInput("PROGRAM name too long", ["x" * 5000], 126, shown="nucleus-trio xxx…(5,000 x)"),
    BadInput("PATH empty", ["true"], 127, env={"PATH": ""}),
    BadInput("PATH unset", ["true"], 0, env={"PATH": None}),
    BadInput(
        "PYTHONWARNINGS=error and a bad flag",
        ["-z", "true"],
        2,
        env={"PYTHONWARNINGS": "error"},
    ),
    BadInput("unknown locale and a bad flag", ["--yolo", "true"], 2, env={"LC_ALL": "xx_XX.bogus"}),
    BadInput("help wins over what follows", ["-h", "--yolo"], 0),
]


def scratch_dir() -> str:
    """A scratch working directory that ``--user nobody`` can enter too."""
    path = tempfile.mkdtemp(prefix="nt-stress-cli-")
    os.chmod(path, 0o755)
    return path


def bad_inputs(entries: Sequence[BadInput] = BAD_INPUTS) -> list[Figures]:
    """Run every entry of the table; each row lists what went wrong, if anything."""
    rows: list[Figures] = []
    cwd = scratch_dir()
    try:
        for entry in entries:
            env = entry.environment()
            expected = expect_cli(entry.args, env, cwd)
            result = run_cli(entry.args, env, cwd, expected=expected)
            problems = check_cli(result, expected)
            if result.code != entry.expected:
                problems.append(f"exit {result.code}, the table says {entry.expected}")
            rows.append(
                {
                    "what": entry.what,
                    "command": entry.command_line(),
                    "code": result.code,
                    "message": message_of(result),
                    "tracebacks": tracebacks_in(result.stderr),
                    "seconds": round(result.seconds, 2),
                    "problems": problems,
                }
            )
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    return rows


def _config_words() -> tuple[list[str], list[str]]:
    from nucleus_trio import config

    switches = sorted(config._SWITCHES | {"-h", "--help", "-V", "--version"})
    return switches, sorted(config._VALUED)


SWITCH_WORDS, VALUED_WORDS = _config_words()

#: Junk that looks like options: unknown flags, prefixes, odd dashes.
ODD_FLAGS = [
    "-z", "--yolo", "-", "--", "---", "--=", "-=", "-vvvv", "-gcsw", "--s", "--no",
    "--au", "--aud=-", "-rTERM:INT", "-e3", "--grace=1", "--audit=", "-qv", "-wP",
    "--env=A=B", "--help=1", "-h-", "--verbose", "--quiet", "-\u00e9", "--\u2028",
]  # fmt: skip

#: Values: signal specs, codes, durations, assignments, identities, sinks.
ODD_VALUES: list[Arg] = [
    "TERM", "SIGTERM", "sigusr1", "15", "0", "65", "-1", "99999999999999999999",
    "RTMIN+3", "SIGRTMAX-30", "RTMIN+99", "TERM:INT", "HUP:0", "KILL:TERM", "1:2:3",
    ":", "", " ", "\t", "\n", "3", "255", "256", "1.5", "nan", "inf", "-inf", "1e309",
    "0x10", "\u0663", "0.001", "10000001", "KEY=value", "=x", "A B=1", "LD_PRELOAD=/x",
    "NOTIFY_SOCKET=@x", "PATH=/nonexistent", "PATH=", "root", "nobody", "65534",
    "no-such-user", "nobody:nogroup", "0:0", ":0", "root,nobody", "-", "fd:1", "fd:2",
    "fd:0", "fd:3", "fd:999999999", "fd:-1", "fd:", "audit.log", "sub/dir/x", "x" * 10_000,
    "\u00e9", "\u2028", "--", "-v", b"\xff\xfe", b"caf\xe9",
]  # fmt: skip

#: What may come after the options: harmless workloads and programs that fail.
PROGRAM_TAILS: list[list[Arg]] = [
    ["true"], ["false"], ["sh", "-c", "exit 3"], ["sh", "-c", "exit 0"],
    ["sh", "-c", "exit 255"], ["sh", "-c", "exit 126"], ["/bin/true"], ["/bin/false", "x"],
    ["/nonexistent/prog"], ["no-such-program-xyz"], ["./noexec"], ["./dir"], ["."],
    ["/etc/passwd"], [""], ["--"], ["-h"], ["true", "-v", "--", "-g"], [],
]  # fmt: skip

#: Environment variables a user may have, with odd values (None: unset).
ENV_CHOICES: dict[str, list[str | None]] = {
    "PATH": [
        None, "", "/usr/bin:/bin", "/nonexistent", "relative", ":/usr/bin:/bin",
        "/usr/bin::/bin", "/x:" * 3000 + "/usr/bin",
    ],
    "NOTIFY_SOCKET": ["@abstract", "/run/notify", "/tmp/x", "../../run/x", "", "\u00e9"],
    "LANG": ["C", "POSIX", "xx_XX.bogus", "en_US.UTF-8", "tr_TR.UTF-8"],
    "LC_ALL": ["C", "xx_XX.bogus", ""],
    "PYTHONWARNINGS": ["error", "ignore", "default", "error::DeprecationWarning"],
    "PYTHONDEVMODE": ["1"],
    "PYTHONOPTIMIZE": ["2"],
    "PYTHONHASHSEED": ["0", "4294967295"],
    "PYTHONPATH": ["/nonexistent", ""],
    "PYTHONIOENCODING": ["ascii", "latin-1:strict"],
    "PYTHONUTF8": ["0", "1"],
    "HOME": ["/nonexistent", ""],
    "TERM": ["", "dumb"],
    "HUGE": ["v" * 100_000],
    "WEIRD": ["a\nb", "=", "\u2028"],
    # The peers' variables, which the init reads too.
    "TINI_VERBOSITY": ["0", "3", "9", "loud", ""],
    "TINI_KILL_PROCESS_GROUP": ["", "1"],
    "TINI_SUBREAPER": ["0"],
    "DUMB_INIT_DEBUG": ["1"],
}  # fmt: skip


def make_fixtures(cwd: str) -> None:
    """Files the fuzzed programs refer to: ``./noexec`` and ``./dir``."""
    noexec = Path(cwd, "noexec")
    if not noexec.exists():
        noexec.write_text("#!/bin/sh\nexit 0\n")
        noexec.chmod(0o644)
    Path(cwd, "dir").mkdir(exist_ok=True)


def strip_nul(arg: Arg) -> Arg:
    """An argument as ``execve`` passes it: cut at the first NUL."""
    if isinstance(arg, bytes):
        return arg.split(b"\0", 1)[0]
    return arg.split("\0", 1)[0]


def fuzz_case(rng: random.Random) -> tuple[list[Arg], dict[str, str]]:
    """One random command line and environment, from the same pools as the
    hypothesis test."""
    words: list[Arg] = []
    for _ in range(rng.randint(0, 6)):
        pick = rng.random()
        if pick < 0.3:
            words.append(rng.choice(SWITCH_WORDS))
        elif pick < 0.6:
            words += [rng.choice(VALUED_WORDS), rng.choice(ODD_VALUES)]
        elif pick < 0.75:
            words.append(rng.choice(ODD_FLAGS))
        elif pick < 0.85:
            words.append(rng.choice(ODD_VALUES))
        else:
            words.append(rng.choice(VALUED_WORDS))
    if rng.random() < 0.5:
        words.append("--")
    words += rng.choice(PROGRAM_TAILS)
    if words and rng.random() < 0.2:
        words.insert(rng.randrange(len(words) + 1), "--")
    env = dict(CLI_BASE_ENV)
    for key in rng.sample(sorted(ENV_CHOICES), rng.randint(0, 3)):
        value = rng.choice(ENV_CHOICES[key])
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return [strip_nul(word) for word in words], env


def fuzz_one(
    args: Sequence[Arg], env: Mapping[str, str], cwd: str
) -> tuple[CliResult, list[str]] | None:
    """Run one fuzzed command line; None when it was skipped (an ``--audit``
    path outside the scratch directory, which a fuzzer must not write)."""
    from nucleus_trio.config import UsageError, parse_args

    try:
        _, config = parse_args([as_text(arg) for arg in args], env)
    except UsageError:
        config = None
    if config is not None and not audit_is_safe(config.audit, cwd):
        return None
    expected = expect_cli(args, env, cwd)
    result = run_cli(args, env, cwd, expected=expected)
    return result, check_cli(result, expected)


def fuzz_cli(runs: int, *, seed: int = 2024) -> Figures:
    """``runs`` random command lines and environments through the real command."""
    rng = random.Random(seed)
    cwd = scratch_dir()
    make_fixtures(cwd)
    codes: dict[int, int] = {}
    failures: list[str] = []
    tried = skipped = tracebacks = hangs = 0
    began = time.monotonic()
    try:
        while tried < runs:
            args, env = fuzz_case(rng)
            outcome = fuzz_one(args, env, cwd)
            if outcome is None:
                skipped += 1
                continue
            result, problems = outcome
            tried += 1
            key = -1 if result.code is None else result.code
            codes[key] = codes.get(key, 0) + 1
            tracebacks += tracebacks_in(result.stderr)
            hangs += result.timed_out
            if problems and len(failures) < 20:
                shown_env = {k: v[:40] for k, v in env.items() if CLI_BASE_ENV.get(k) != v}
                shown = [as_text(a)[:60] for a in args]
                failures.append(f"{shown} env={shown_env}: {[p[:300] for p in problems]}")
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    return {
        "scenario": "fuzzed command lines",
        "mode": "-",
        "runs": tried,
        "skipped_unsafe_audit": skipped,
        "exit_codes": dict(sorted(codes.items())),
        "tracebacks": tracebacks,
        "hangs": hangs,
        "seconds": round(time.monotonic() - began, 1),
        "failures": failures,
    }


def bad_inputs_figures() -> Figures:
    rows = bad_inputs()
    codes: dict[int, int] = {}
    for row in rows:
        codes[row["code"]] = codes.get(row["code"], 0) + 1
    return {
        "scenario": "bad inputs (table)",
        "mode": "-",
        "runs": len(rows),
        "exit_codes": dict(sorted(codes.items())),
        "tracebacks": sum(row["tracebacks"] for row in rows),
        "failures": [f"{row['what']}: {row['problems']}" for row in rows if row["problems"]],
        "rows": rows,
    }
