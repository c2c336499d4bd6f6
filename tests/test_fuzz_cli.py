"""Bad input through the real command line, as a new user and a fuzzer try it.

Every run must end with the spec's exit code (the workload's when it ran,
else 2, 126 or 127), the init's own error as one ``nucleus-trio:`` line (a
usage error followed by the usage), never a traceback and never a hang.
The command lines and environments come from the pools in
:mod:`stress.fuzz`, which ``python -m stress --bad-inputs-table`` also runs
to write the README's table (``stress/bad_inputs.md``). The parser alone is
fuzzed in tests/test_config.py; here the whole program is, with its
environment: PATH, locales, PYTHON* variables, NOTIFY_SOCKET, huge values.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from stress.fuzz import (
    BAD_INPUTS,
    ENV_CHOICES,
    ODD_FLAGS,
    ODD_VALUES,
    PROGRAM_TAILS,
    SWITCH_WORDS,
    VALUED_WORDS,
    BadInput,
    bad_inputs,
    fuzz_one,
    make_fixtures,
    scratch_dir,
    strip_nul,
)
from stress.harness import init_command
from stress.oracle import CLI_BASE_ENV, Arg, check_cli, expect_cli, run_cli
from stress.report import bad_inputs_markdown

from nucleus_trio.config import UsageError, parse_args

TABLE = Path(__file__).resolve().parent.parent / "stress" / "bad_inputs.md"


@pytest.fixture(scope="module")
def scratch() -> Iterator[str]:
    """The working directory of every run (``./noexec``, ``./dir`` inside)."""
    cwd = scratch_dir()
    make_fixtures(cwd)
    yield cwd
    shutil.rmtree(cwd, ignore_errors=True)


# ------------------------------------------------------------ the fixed table


@pytest.mark.parametrize("entry", BAD_INPUTS, ids=[entry.what for entry in BAD_INPUTS])
def test_bad_input(entry: BadInput, scratch: str) -> None:
    env = entry.environment()
    expected = expect_cli(entry.args, env, scratch)
    result = run_cli(entry.args, env, scratch, expected=expected)
    assert result.code == entry.expected, result.stderr[-2000:]
    assert expected.code == entry.expected
    assert check_cli(result, expected) == [], result.stderr[-2000:]


def test_bad_inputs_table_is_current() -> None:
    """stress/bad_inputs.md (quoted in the README) is what the table gives now."""
    rows = bad_inputs()
    assert all(not row["problems"] for row in rows), [r for r in rows if r["problems"]]
    assert TABLE.read_text() == bad_inputs_markdown(rows), (
        "stale table: python -m stress --bad-inputs-table --markdown stress/bad_inputs.md"
    )


def test_nul_bytes_never_reach_the_init() -> None:
    """execve cannot carry a NUL; the library's parser refuses one."""
    with pytest.raises(ValueError, match="null byte"):
        subprocess.run([*init_command(), "true\0x"], check=False, timeout=30)
    with pytest.raises(UsageError, match="NUL"):
        parse_args(["--", "true\0x"])


# ------------------------------------------------------------ the fuzzer

_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=12
)
WORD: st.SearchStrategy[Arg] = st.one_of(
    st.sampled_from(SWITCH_WORDS),
    st.sampled_from(VALUED_WORDS),
    st.sampled_from(ODD_FLAGS),
    st.sampled_from(ODD_VALUES),
    _TEXT,
    st.binary(max_size=8),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.just("--"),
)


@st.composite
def command_lines(draw: st.DrawFn) -> list[Arg]:
    """Options (real, junk and values), maybe ``--``, then a program and its
    arguments, with ``--`` thrown in somewhere now and then."""
    words: list[Arg] = draw(st.lists(WORD, max_size=7))
    if draw(st.booleans()):
        words.append("--")
    words += draw(st.sampled_from(PROGRAM_TAILS))
    if draw(st.integers(0, 4)) == 0:
        words.insert(draw(st.integers(0, len(words))), "--")
    return [strip_nul(word) for word in words]


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    """The base environment with a few variables set, unset or made odd."""
    env = dict(CLI_BASE_ENV)
    for key in draw(st.lists(st.sampled_from(sorted(ENV_CHOICES)), max_size=3, unique=True)):
        value = draw(st.sampled_from(ENV_CHOICES[key]))
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    extra = draw(
        st.dictionaries(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
            _TEXT,
            max_size=2,
        )
    )
    for key, value in extra.items():
        if key not in ("PYTHONHOME", "PYTHONMALLOC", "PYTHONPATH", "PYTHONSTARTUP"):
            env.setdefault(key, value)
    return env


def _shown_env(env: dict[str, str]) -> dict[str, str]:
    return {key: value[:60] for key, value in env.items() if CLI_BASE_ENV.get(key) != value}


@pytest.mark.timeout(900)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(command_lines(), environments())
@example(["-P"], dict(CLI_BASE_ENV))
@example(["-P", "-v", "--audit", "-"], dict(CLI_BASE_ENV))
@example(["--audit", "-", "/nonexistent/prog"], dict(CLI_BASE_ENV))
@example(["--audit", "fd:1", "-v", "sh", "-c", "exit 3"], dict(CLI_BASE_ENV))
@example(["-e", "3", "--", "sh", "-c", "exit 3"], dict(CLI_BASE_ENV))
@example(["--clean-env", "--env", "PATH=/nonexistent", "true"], dict(CLI_BASE_ENV))
@example(["--user", "nobody", "./noexec"], dict(CLI_BASE_ENV))
@example(["-v", "true"], {**CLI_BASE_ENV, "PYTHONWARNINGS": "error", "PYTHONDEVMODE": "1"})
@example(["-p", b"\xff", "true"], {**CLI_BASE_ENV, "LC_ALL": "C"})
@example(["true"], {"LANG": "C.UTF-8"})
def test_fuzzed_command_line(scratch: str, args: list[Arg], env: dict[str, str]) -> None:
    outcome = fuzz_one(args, env, scratch)
    assume(outcome is not None)  # an --audit path outside the scratch directory
    assert outcome is not None
    result, problems = outcome
    assert problems == [], (
        f"args={[os.fsdecode(a) if isinstance(a, bytes) else a for a in args]!r} "
        f"env={_shown_env(env)!r} exit={result.code} stderr={result.stderr[-1500:]!r}"
    )
