"""The real command line, end to end: the spec's "Command line" and "Exit status".

Every test runs the installed ``nucleus-trio`` command (``python -m
nucleus_trio`` in the last few), as PID 1 of a fresh PID namespace and as a
subreaper where being PID 1 matters, with only the flags that ``-h`` lists.
Workloads of their own are ``tests/workloads/cli_*.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest

from tests.support.launch import PYTHON, init_command, run_init, start_init, workload
from tests.support.procfs import children_of, proc_status, signal_set, wait_for

PREFIX = "nucleus-trio: "

#: Every flag the spec's "Command line" table names.
SPEC_FLAGS = frozenset(
    {
        "-s", "--subreaper", "--no-subreaper", "-g", "--pgroup", "-c", "--single-child",
        "-r", "--rewrite", "-e", "--remap-exit", "-p", "--pdeathsig", "-P", "--pause",
        "-t", "--grace", "--kill-after", "-w", "--warn-reap", "-v", "-q", "--audit",
        "--container-id", "--container-name", "--clean-env", "--env", "--sd-notify",
        "--no-new-privs", "--user", "--groups", "-V", "--version", "-h", "--help",
    }
)  # fmt: skip

#: Long spellings of spec flags that the spec only names by their short form
#: (dumb-init users type ``--verbose``).
LONG_ALIASES = {"--verbose": "-v", "--quiet": "-q"}

#: Flags beyond the spec's table, each asked for by an issue: the way to
#: redact argv in audit events (the audit issue).
EXTRA_FLAGS = frozenset({"--redact-args"})

#: A value that the parser accepts, for each spec flag that takes one.
VALID_VALUES = {
    "-r": "TERM:INT", "--rewrite": "SIGHUP:0", "-e": "3", "--remap-exit": "255",
    "-p": "USR1", "--pdeathsig": "SIGUSR1", "-t": "1", "--grace": "1.5",
    "--kill-after": "2", "--audit": "-", "--container-id": "abc",
    "--container-name": "web", "--env": "KEY=value", "--user": "0", "--groups": "0",
}  # fmt: skip


# ---------------------------------------------------------------- helpers


def pid1(mode: str) -> bool:
    return mode == "pid1"


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def assert_no_traceback(err: str) -> None:
    assert "Traceback" not in err, err


def assert_own_lines_prefixed(err: str, *, foreign: Sequence[str] = ()) -> None:
    """Every stderr line is the init's, prefixed, except the workload's ``foreign``."""
    for line in lines_of(err):
        assert line.startswith(PREFIX) or line in foreign, f"unprefixed stderr line {line!r}"


def assert_usage_error(code: int, out: str, err: str) -> None:
    """Exit 2, a one-line reason, then the usage; nothing on stdout, no traceback."""
    assert code == 2, (code, err)
    assert out == ""
    assert_no_traceback(err)
    lines = lines_of(err)
    assert len(lines) >= 2, err
    assert lines[0].startswith(PREFIX), lines[0]
    assert lines[0][len(PREFIX) :].strip(), "empty reason"
    assert lines[1].startswith("usage: nucleus-trio "), lines[1]


def exec_failure_line(program: str) -> re.Pattern[str]:
    return re.compile(rf"^nucleus-trio: cannot run {re.escape(repr(program))}: \S.*$", re.M)


def not_found_line(program: str) -> str:
    return f"nucleus-trio: cannot run '{program}': No such file or directory"


def sig_field(pid: int, field: str) -> set[int]:
    try:
        return signal_set(proc_status(pid)[field])
    except (OSError, KeyError):
        return set()


def is_the_init(pid: int) -> bool:
    """Whether ``pid`` runs the init's interpreter already (not unshare's fork)."""
    try:
        return "python" in Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return False


def wait_in_charge(pid: int, signals: Sequence[int]) -> None:
    """Wait until the init's first line has run and it has taken charge of ``signals``.

    That is, until they are blocked (its entry point's first line does it) or
    caught: from then on the spec says such a signal is never lost. Python
    catches SIGINT from its own start-up, so SIGTERM, which it leaves alone,
    tells that the first line has run; and unshare's child briefly blocks
    SIGINT and SIGTERM before it execs the init.
    """
    wanted = {*signals, signal.SIGTERM}

    def ready() -> bool:
        caught = wanted <= sig_field(pid, "SigBlk") | sig_field(pid, "SigCgt")
        return caught and is_the_init(pid)

    wait_for(ready, 10, f"the init to block or catch {sorted(wanted)}")


def wait_catching(pid: int, signals: Sequence[int]) -> None:
    """Wait until the init has handlers for ``signals`` and no longer blocks them."""
    wanted = set(signals)

    def ready() -> bool:
        caught = wanted <= sig_field(pid, "SigCgt") and not wanted & sig_field(pid, "SigBlk")
        return caught and is_the_init(pid)

    wait_for(ready, 10, f"the init to catch {sorted(wanted)}")


def wait_not_pending(pid: int, signals: Sequence[int]) -> None:
    wanted = set(signals)

    def delivered() -> bool:
        return not wanted & (sig_field(pid, "SigPnd") | sig_field(pid, "ShdPnd"))

    wait_for(delivered, 10, f"the init to take {sorted(wanted)}")


def kill_pids(*pids: int | None) -> None:
    for pid in pids:
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def started(command: Sequence[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A process of our own, in its own session, whose group is killed on the way out."""
    proc = subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float = 10) -> list[str]:
    """``count`` lines of ``proc``'s stdout, read unbuffered (two may come in one read)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            raise AssertionError(f"{count} lines not within {timeout}s: {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"end of output before {count} lines: {data!r}")
        data += chunk
    return data.decode().splitlines()[:count]


def make_file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# ---------------------------------------------------------------- exit status


@pytest.mark.parametrize("code", [0, 1, 2, 126, 127, 255])
def test_exit_code_passes_through(mode: str, code: int) -> None:
    rc, out, err = run_init(["sh", "-c", f"exit {code}"], pid1=pid1(mode))
    assert rc == code, err
    assert out == ""
    assert_no_traceback(err)


def test_every_exit_code_passes_through_and_other_codes_are_not_remapped() -> None:
    """All 256 codes, one init each; every *other* code given to ``-e`` (tini's loop).

    The inits run a batch at a time (the cost is trio's import, CPU-bound).
    """
    batch = max(4, 4 * (os.cpu_count() or 1))
    wrong: list[tuple[int, int, str]] = []
    for first in range(0, 256, batch):
        with contextlib.ExitStack() as stack:
            runs = []
            for code in range(first, min(first + batch, 256)):
                others = [word for n in range(256) if n != code for word in ("-e", str(n))]
                runs.append(
                    (code, stack.enter_context(start_init([*others, "sh", "-c", f"exit {code}"])))
                )
            for code, run in runs:
                _, err = run.communicate(30)
                if run.proc.returncode != code:
                    wrong.append((code, run.proc.returncode, err))
    assert wrong == []


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGQUIT", "SIGKILL", "SIGUSR1"])
def test_death_by_signal_is_128_plus_signal(mode: str, name: str) -> None:
    signo = int(signal.Signals[name])
    rc, out, err = run_init(workload("cli_kill_self.py", name), pid1=pid1(mode))
    assert rc == 128 + signo, err
    assert out == ""
    assert_no_traceback(err)


@pytest.mark.parametrize(
    ("remap", "script", "expected"),
    [
        (["-e", "3"], "exit 3", 0),
        (["-e", "3"], "exit 4", 4),
        (["--remap-exit", "7"], "exit 7", 0),
        (["--remap-exit=7"], "exit 7", 0),
        (["-e7"], "exit 7", 0),
        (["-e", "0"], "exit 0", 0),
        (["-e", "255"], "exit 255", 0),
        (["-e", "3", "-e", "5"], "exit 3", 0),
        (["-e", "3", "-e", "5"], "exit 5", 0),
        (["-e", "3", "-e", "5"], "exit 4", 4),
        (["-e", "143"], "exit 143", 0),
        # The workload's own 2, 126 and 127 are its outcome: remapped.
        (["-e", "2"], "exit 2", 0),
        (["-e", "126"], "exit 126", 0),
        (["-e", "127"], "exit 127", 0),
        (["-e", "127"], "nucleus-trio-no-such-program", 0),
    ],
)
def test_remap_exit_maps_exactly_that_code(remap: list[str], script: str, expected: int) -> None:
    rc, _, err = run_init([*remap, "sh", "-c", script])
    assert rc == expected, err


@pytest.mark.parametrize(
    ("remap", "name", "expected"),
    [
        (["-e", "143"], "SIGTERM", 0),
        (["-e", "143"], "SIGINT", 130),
        (["-e", "137"], "SIGKILL", 0),
        (["-e", "15"], "SIGTERM", 143),
        (["-e", "130", "-e", "143"], "SIGINT", 0),
    ],
)
def test_remap_exit_counts_signal_death_as_128_plus_signal(
    mode: str, remap: list[str], name: str, expected: int
) -> None:
    rc, _, err = run_init([*remap, *workload("cli_kill_self.py", name)], pid1=pid1(mode))
    assert rc == expected, err


@pytest.mark.parametrize(("remap", "expected"), [([], 143), (["-e", "143"], 0)])
def test_remap_exit_143_covers_a_forwarded_sigterm(
    mode: str, remap: list[str], expected: int
) -> None:
    """``docker stop``: SIGTERM to the init kills ``sleep``; ``-e 143`` makes it 0."""
    with start_init([*remap, "sleep", "30"], pid1=pid1(mode)) as run:
        run.workload_pid()
        run.send(signal.SIGTERM)
        assert run.wait(10) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-e", "127", "/nonexistent/program"], 127),
        (["-e", "127", "-e", "126", "nucleus-trio-no-such-program"], 127),
        (["-e", "126", "/"], 126),
        (["-e", "2", "--yolo", "true"], 2),
        (["-e", "2"], 2),
        (["-e", "2", "-r", "15", "true"], 2),
        (["-e", "2", "-P", "true"], 2),
    ],
)
def test_init_own_codes_are_never_remapped(args: list[str], expected: int) -> None:
    rc, out, err = run_init(args)
    assert rc == expected, err
    assert out == ""
    assert_no_traceback(err)


# ---------------------------------------------------------------- programs that cannot run


@pytest.mark.parametrize("program", ["/nonexistent/program", "nucleus-trio-no-such-program"])
def test_missing_program_is_127(mode: str, program: str) -> None:
    rc, out, err = run_init([program, "arg"], pid1=pid1(mode))
    assert rc == 127
    assert out == ""
    assert not_found_line(program) in lines_of(err), err
    assert_no_traceback(err)


def test_bare_name_not_on_path_is_127(tmp_path: Path) -> None:
    """``true`` exists, but not on the PATH the init is given."""
    rc, out, err = run_init(["true"], env={"PATH": str(tmp_path)})
    assert rc == 127
    assert out == ""
    assert not_found_line("true") in lines_of(err), err


def test_bare_name_is_looked_up_on_path(tmp_path: Path) -> None:
    """Each PATH entry in turn, a non-directory entry skipped (as execvp does)."""
    make_file(tmp_path / "hello-cli", "#!/bin/sh\necho found \"$@\"\n", 0o755)
    path = f"/etc/hostname:{tmp_path / 'missing'}:{tmp_path}:/usr/bin:/bin"
    rc, out, err = run_init(["hello-cli", "x"], env={"PATH": path})
    assert (rc, out) == (0, "found x\n"), err


def test_bare_name_found_on_path_but_not_executable_is_126(tmp_path: Path) -> None:
    make_file(tmp_path / "tool-cli", "#!/bin/sh\nexit 0\n", 0o644)
    rc, out, err = run_init(["tool-cli"], env={"PATH": str(tmp_path)})
    assert rc == 126, err
    assert out == ""
    assert exec_failure_line("tool-cli").search(err), err


@pytest.mark.parametrize("kind", ["not-executable", "directory", "no-shebang"])
def test_program_that_cannot_execute_is_126(mode: str, kind: str, tmp_path: Path) -> None:
    if kind == "not-executable":
        program = make_file(tmp_path / "script.sh", "#!/bin/sh\nexit 0\n", 0o644)
    elif kind == "directory":
        program = tmp_path / "a-directory"
        program.mkdir()
    else:
        program = make_file(tmp_path / "plain", "echo no interpreter line\nexit 0\n", 0o755)
    rc, out, err = run_init([str(program)], pid1=pid1(mode))
    assert rc == 126, err
    assert out == ""
    assert exec_failure_line(str(program)).search(err), err
    assert_no_traceback(err)


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        # unknown flags
        (["-z", "true"], "-z"),
        (["--yolo", "true"], "--yolo"),
        (["-vz", "true"], "-z"),
        (["--subreaper=yes", "true"], None),
        # bad signal names and numbers
        (["-p", "NOPE", "true"], "NOPE"),
        (["-p", "SIGNOPE", "true"], "SIGNOPE"),
        (["--pdeathsig", "99", "true"], "99"),
        (["-p", "", "true"], None),
        (["-r", "NOPE:TERM", "true"], "NOPE"),
        (["-r", "TERM:NOPE", "true"], "NOPE"),
        (["--rewrite", "SIGNOPE:1", "true"], "SIGNOPE"),
        # bad rewrite forms
        (["-r", "15", "true"], None),
        (["-r", "TERM", "true"], None),
        (["-r", ":15", "true"], None),
        (["-r", "15:", "true"], None),
        (["-r", ":", "true"], None),
        (["-r", "", "true"], None),
        (["-r", "15::12", "true"], None),
        (["-r", "1:2:3", "true"], None),
        (["-r", "1:99", "true"], "99"),
        # bad exit codes
        (["-e", "256", "true"], "256"),
        (["-e", "-1", "true"], "-1"),
        (["-e", "abc", "true"], "abc"),
        (["-e", "", "true"], None),
        (["-e", "1.5", "true"], "1.5"),
        (["--remap-exit", "1000", "true"], "1000"),
        # a value missing at the end
        (["-r"], "-r"),
        (["-e"], "-e"),
        (["-p"], "-p"),
        (["-v", "--rewrite"], "--rewrite"),
        # no PROGRAM
        ([], None),
        (["-v"], None),
        (["--"], None),
        (["-s", "-w", "--"], None),
        # -P with a PROGRAM
        (["-P", "true"], None),
        (["--pause", "--", "sleep", "1"], None),
    ],
)
def test_usage_error_is_2_with_reason_and_usage(args: list[str], mentions: str | None) -> None:
    rc, out, err = run_init(args)
    assert_usage_error(rc, out, err)
    if mentions is not None:
        assert mentions in lines_of(err)[0], err


# ---------------------------------------------------------------- where options end


def test_options_stop_at_first_non_option() -> None:
    """``nucleus-trio sh -c '...' -g -v``: the workload gets ``-g`` and ``-v``."""
    rc, out, err = run_init(["sh", "-c", 'echo "$0 $1 $2"', "-g", "-v", "-V"])
    assert (rc, out) == (0, "-g -v -V\n"), err
    # The -v was not the init's: no info line.
    assert not any(re.search(r"start", line, re.I) for line in lines_of(err)), err


def test_options_stop_at_double_dash() -> None:
    rc, out, err = run_init(["-e", "3", "--", "sh", "-c", 'echo "$0"; exit 3', "-h"])
    assert (rc, out) == (0, "-h\n"), err


def test_program_after_double_dash_may_look_like_a_flag(tmp_path: Path) -> None:
    """tini's MINIMAL build runs programs literally named ``-h``."""
    make_file(tmp_path / "-h", "#!/bin/sh\necho ran dash-h \"$@\"\n", 0o755)
    rc, out, err = run_init(["--", "-h", "-V"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert (rc, out) == (0, "ran dash-h -V\n"), err


def test_second_double_dash_is_the_program(mode: str) -> None:
    """``nucleus-trio -- -- true`` runs a program called ``--``."""
    rc, out, err = run_init(["-v", "--", "--", "true"], pid1=pid1(mode))
    assert rc == 127
    assert out == ""
    assert not_found_line("--") in lines_of(err), err


# ---------------------------------------------------------------- help and version


def help_flags(text: str) -> set[str]:
    """The flag names on the option lines of the help.

    An option line starts with its flags (comma-separated) and their
    upper-case value names (``FROM:TO``, ``SECONDS``); the description follows.
    """
    flags: set[str] = set()
    for line in lines_of(text):
        words = line.split()
        if not words or not words[0].startswith("-"):
            continue
        for word in (word.rstrip(",") for word in words):
            if word.startswith("-") and len(word) > 1:
                flags.add(word.split("=")[0])
            elif not re.fullmatch(r"[A-Z][A-Z0-9_:\[\],.]*", word):
                break
    return flags


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_on_stdout(flag: str) -> None:
    rc, out, err = run_init([flag])
    assert rc == 0
    assert err == ""
    assert lines_of(out)[0].startswith("usage: nucleus-trio "), out
    assert {"-h", "--help", "-V", "--version"} <= help_flags(out), out


def test_help_lists_only_spec_flags() -> None:
    _, out, _ = run_init(["--help"])
    listed = help_flags(out)
    known = SPEC_FLAGS | EXTRA_FLAGS
    unknown = {name for name in listed if LONG_ALIASES.get(name, name) not in known}
    assert not unknown, f"-h lists flags the spec does not name: {sorted(unknown)}"
    assert listed >= EXTRA_FLAGS


@pytest.mark.parametrize(
    "args",
    [
        ["-r", "TERM:INT"], ["-r", "SIGTERM:SIGINT"], ["-r", "15:2"], ["-r", "HUP:0"],
        ["-rTERM:INT"], ["--rewrite=15:0"], ["-r", "TERM:INT", "-r", "INT:TERM"],
        ["-p", "10"], ["-p", "USR1"], ["--pdeathsig=SIGUSR1"], ["-pTERM"],
        ["-e", "0"], ["-e", "255"], ["-e0", "-e", "143"], ["--remap-exit=3"],
        ["-vvw"], ["-sgc"], ["-gr", "TERM:INT"],
    ],
)  # fmt: skip
def test_valid_values_and_clusters_are_accepted(args: list[str]) -> None:
    rc, out, err = run_init([*args, "-V"])
    assert (rc, out, err) == (0, f"nucleus-trio {dist_version('nucleus-trio')}\n", "")


def test_help_wins_over_a_following_program() -> None:
    rc, out, _ = run_init(["-v", "-h", "false"])
    assert rc == 0
    assert out.startswith("usage: nucleus-trio ")


def test_every_flag_help_lists_is_accepted() -> None:
    """Each listed flag parses (a following ``-V`` then prints the version)."""
    _, text, _ = run_init(["--help"])
    expected = f"nucleus-trio {dist_version('nucleus-trio')}\n"
    for flag in sorted(help_flags(text) - {"-h", "--help", "-V", "--version"}):
        value = [VALID_VALUES[flag]] if flag in VALID_VALUES else []
        rc, out, err = run_init([flag, *value, "-V"])
        assert (rc, out, err) == (0, expected, ""), flag


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_on_stdout(flag: str) -> None:
    rc, out, err = run_init([flag])
    assert (rc, err) == (0, "")
    assert out == f"nucleus-trio {dist_version('nucleus-trio')}\n"


# ---------------------------------------------------------------- -P / --pause


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("flag", ["-P", "--pause"])
def test_pause_exits_0_on_sigint_and_sigterm(mode: str, flag: str, signo: int) -> None:
    with start_init([flag], pid1=pid1(mode)) as run:
        init = run.init_pid
        wait_in_charge(init, [signo])
        run.send(signo)
        assert run.wait(10) == 0
        out, err = run.communicate(5)
        assert out == ""
        assert_no_traceback(err)


def test_pause_ignores_other_signals(mode: str) -> None:
    with start_init(["-P"], pid1=pid1(mode)) as run:
        init = run.init_pid
        others = [signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR2, signal.SIGWINCH]
        wait_catching(init, [*others, signal.SIGTERM])
        for signo in others:
            run.send(signo)
        wait_not_pending(init, others)
        # Taken and handled: the init must still be pausing a while later.
        with pytest.raises(subprocess.TimeoutExpired):
            run.proc.wait(timeout=0.3)
        run.send(signal.SIGTERM)
        assert run.wait(10) == 0


# ---------------------------------------------------------------- -p / --pdeathsig


def test_pdeathsig_forwards_signal_when_parent_dies(mode: str, tmp_path: Path) -> None:
    """tini's test: the init's parent is SIGKILLed; the workload gets SIGUSR1.

    As subreaper the parent is a small script that starts the init and sleeps;
    as PID 1 it is ``unshare`` (whose own parent-death SIGKILL ``-p`` replaces).
    """
    marker = tmp_path / "marker"
    args = ["-p", "SIGUSR1", "--", *workload("cli_usr1_marker.py", str(marker))]
    if pid1(mode):
        with start_init(args, pid1=True) as run:
            assert run.readline().startswith("ready")
            wait_catching(run.init_pid, [signal.SIGUSR1])
            assert not marker.exists()
            run.proc.kill()
            run.proc.wait(10)
            # The shell creates the file, then writes it: wait for the line.
            wait_for(
                lambda: marker.exists() and marker.read_text() == "USR1\n",
                10,
                "the marker of the forwarded SIGUSR1",
            )
        return
    parent_script = str(Path(__file__).parent / "workloads" / "cli_pdeathsig_parent.py")
    init_pid = workload_pid = None
    with started([PYTHON, parent_script, *init_command(), *args]) as parent:
        try:
            for line in read_lines(parent, 2):
                word, pid = line.split()
                if word == "init":
                    init_pid = int(pid)
                else:
                    assert word == "ready"
                    workload_pid = int(pid)
            assert init_pid is not None
            assert workload_pid is not None
            wait_catching(init_pid, [signal.SIGUSR1])
            assert not marker.exists()
            parent.kill()
            parent.wait(10)
            # The shell creates the file, then writes it: wait for the line.
            wait_for(
                lambda: marker.exists() and marker.read_text() == "USR1\n",
                10,
                "the marker of the forwarded SIGUSR1",
            )
        finally:
            kill_pids(workload_pid, init_pid)


# ---------------------------------------------------------------- -v / -q / -w


def test_own_messages_go_to_stderr_prefixed(mode: str) -> None:
    rc, out, err = run_init(
        ["-vv", "sh", "-c", "echo to-stdout; echo to-stderr >&2"], pid1=pid1(mode)
    )
    assert rc == 0
    assert out == "to-stdout\n"
    assert "to-stderr" in lines_of(err)
    assert_own_lines_prefixed(err, foreign=["to-stderr"])
    assert_no_traceback(err)


def test_verbose_shows_info_lines(mode: str) -> None:
    _, default_out, default_err = run_init(["sh", "-c", "exit 0"], pid1=pid1(mode))
    rc, out, err = run_init(["-v", "sh", "-c", "exit 0"], pid1=pid1(mode))
    assert rc == 0
    assert out == default_out == ""
    assert_own_lines_prefixed(err)
    assert any(re.search(r"start", line, re.I) for line in lines_of(err)), err
    assert not any(re.search(r"start", line, re.I) for line in lines_of(default_err))


def test_verbose_is_repeatable() -> None:
    _, _, once = run_init(["-v", *workload("cli_orphan.py")])
    _, _, twice = run_init(["-vv", "--verbose", *workload("cli_orphan.py")])
    assert_own_lines_prefixed(twice)
    assert len(lines_of(twice)) > len(lines_of(once)), (once, twice)


@pytest.mark.parametrize("flag", ["-q", "--quiet"])
def test_quiet_shows_no_warnings(flag: str) -> None:
    _, _, loud = run_init(["--no-subreaper", "true"])
    assert loud != ""  # there is a warning to suppress
    rc, out, err = run_init([flag, "--no-subreaper", "true"])
    assert (rc, out, err) == (0, "", "")


def test_exec_failure_message_is_on_stderr_only(mode: str) -> None:
    rc, out, err = run_init(["-v", "/nonexistent/program"], pid1=pid1(mode))
    assert rc == 127
    assert out == ""
    assert_own_lines_prefixed(err)


def run_with_orphans(args: Sequence[str], *, pid1: bool, count: int) -> tuple[list[int], str]:
    """Run the init over ``cli_orphan.py COUNT`` (after ``args``); (orphan PIDs, stderr).

    The orphans are reaped while the workload still runs: it ends (stdin
    closed) only once it is the init's last child.
    """
    with start_init(
        [*args, *workload("cli_orphan.py", str(count))], pid1=pid1, stdin=subprocess.PIPE
    ) as run:
        orphans = [int(pid) for pid in run.readline().split()]
        init = run.init_pid
        wait_for(lambda: len(children_of(init)) == 1, 10, "the orphans to be reaped")
        _, err = run.communicate(10)  # closes stdin: the workload ends
        assert run.proc.returncode == 0, err
    assert len(orphans) == count
    return orphans, err


@pytest.mark.parametrize("warn", [True, False])
def test_warn_reap_logs_each_reaped_orphan(mode: str, warn: bool) -> None:
    orphans, err = run_with_orphans(["-w"] if warn else [], pid1=pid1(mode), count=3)
    assert_own_lines_prefixed(err)
    for orphan in orphans:
        mentions = [line for line in lines_of(err) if re.search(rf"(?<!\d){orphan}(?!\d)", line)]
        assert len(mentions) == (1 if warn else 0), err
    if warn:
        assert len(lines_of(err)) == 3, err
    else:
        assert "reap" not in err.lower(), err


def test_warn_reap_long_flag() -> None:
    (orphan,), err = run_with_orphans(["--warn-reap"], pid1=False, count=1)
    assert len(lines_of(err)) == 1, err
    assert str(orphan) in err, err
    assert_own_lines_prefixed(err)


# ---------------------------------------------------------------- -s / --no-subreaper


@pytest.mark.parametrize("flags", [[], ["-s"], ["--subreaper"]])
def test_subreaper_by_default_when_not_pid1(flags: list[str]) -> None:
    orphan = None
    with start_init(
        [*flags, *workload("cli_orphan.py", "1", "60")], stdin=subprocess.PIPE
    ) as run:
        try:
            orphan = int(run.readline())
            assert proc_status(orphan)["PPid"] == str(run.init_pid)
        finally:
            kill_pids(orphan)
        _, err = run.communicate(10)  # closes stdin: the workload ends
        assert run.proc.returncode == 0, err
        assert "warning" not in err.lower(), err


def test_no_subreaper_leaves_orphans_to_others_and_warns() -> None:
    orphan = None
    with start_init(
        ["--no-subreaper", *workload("cli_orphan.py", "1", "60")], stdin=subprocess.PIPE
    ) as run:
        try:
            orphan = int(run.readline())
            assert proc_status(orphan)["PPid"] != str(run.init_pid)
        finally:
            kill_pids(orphan)
        _, err = run.communicate(10)  # closes stdin: the workload ends
        assert run.proc.returncode == 0, err
    lines = lines_of(err)
    assert lines, "no warning"
    assert_own_lines_prefixed(err)
    assert any("warning" in line.lower() for line in lines), err


@pytest.mark.pid1
def test_no_subreaper_as_pid1_still_reaps_and_does_not_warn() -> None:
    """``--no-subreaper`` only matters when not PID 1: PID 1 reaps every orphan."""
    (orphan,), err = run_with_orphans(["-w", "--no-subreaper"], pid1=True, count=1)
    assert len(lines_of(err)) == 1, err  # the -w line of the orphan, no warning
    assert str(orphan) in err, err


# ---------------------------------------------------------------- python -m nucleus_trio


@pytest.mark.parametrize(
    ("args", "expected_rc", "expected_out"),
    [
        (["sh", "-c", "echo via-m; exit 7"], 7, "via-m\n"),
        (["-e", "7", "--", "sh", "-c", "exit 7"], 0, ""),
        (["--version"], 0, f"nucleus-trio {dist_version('nucleus-trio')}\n"),
    ],
)
def test_python_dash_m_is_the_command(
    args: list[str], expected_rc: int, expected_out: str
) -> None:
    with started([sys.executable, "-m", "nucleus_trio", *args]) as proc:
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out.decode()) == (expected_rc, expected_out), err


def test_python_dash_m_usage_error() -> None:
    with started([sys.executable, "-m", "nucleus_trio", "--yolo"]) as proc:
        out, err = proc.communicate(timeout=30)
        assert_usage_error(proc.returncode, out.decode(), err.decode())
