"""The peers' environment variables: an image that set them keeps its settings.

tini reads ``TINI_SUBREAPER``, ``TINI_KILL_PROCESS_GROUP`` (both presence
tests) and ``TINI_VERBOSITY``; dumb-init ``DUMB_INIT_DEBUG=1`` and
``DUMB_INIT_SETSID``; catatonit ``CATATONIT_DEBUG``. The flags win over them.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from nucleus_trio.config import PEER_VARIABLES, Action, Config, UsageError, parse_args
from tests.support.launch import run_init, start_init, workload
from tests.support.procfs import children_of


def parsed(environ: dict[str, str], *flags: str) -> Config:
    action, config = parse_args([*flags, "cmd"], environ)
    assert action == Action.RUN
    return config


def environment(**variables: str) -> dict[str, str]:
    """The test run's environment without any peer variable, plus ``variables``."""
    unset = (*PEER_VARIABLES, "DUMB_INIT_SETSID")
    env = {key: value for key, value in os.environ.items() if key not in unset}
    return {**env, **variables}


# --- the decision, without a process -------------------------------------------


@pytest.mark.parametrize("value", ["1", "0", "", "no"])
def test_tini_switches_are_presence_tests(value: str) -> None:
    config = parsed({"TINI_SUBREAPER": value, "TINI_KILL_PROCESS_GROUP": value})
    assert config.subreaper is True
    assert config.pgroup is True


def test_flags_win_over_the_variables() -> None:
    environ = {"TINI_SUBREAPER": "1", "TINI_KILL_PROCESS_GROUP": "1", "TINI_VERBOSITY": "3"}
    config = parsed(environ, "--no-subreaper", "-c", "-q")
    assert (config.subreaper, config.pgroup, config.verbosity) == (False, False, 0)


@pytest.mark.parametrize(
    ("value", "level"),
    [("0", 0), ("1", 1), ("2", 2), ("3", 3), (" 2 ", 2), ("7", 3), ("-1", 0), ("+2", 2)],
)
def test_tini_verbosity_is_a_level(value: str, level: int) -> None:
    assert parsed({"TINI_VERBOSITY": value}).verbosity == level
    assert parsed({"TINI_VERBOSITY": value}, "-v").verbosity == level + 1


@pytest.mark.parametrize("value", ["", "abc", "1.5", "0x2", "two"])
def test_bad_tini_verbosity_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="TINI_VERBOSITY") as caught:
        parse_args(["cmd"], {"TINI_VERBOSITY": value})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("flag", ["-h", "-V"])
def test_bad_tini_verbosity_does_not_stop_help_or_version(flag: str) -> None:
    action, _ = parse_args([flag], {"TINI_VERBOSITY": "abc"})
    assert action in (Action.HELP, Action.VERSION)


@pytest.mark.parametrize(
    ("environ", "level"),
    [
        ({"DUMB_INIT_DEBUG": "1"}, 3),
        ({"DUMB_INIT_DEBUG": "0"}, 1),
        ({"DUMB_INIT_DEBUG": "true"}, 1),  # dumb-init only takes "1"
        ({"CATATONIT_DEBUG": ""}, 3),
        ({"CATATONIT_DEBUG": "1", "TINI_VERBOSITY": "2"}, 2),  # tini's is the precise one
    ],
)
def test_debug_switches(environ: dict[str, str], level: int) -> None:
    assert parsed(environ).verbosity == level


def test_dumb_init_setsid_0_asks_for_the_default() -> None:
    assert parsed({"DUMB_INIT_SETSID": "0"}) == parsed({}) == parse_args(["cmd"])[1]
    assert parsed({"DUMB_INIT_SETSID": "0"}).pgroup is False


def test_other_variables_change_nothing() -> None:
    assert parsed({"TINI": "1", "tini_subreaper": "1", "TINI_MINIMAL": "1"}) == parsed({})


# --- the real command ----------------------------------------------------------


def test_tini_kill_process_group_reaches_the_whole_group(mode: str) -> None:
    """As ``-g``: the workload's grandchild in its group gets the signal too."""
    env = environment(TINI_KILL_PROCESS_GROUP="1")
    with start_init(workload("sig_group.py"), pid1=mode == "pid1", env=env) as run:
        assert run.readline().startswith("ready")
        assert len(children_of(run.workload_pid())) == 1
        run.send(signal.SIGUSR1)
        got = {run.readline(5).strip(), run.readline(5).strip()}
        assert got == {"child 10", "grandchild 10"}
        run.send(signal.SIGTERM)
        assert run.wait(10) == 3


def test_single_child_flag_wins_over_tini_kill_process_group() -> None:
    env = environment(TINI_KILL_PROCESS_GROUP="1")
    with start_init(["-c", *workload("sig_group.py")], env=env) as run:
        assert run.readline().startswith("ready")
        (grandchild,) = children_of(run.workload_pid())
        run.send(signal.SIGUSR1)
        assert run.readline(5).strip() == "child 10"
        # Had the grandchild got the SIGUSR1 (sent earlier), it would say so first.
        os.kill(grandchild, signal.SIGUSR2)
        assert run.readline(5).strip() == "grandchild 12"
        run.send(signal.SIGTERM)
        assert run.wait(10) == 3


def test_tini_verbosity_sets_the_logging_level() -> None:
    _, _, default = run_init(["sh", "-c", "exit 0"], env=environment())
    _, _, flags = run_init(["-vv", "sh", "-c", "exit 0"], env=environment())
    rc, out, err = run_init(["sh", "-c", "exit 0"], env=environment(TINI_VERBOSITY="3"))
    assert (rc, out) == (0, "")
    assert len(err.splitlines()) == len(flags.splitlines()) > len(default.splitlines())
    # Level 0 hides the warning that --no-subreaper gives when not PID 1.
    _, _, warned = run_init(["--no-subreaper", "true"], env=environment(TINI_SUBREAPER="1"))
    assert "warning" in warned.lower()  # the flag won over TINI_SUBREAPER
    quiet = run_init(["--no-subreaper", "true"], env=environment(TINI_VERBOSITY="0"))
    assert quiet == (0, "", "")


def test_bad_tini_verbosity_exits_2_with_one_line() -> None:
    rc, out, err = run_init(["true"], env=environment(TINI_VERBOSITY="loud"))
    assert (rc, out) == (2, "")
    first, *rest = err.splitlines()
    assert first.startswith("nucleus-trio: ") and "TINI_VERBOSITY" in first, err
    assert rest[:1] and rest[0].startswith("usage: "), err
    assert "Traceback" not in err
    rc, out, _ = run_init(["-V"], env=environment(TINI_VERBOSITY="loud"))
    assert rc == 0 and out.startswith("nucleus-trio ")


def test_the_variables_still_reach_the_workload() -> None:
    """They are the image's settings, not the init's to remove (tini keeps them)."""
    env = environment(TINI_SUBREAPER="", DUMB_INIT_SETSID="0")
    rc, out, _ = run_init(
        ["sh", "-c", 'echo "${TINI_SUBREAPER-unset} $DUMB_INIT_SETSID"'],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert (rc, out) == (0, " 0\n")
