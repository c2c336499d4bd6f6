"""Hardening flags: --clean-env, --env, --sd-notify, --no-new-privs, --user, --groups.

The workloads are ``/bin/cat /proc/self/environ`` and ``/bin/cat
/proc/self/status`` run directly by the init, so what they print is exactly
the workload's own state (no shell in between to add or drop anything).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.launch import init_command, run_init, start_init
from tests.support.procfs import proc_status

MINIMAL = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM": "xterm",
    "HOME": "/",
}
ENVIRON = ["--", "/bin/cat", "/proc/self/environ"]
STATUS = ["--", "/bin/cat", "/proc/self/status"]

#: The init's own environment in these tests: small and known.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/root",
    "FOO": "bar",
    "LD_LIBRARY_PATH": "/nonexistent",
    "LANG": "C.UTF-8",  # see test_inherited_env_without_locale_passes_unchanged
}


def _python_coerces_locale() -> bool:
    """Whether this Python adds LC_CTYPE to its environment (PEP 538) when
    started without any locale variable."""
    found = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('LC_CTYPE', ''))"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return bool(found.stdout.strip())


def _private_to_root(path: str) -> bool:
    """Whether another user is refused ``path`` (a directory on the way has no o+x)."""
    current = Path(path)
    if not os.stat(current).st_mode & 0o004:
        return True
    return any(not os.stat(parent).st_mode & 0o001 for parent in current.parents)


PYTHON_COERCES_LOCALE = _python_coerces_locale()
#: The standard library cannot be read by other users (Python under /root).
STDLIB_PRIVATE = _private_to_root(str(warnings.__file__))

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="changing the workload's identity needs root (CI runs as root)"
)


def environ_of(
    args: Sequence[str], env: dict[str, str], *, pid1: bool = False
) -> tuple[int, dict[str, str], str]:
    """Run ``/bin/cat /proc/self/environ`` under the init: (code, environ, stderr)."""
    code, out, err = run_init([*args, *ENVIRON], env=env, pid1=pid1)
    assert "Traceback" not in err
    pairs = [item.partition("=") for item in out.split("\0") if item]
    return code, {key: value for key, _, value in pairs}, err


def status_of(args: Sequence[str], *, pid1: bool = False) -> tuple[int, dict[str, str], str]:
    """Run ``/bin/cat /proc/self/status`` under the init: (code, fields, stderr)."""
    code, out, err = run_init([*args, *STATUS], pid1=pid1)
    assert "Traceback" not in err
    return code, parse_status(out), err


def parse_status(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def ids(value: str) -> list[int]:
    return [int(part) for part in value.split()]


def assert_usage_error(code: int, err: str, *words: str) -> None:
    """Exit 2, a one-line reason (then the usage), never a traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith("nucleus-trio: "), err
    for word in words:
        assert word in first, (word, first)
    assert "usage:" in err


def run_detached(command: Sequence[str], timeout: float = 30.0) -> tuple[int, str, str]:
    """Run a command in its own session; kill that session on the way out."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


# ------------------------------------------------------------ environment


def test_clean_env_is_minimal_plus_env(mode: str) -> None:
    env = {**BASE_ENV, "LD_PRELOAD": "", "NOTIFY_SOCKET": "@ntrio-test"}
    code, seen, _ = environ_of(
        ["--clean-env", "--env", "A=1", "--env", "B=two words", "--env", "EMPTY="],
        env,
        pid1=mode == "pid1",
    )
    assert code == 0
    assert seen == {**MINIMAL, "A": "1", "B": "two words", "EMPTY": ""}


def test_clean_env_env_overrides_the_base() -> None:
    code, seen, _ = environ_of(["--clean-env", "--env", "HOME=/home/app"], BASE_ENV)
    assert code == 0
    assert seen == {**MINIMAL, "HOME": "/home/app"}


def test_inherited_env_passes_unchanged(mode: str) -> None:
    env = {**BASE_ENV, "NOTIFY_SOCKET": "@ntrio-test"}
    code, seen, _ = environ_of(["--env", "FOO=baz", "--env", "NEW=1"], env, pid1=mode == "pid1")
    assert code == 0
    expected = {**BASE_ENV, "FOO": "baz", "NEW": "1"}  # NOTIFY_SOCKET aside
    assert seen == expected
    assert seen["LD_LIBRARY_PATH"] == "/nonexistent"  # only --clean-env filters it


def test_inherited_env_without_locale_passes_unchanged() -> None:
    env = {"PATH": "/usr/bin:/bin", "FOO": "bar"}
    code, seen, _ = environ_of([], env)
    assert code == 0
    assert seen == env


@pytest.mark.parametrize("variable", ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"])
def test_loader_variable_with_clean_env_is_usage_error(variable: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code, _, err = run_init(
        ["--clean-env", "--env", f"{variable}=x", "--", "/bin/touch", str(marker)]
    )
    assert_usage_error(code, err, variable)
    assert not marker.exists()


@pytest.mark.parametrize("assignment", ["NOEQUALS", "=value"])
def test_bad_env_is_usage_error(assignment: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code, _, err = run_init(["--env", assignment, "--", "/bin/touch", str(marker)])
    assert_usage_error(code, err)
    assert not marker.exists()


# ------------------------------------------------------------ NOTIFY_SOCKET


@pytest.mark.parametrize(
    ("inherited", "flags", "passes"),
    [
        ("@abstract", ["--sd-notify"], True),
        ("/run/ntrio-missing/x.sock", ["--sd-notify"], True),
        ("/var/run/ntrio-missing/x.sock", ["--sd-notify"], True),
        ("@abstract", ["--sd-notify", "--clean-env"], True),
        ("/tmp/x.sock", ["--sd-notify"], False),
        ("/run/../tmp/x.sock", ["--sd-notify"], False),
        ("run/x.sock", ["--sd-notify"], False),
        ("@abstract", [], False),
        ("@abstract", ["--clean-env"], False),
        ("/run/x.sock", [], False),
    ],
)
def test_notify_socket_inherited(
    inherited: str, flags: list[str], passes: bool, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    code, seen, err = environ_of(
        ["--audit", str(audit), *flags], {**BASE_ENV, "NOTIFY_SOCKET": inherited}
    )
    assert code == 0  # the workload runs either way
    events = [json.loads(line)["event_type"] for line in audit.read_text().splitlines()]
    if passes:
        assert seen.get("NOTIFY_SOCKET") == inherited
        assert "notify_socket_dropped" not in events
        return
    assert "NOTIFY_SOCKET" not in seen
    if "--sd-notify" in flags:
        # Asked for and refused: said on stderr and in the audit trail.
        assert "NOTIFY_SOCKET" in err and "warning" in err, err
        assert events.count("notify_socket_dropped") == 1, events
    else:
        assert "NOTIFY_SOCKET" not in err


def test_notify_socket_symlink_out_of_run(tmp_path: Path) -> None:
    """A path under /run whose symlink leads elsewhere is dropped."""
    link = Path(f"/run/ntrio-test-link-{os.getpid()}")
    try:
        link.symlink_to("/tmp")
    except OSError as exc:
        pytest.skip(f"cannot make a symlink in /run: {exc}")
    try:
        audit = tmp_path / "audit.jsonl"
        value = f"{link}/x.sock"
        code, seen, err = environ_of(
            ["--sd-notify", "--audit", str(audit)], {**BASE_ENV, "NOTIFY_SOCKET": value}
        )
        assert code == 0
        assert "NOTIFY_SOCKET" not in seen
        assert "warning" in err and "NOTIFY_SOCKET" in err, err
        records = [json.loads(line) for line in audit.read_text().splitlines()]
        dropped = [r for r in records if r["event_type"] == "notify_socket_dropped"]
        assert len(dropped) == 1, records
        assert value in dropped[0]["detail"]
    finally:
        link.unlink()


@pytest.mark.parametrize("clean", [False, True])
def test_notify_socket_env_needs_sd_notify(clean: bool, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code, _, err = run_init(
        [
            *(["--clean-env"] if clean else []),
            "--env",
            "NOTIFY_SOCKET=@x",
            "--",
            "/bin/touch",
            str(marker),
        ]
    )
    assert_usage_error(code, err, "NOTIFY_SOCKET")
    assert not marker.exists()


@pytest.mark.parametrize("clean", [False, True])
def test_notify_socket_env_with_sd_notify(clean: bool) -> None:
    code, seen, _ = environ_of(
        [*(["--clean-env"] if clean else []), "--sd-notify", "--env", "NOTIFY_SOCKET=@x"],
        {**BASE_ENV, "NOTIFY_SOCKET": "@inherited"},
    )
    assert code == 0
    assert seen["NOTIFY_SOCKET"] == "@x"  # --env wins over the inherited one
    if clean:
        assert seen == {**MINIMAL, "NOTIFY_SOCKET": "@x"}


# ------------------------------------------------------------ no_new_privs


@pytest.mark.parametrize(("flags", "value"), [(["--no-new-privs"], "1"), ([], "0")])
def test_no_new_privs(flags: list[str], value: str) -> None:
    code, status, _ = status_of(flags)
    assert code == 0
    assert status["NoNewPrivs"] == value


# ------------------------------------------------------------ identity


@needs_root
def test_user_nobody_drops_every_group() -> None:
    """--user nobody: uid and primary gid from passwd, no supplementary
    group, even though the init itself has some."""
    nobody = pwd.getpwnam("nobody")
    with_groups = ["setpriv", "--groups", "4,24", "--", *init_command()]
    code, out, err = run_detached([*with_groups, *STATUS])
    assert code == 0, err
    assert ids(parse_status(out)["Groups"]) == [4, 24]  # what the init has
    code, out, err = run_detached([*with_groups, "--user", "nobody", *STATUS])
    assert code == 0, err
    status = parse_status(out)
    assert ids(status["Uid"]) == [nobody.pw_uid] * 4
    assert ids(status["Gid"]) == [nobody.pw_gid] * 4
    assert status["Groups"] == ""


@needs_root
def test_user_nobody_in_each_mode(mode: str) -> None:
    nobody = pwd.getpwnam("nobody")
    code, status, err = status_of(["--user", "nobody"], pid1=mode == "pid1")
    assert code == 0, err
    assert ids(status["Uid"]) == [nobody.pw_uid] * 4
    assert ids(status["Gid"]) == [nobody.pw_gid] * 4
    assert status["Groups"] == ""


@needs_root
def test_user_and_groups_by_number() -> None:
    code, status, err = status_of(["--user", "1234:2345", "--groups", "3456,4567"])
    assert code == 0, err
    assert ids(status["Uid"]) == [1234] * 4
    assert ids(status["Gid"]) == [2345] * 4
    assert ids(status["Groups"]) == [3456, 4567]


@needs_root
def test_user_and_group_by_name() -> None:
    try:
        import grp

        nogroup = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no group named nogroup here")
    nobody = pwd.getpwnam("nobody")
    code, status, err = status_of(["--user", "nobody:nogroup", "--groups", "nogroup"])
    assert code == 0, err
    assert ids(status["Uid"]) == [nobody.pw_uid] * 4
    assert ids(status["Gid"]) == [nogroup] * 4
    assert ids(status["Groups"]) == [nogroup]


def _no_passwd_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False


@pytest.mark.parametrize(
    ("flags", "word"),
    [
        (["--user", "ntrio-no-such-user"], "ntrio-no-such-user"),
        (["--user", "1234"], "1234"),
        (["--user", "nobody:ntrio-no-such-group"], "ntrio-no-such-group"),
        (["--user", "nobody", "--groups", "ntrio-no-such-group"], "ntrio-no-such-group"),
    ],
)
def test_bad_identity_is_usage_error(flags: list[str], word: str, tmp_path: Path) -> None:
    if flags[1] == "1234" and not _no_passwd_entry(1234):
        pytest.skip("uid 1234 has a passwd entry here")
    marker = tmp_path / "ran"
    code, _, err = run_init([*flags, "--", "/bin/touch", str(marker)])
    assert_usage_error(code, err, word)
    assert not marker.exists()


@needs_root
def test_init_itself_stays_root() -> None:
    with start_init(
        ["--user", "nobody", "--", "/bin/sh", "-c", "echo ready; exec sleep 60"]
    ) as run:
        assert run.readline(20) == "ready\n"
        init = proc_status(run.init_pid)
        work = proc_status(run.workload_pid())
        assert ids(init["Uid"]) == [0] * 4
        assert ids(init["Gid"]) == [0] * 4
        assert ids(work["Uid"]) == [65534] * 4
        run.send(signal.SIGTERM)
        assert run.wait(20) == 128 + signal.SIGTERM


# ------------------------------------------------------------ exec failures


@needs_root
@pytest.mark.parametrize(
    ("program", "expected"),
    [
        ("/nonexistent/program", 127),
        ("PRIVATE", 126),  # a file only root may reach
    ],
)
def test_exec_failures_keep_their_codes(program: str, expected: int, tmp_path: Path) -> None:
    if program == "PRIVATE":
        script = tmp_path / "private.sh"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
        tmp_path.chmod(0o700)
        program = str(script)
        assert run_init(["--", program])[0] == 0  # root may run it
    flags = ["--user", "nobody", "--clean-env", "--no-new-privs", "--env", "A=1"]
    code, _, err = run_init([*flags, "--", program])
    assert code == expected, err
    assert "Traceback" not in err
    assert f"cannot run '{program}'" in err


def test_exec_failure_codes_without_identity() -> None:
    code, _, err = run_init(["--clean-env", "--no-new-privs", "--", "/nonexistent/program"])
    assert code == 127, err
    assert "Traceback" not in err


@needs_root
@pytest.mark.parametrize(("program", "expected"), [("id", 0), ("ntrio-no-such-program", 127)])
def test_user_with_path_search(program: str, expected: int) -> None:
    code, out, err = run_init(["--user", "nobody", "--", program])
    assert code == expected, err
    if expected == 0:
        assert out.startswith("uid=65534")
    else:
        assert f"cannot run '{program}': No such file or directory" in err
