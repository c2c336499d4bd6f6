"""Every flag's environment form, for where no flag can be given (docker's
and podman's ``--init``, a fixed Kubernetes entrypoint): ``NUCLEUS_TRIO_``
and the long flag in upper snake case. A flag wins over its variable, which
wins over the peers' variables; a bad value is a usage error naming the
variable; the variables still reach the workload."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nucleus_trio.config import OPTIONS, PEER_VARIABLES, Action, Config, UsageError, parse_args
from tests.support.launch import run_init

pytestmark = pytest.mark.timeout(60)

#: A value for every option's variable, and what it must set. A new flag
#: without a row here fails test_every_option_has_a_working_variable.
EXAMPLES: dict[str, tuple[str, dict[str, object]]] = {
    "--subreaper": ("1", {"subreaper": True}),
    "--no-subreaper": ("true", {"subreaper": False}),
    "--pgroup": ("1", {"pgroup": True}),
    "--single-child": ("yes", {"pgroup": False}),
    "--rewrite": ("HUP:TERM,USR1:0", {"rewrites": ((1, 15), (10, 0))}),
    "--remap-exit": ("143,3", {"remap_exit": frozenset({143, 3})}),
    "--pdeathsig": ("USR1", {"pdeathsig": 10}),
    "--pause": ("1", {"pause": True}),
    "--grace": ("1.5", {"grace": 1.5}),
    "--kill-after": ("10", {"kill_after": 10.0}),
    "--warn-reap": ("on", {"warn_reap": True}),
    "--audit": ("fd:3", {"audit": "fd:3"}),
    "--container-id": ("demo-7f3a", {"container_id": "demo-7f3a"}),
    "--container-name": ("web", {"container_name": "web"}),
    "--redact-args": ("1", {"redact_args": True}),
    "--clean-env": ("1", {"clean_env": True}),
    "--env": ("A=1\nB=x,y", {"env": (("A", "1"), ("B", "x,y"))}),
    "--sd-notify": ("1", {"sd_notify": True}),
    "--no-new-privs": ("1", {"no_new_privs": True}),
    "--user": ("0", {}),
    "--groups": ("0", {}),
    "--verbose": ("2", {"verbosity": 3}),
    "--quiet": ("1", {"verbosity": 0}),
}


def parsed(environ: dict[str, str], *flags: str, program: tuple[str, ...] = ("cmd",)) -> Config:
    action, config = parse_args([*flags, *program], environ)
    assert action == Action.RUN
    return config


def test_the_default_grace_is_3_seconds() -> None:
    assert parsed({}).grace == 3.0


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.kind != "action"], ids=str)
def test_every_option_has_a_working_variable(option: object) -> None:
    long = option.long  # type: ignore[attr-defined]
    variable = option.variable  # type: ignore[attr-defined]
    assert variable == "NUCLEUS_TRIO_" + long[2:].upper().replace("-", "_")
    value, expected = EXAMPLES[long]
    program = () if long == "--pause" else ("cmd",)
    config = parsed({variable: value}, program=program)
    for field, wanted in expected.items():
        assert getattr(config, field) == wanted, (variable, field)
    if long in ("--user", "--groups"):
        assert config.identity is not None
        assert (config.identity.uid if long == "--user" else config.identity.groups) in (0, (0,))


@pytest.mark.parametrize("value", ["0", "", "false", "No", "off"])
def test_a_switch_variable_can_say_off(value: str) -> None:
    config = parsed({"NUCLEUS_TRIO_PGROUP": value, "NUCLEUS_TRIO_CLEAN_ENV": value})
    assert (config.pgroup, config.clean_env) == (False, False)


def test_a_flag_wins_over_its_variable() -> None:
    environ = {
        "NUCLEUS_TRIO_GRACE": "1",
        "NUCLEUS_TRIO_REWRITE": "HUP:TERM",
        "NUCLEUS_TRIO_VERBOSE": "2",
        "NUCLEUS_TRIO_PGROUP": "1",
        "NUCLEUS_TRIO_ENV": "A=1",
    }
    config = parsed(environ, "-t", "2", "-r", "USR1:USR2", "-v", "-c", "--env", "B=2")
    assert config.grace == 2.0
    assert config.rewrites == ((10, 12),)  # the flag's alone, not added to the variable's
    assert config.verbosity == 2  # one -v, not 2 + 1
    assert config.pgroup is False
    assert config.env == (("B", "2"),)
    # Prefixes and clusters name the same options.
    config = parsed(environ, "--gra=4", "-vr", "INT:QUIT")
    assert (config.grace, config.verbosity, config.rewrites) == (4.0, 2, ((2, 3),))


def test_a_variable_wins_over_the_peers_variables() -> None:
    environ = {
        "TINI_VERBOSITY": "0",
        "NUCLEUS_TRIO_VERBOSE": "2",
        "TINI_KILL_PROCESS_GROUP": "1",
        "NUCLEUS_TRIO_SINGLE_CHILD": "1",
        "TINI_SUBREAPER": "",
        "NUCLEUS_TRIO_NO_SUBREAPER": "1",
    }
    config = parsed(environ)
    assert (config.verbosity, config.pgroup, config.subreaper) == (3, False, False)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NUCLEUS_TRIO_GRACE", "soon"),
        ("NUCLEUS_TRIO_KILL_AFTER", "-1"),
        ("NUCLEUS_TRIO_PGROUP", "maybe"),
        ("NUCLEUS_TRIO_VERBOSE", "-1"),
        ("NUCLEUS_TRIO_VERBOSE", "lots"),
        ("NUCLEUS_TRIO_REWRITE", "KILL:TERM"),
        ("NUCLEUS_TRIO_REMAP_EXIT", "143,x"),
        ("NUCLEUS_TRIO_PDEATHSIG", "SIGNOPE"),
        ("NUCLEUS_TRIO_ENV", "NOEQUALS"),
        ("NUCLEUS_TRIO_AUDIT", "fd:0"),
        ("NUCLEUS_TRIO_USER", "no-such-user-here"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(UsageError) as caught:
        parsed({variable: value})
    assert variable in str(caught.value)
    assert "\n" not in str(caught.value)
    # -h and -V still work, as with the peers' variables.
    assert parse_args(["-h"], {variable: value})[0] == Action.HELP


def test_contradicting_variables_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="NUCLEUS_TRIO_PGROUP and NUCLEUS_TRIO_SINGLE_CHILD"):
        parsed({"NUCLEUS_TRIO_PGROUP": "1", "NUCLEUS_TRIO_SINGLE_CHILD": "1"})


# --- with a real init -----------------------------------------------------------


def clean_environment(**variables: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in PEER_VARIABLES and not key.startswith("NUCLEUS_TRIO_")
    }
    return {**env, **variables}


def test_the_variables_configure_the_init_and_reach_the_workload(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    env = clean_environment(
        NUCLEUS_TRIO_AUDIT=str(audit),
        NUCLEUS_TRIO_CONTAINER_NAME="web",
        NUCLEUS_TRIO_REMAP_EXIT="3",
        NUCLEUS_TRIO_ENV="GREETING=hello, world",
    )
    code, out, err = run_init(
        ["sh", "-c", 'echo "$NUCLEUS_TRIO_CONTAINER_NAME|$GREETING"; exit 3'], env=env
    )
    assert code == 0, err  # -e 3 from NUCLEUS_TRIO_REMAP_EXIT
    assert out == "web|hello, world\n"
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert records and all(record["container_name"] == "web" for record in records)
    assert any(record["event_type"] == "container_stop" for record in records)


def test_a_bad_variable_is_exit_2_with_one_line_naming_it() -> None:
    env = clean_environment(NUCLEUS_TRIO_GRACE="soon")
    code, out, err = run_init(["true"], env=env)
    assert code == 2
    assert out == ""
    first = err.splitlines()[0]
    assert first.startswith("nucleus-trio: NUCLEUS_TRIO_GRACE:")
    assert "Traceback" not in err
