"""The installed command's interpreter is isolated from the image's Python
variables, and the workload still gets every one of them (README, "In a
Dockerfile").

Before the launcher ran ``python -I``, an app-local ``trio.py`` on
PYTHONPATH made the init die after the spawn, and a PYTHONHOME of another
Python killed it before the workload ran ("Fatal Python error", exit 1).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.support.launch import pidns_available, run_init, start_init

MODES = pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])

pytestmark = pytest.mark.timeout(60)

#: What a Python image may set, and what each would do to an init that let it in.
HOSTILE = {
    "PYTHONPATH": "",  # set by the fixture: a folder shadowing trio, anyio, attrs
    "PYTHONHOME": "/nonexistent-python-home",
    "PYTHONSTARTUP": "",  # a file that raises
    "PYTHONINSPECT": "1",
    "PYTHONWARNINGS": "error",
    "PYTHONSAFEPATH": "1",
    "PYTHONUSERBASE": "",  # a user site shadowing trio
    "PYTHONDEVMODE": "1",
    "PYTHONMALLOC": "debug",
}

#: The workload prints each variable as it received it.
SHOW = "for v in " + " ".join(HOSTILE) + '; do eval "echo $v=\\${$v-UNSET}"; done'


@pytest.fixture
def hostile_env(tmp_path: Path) -> dict[str, str]:
    shadow = tmp_path / "app"
    shadow.mkdir()
    for module in ("trio", "anyio", "attrs", "signal_", "nucleus_trio"):
        (shadow / f"{module}.py").write_text(f"raise SystemExit('shadow {module} imported')\n")
    startup = tmp_path / "startup.py"
    startup.write_text("raise SystemExit('PYTHONSTARTUP ran')\n")
    userbase = tmp_path / "userbase"
    site = userbase / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (site / "site-packages").mkdir(parents=True)
    (site / "site-packages" / "trio.py").write_text("raise SystemExit('user site trio')\n")
    env = dict(os.environ)
    env.update(HOSTILE)
    env["PYTHONPATH"] = str(shadow)
    env["PYTHONSTARTUP"] = str(startup)
    env["PYTHONUSERBASE"] = str(userbase)
    return env


def expected_lines(env: dict[str, str]) -> list[str]:
    return [f"{name}={env[name]}" for name in HOSTILE]


@MODES
def test_the_workload_gets_the_variables_and_the_init_ignores_them(
    pid1: bool, hostile_env: dict[str, str]
) -> None:
    if pid1 and not pidns_available():
        pytest.skip("needs root and unshare for a PID namespace")
    code, out, err = run_init(["--", "sh", "-c", SHOW + "; exit 7"], pid1=pid1, env=hostile_env)
    assert code == 7, err
    assert out.splitlines() == expected_lines(hostile_env)
    assert err == ""


@MODES
def test_a_signal_is_forwarded_with_trio_shadowed(pid1: bool, hostile_env: dict[str, str]) -> None:
    # The forwarding path needs trio: a shadow on PYTHONPATH would end the
    # init after the spawn (exit 70), or kill it at start (PYTHONHOME).
    if pid1 and not pidns_available():
        pytest.skip("needs root and unshare for a PID namespace")
    script = "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done"
    with start_init(["--", "sh", "-c", script], pid1=pid1, env=hostile_env) as run:
        assert run.readline(30) == "ready\n"
        run.send(signal.SIGTERM)
        out, err = run.communicate(30)
        assert run.proc.returncode == 42, err
    assert "got TERM" in out
    assert "shadow" not in err and "Traceback" not in err


def test_the_installed_launcher_starts_the_interpreter_isolated() -> None:
    # The launcher's -I is the only difference from `python -m nucleus_trio`:
    # the same code runs behind both.
    launcher = Path(sys.executable).parent / "nucleus-trio"
    if not launcher.exists():
        pytest.skip("nucleus-trio is not installed beside this interpreter")
    text = launcher.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert ' -I -S "$self" "$@"' in text


def test_a_venv_moved_elsewhere_still_runs_its_command(tmp_path: Path) -> None:
    # A multi-stage build copies the venv to another path: the command must
    # find the Python beside it, not the one named when it was installed.
    import site
    import subprocess
    import venv

    launcher = Path(sys.executable).parent / "nucleus-trio"
    if not launcher.exists():
        pytest.skip("nucleus-trio is not installed beside this interpreter")
    built = tmp_path / "built"
    venv.EnvBuilder(symlinks=True, with_pip=False).create(built)
    packages = next(built.glob("lib/python3.*/site-packages"))
    # This run's packages (and the editable source) stand in for an install.
    adds = "".join(f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages())
    (packages / "here.pth").write_text(adds)
    (built / "bin" / "nucleus-trio").write_bytes(launcher.read_bytes())
    (built / "bin" / "nucleus-trio").chmod(0o755)
    moved = tmp_path / "moved"
    built.rename(moved)
    done = subprocess.run(
        [str(moved / "bin" / "nucleus-trio"), "--", "sh", "-c", "exit 4"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 4, done.stderr
    assert done.stderr == b""


# -- what the shell preamble changes, undone -----------------------------------


def test_undo_the_shell_by_sizes() -> None:
    from nucleus_trio.environment import undo_the_shell

    given = {b"A": b"1", b"PWD": b"/srv"}  # what the init received
    # The shell was given A=1 alone (4 bytes): its PWD goes.
    assert undo_the_shell(given, 4) == (True, 0)
    # It was given both (13 bytes): PWD was inherited, and stays.
    assert undo_the_shell(given, 13) == (False, 0)
    # It was given A=1 and my.var=2 (13 bytes too, but no PWD to blame): the
    # sizes say PWD was inherited and nothing lost... unless PWD is absent.
    assert undo_the_shell({b"A": b"1"}, 13) == (False, 9)
    # A=1 and my.var=2, no PWD (13): the shell added PWD and dropped 9 bytes.
    assert undo_the_shell({b"A": b"1", b"PWD": b"/x"}, 13) == (False, 9)


@pytest.mark.parametrize(
    "given",
    [
        {"PATH": "/usr/bin:/bin", "A": "1"},
        {"PATH": "/usr/bin:/bin", "A": "1", "PWD": "/"},
        {"PATH": "/usr/bin:/bin", "PWD": "/nonexistent-but-given"},
    ],
    ids=["no PWD", "PWD inherited", "PWD inherited, stale"],
)
def test_the_workload_gets_exactly_the_environment_given(given: dict[str, str]) -> None:
    code, out, err = run_init(["--", "/usr/bin/env"], env=given, cwd="/")
    assert code == 0, err
    seen = dict(line.split("=", 1) for line in out.splitlines())
    if given.get("PWD") == "/nonexistent-but-given":
        # The shell replaces a PWD that is not the working directory: the
        # sizes no longer match, and the init keeps what it was given.
        given = {**given, "PWD": "/"}
    assert seen == given


def test_a_name_no_shell_can_pass_is_named_in_a_warning() -> None:
    code, out, err = run_init(
        ["--", "/usr/bin/env"], env={"PATH": "/usr/bin:/bin", "my.var": "1"}, cwd="/"
    )
    assert code == 0
    assert "my.var" not in out
    assert "warning: the command's /bin/sh preamble passed on 9 bytes less environment" in err
