"""Sandboxes: a workload under nucleus-trio as PID 1 of its own PID namespace,
driven from trio and asyncio (README, "Sandboxes").

The real tests need root or unprivileged user namespaces; where neither is
available they are skipped with the reason (never in CI, which runs as root).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import jsonschema
import pytest

from nucleus_trio import kernel
from nucleus_trio.config import UsageError, flags_for
from nucleus_trio.namespaces import init_command, parse_report, plan_namespaces
from nucleus_trio.sandbox import Sandbox, SandboxError, open_sandbox
from tests.support.library import children, zombie_children
from tests.test_events import SCHEMA

BOTH = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
T = 60.0
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


def _can_sandbox() -> str | None:
    """Why sandboxes cannot be made here, or ``None``."""
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    return None if probe.returncode == 0 else probe.stderr.strip().splitlines()[-1:][0]


_PROBE = """
import trio
from nucleus_trio.sandbox import open_sandbox
async def main():
    async with open_sandbox(["true"]) as box:
        await box.wait()
trio.run(main)
"""

_WHY_NOT = _can_sandbox()
needs_sandbox = pytest.mark.skipif(
    _WHY_NOT is not None and not os.environ.get("CI"),
    reason=f"sandboxes cannot be made here: {_WHY_NOT}",
)


def pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def members(namespace: str) -> list[int]:
    """Every process of the host whose PID namespace is ``namespace``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and pid_namespace(int(name)) == namespace:
            found.append(int(name))
    return found


# -- decisions, no process -----------------------------------------------------


def test_the_caller_that_is_not_root_gets_a_user_namespace() -> None:
    assert plan_namespaces(1000, rootless=None, network="host", hostname=None).user
    assert not plan_namespaces(0, rootless=None, network="host", hostname=None).user
    assert plan_namespaces(0, rootless=True, network="host", hostname=None).user


def test_namespace_flags() -> None:
    plain = plan_namespaces(0, rootless=None, network="host", hostname=None)
    assert plain.flags == kernel.CLONE_NEWPID | kernel.CLONE_NEWNS
    full = plan_namespaces(5, rootless=None, network="none", hostname="box")
    assert full.flags & kernel.CLONE_NEWUSER and full.flags & kernel.CLONE_NEWNET
    assert full.flags & kernel.CLONE_NEWUTS


@pytest.mark.parametrize(
    ("network", "hostname"), [("bridge", None), ("host", ""), ("host", "x" * 65), ("host", "a\0")]
)
def test_bad_namespace_options_are_refused(network: str, hostname: str | None) -> None:
    with pytest.raises(ValueError, match=r"network|hostname"):
        plan_namespaces(0, rootless=None, network=network, hostname=hostname)


def test_the_relay_report_is_read() -> None:
    assert parse_report(b"pid 42\n") == (42, None)
    assert parse_report(b"pid 42\nerror mount-proc 1\n") == (42, ("mount-proc", 1))
    assert parse_report(b"error unshare 28\n") == (None, ("unshare", 28))
    assert parse_report(b"") == (None, None)


def test_a_refused_stage_says_what_and_why() -> None:
    error = SandboxError("unshare", 28)
    assert "cannot make the namespaces" in str(error) and "max_user_namespaces" in str(error)
    assert error.errno == 28 and error.stage == "unshare"
    assert "masked /proc" in str(SandboxError("mount-proc", 1))


def test_every_flag_has_its_keyword() -> None:
    flags = flags_for(
        {
            "grace": 1,
            "kill_after": 2.5,
            "pgroup": True,
            "rewrite": ["TERM:INT", "HUP:0"],
            "clean_env": True,
            "env": {"A": "1"},
            "no_new_privs": True,
            "verbose": 2,
            "container_id": "build-7",
            "remap_exit": [3],
            "warn_reap": False,
        }
    )
    assert flags == [
        "--grace", "1", "--kill-after", "2.5", "--pgroup",
        "--rewrite", "TERM:INT", "--rewrite", "HUP:0", "--clean-env", "--env", "A=1",
        "--no-new-privs", "--verbose", "--verbose", "--container-id", "build-7",
        "--remap-exit", "3",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"graec": 1}, "no option 'graec'"),
        ({"audit": "-"}, "no option 'audit'"),
        ({"grace": "soon"}, "seconds"),
        ({"rewrite": ["TERM"]}, "FROM:TO|rewrite"),
        ({"verbose": -1}, "count"),
    ],
)
def test_a_bad_keyword_is_a_usage_error(options: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        flags_for(options)


def test_the_init_runs_this_interpreter_isolated() -> None:
    command = init_command("/py", ["/lib"], ["--grace", "1"], 7, ["echo", "hi"])
    assert command[:4] == ["/py", "-I", "-S", "-c"]
    assert "sys.path[:0] = ['/lib']" in command[4]
    assert command[5:] == ["--grace", "1", "--audit", "fd:7", "--", "echo", "hi"]


# -- real sandboxes -------------------------------------------------------------


@needs_sandbox
@BOTH
@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["sh", "-c", "exit 3"], 3),
        (["sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM),
        (["no-such-program-here"], 127),
    ],
)
async def test_the_exit_code_is_the_workloads(
    anyio_backend: str, command: list[str], code: int
) -> None:
    with anyio.fail_after(T):
        async with open_sandbox(command) as box:
            status = await box.wait()
    assert status.code == code
    # The init's last word: container_stop, or exec_failed when there was no workload.
    last = box.records[-1]
    assert last["event_type"] == ("exec_failed" if code == 127 else "container_stop")
    assert last["exit_code"] == code


@needs_sandbox
@BOTH
async def test_the_workload_is_pid_2_of_its_own_namespace(anyio_backend: str) -> None:
    script = "echo $$; ls /proc | grep -c '^[0-9]'; hostname; cat /proc/1/cmdline | tr '\\0' ' '"
    with anyio.fail_after(T):
        async with open_sandbox(
            ["sh", "-c", script], hostname="box-1", stdout=subprocess.PIPE
        ) as box:
            assert box.stdout is not None
            out = b"".join([chunk async for chunk in box.stdout]).decode().split("\n")
            await box.wait()
    assert out[0] == "2"  # the init is 1
    assert int(out[1]) <= 4  # the init, sh, ls and grep: none of the host's processes
    assert out[2] == "box-1"
    assert "nucleus_trio" in out[3] and "--audit" in out[3]


@needs_sandbox
@BOTH
async def test_no_network_but_loopback(anyio_backend: str) -> None:
    probe = (
        "import socket\n"
        "print(sorted(name for _, name in socket.if_nameindex()))\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "client = socket.create_connection(server.getsockname())\n"
        "print('loopback up')\n"
    )
    with anyio.fail_after(T):
        async with open_sandbox(
            [sys.executable, "-c", probe], network="none", stdout=subprocess.PIPE
        ) as box:
            assert box.stdout is not None
            out = b"".join([chunk async for chunk in box.stdout]).decode()
            status = await box.wait()
    assert status.code == 0, out
    assert out.splitlines() == ["['lo']", "loopback up"]


@needs_sandbox
@BOTH
async def test_signals_are_forwarded_and_events_stream_in_order(anyio_backend: str) -> None:
    script = "trap 'echo got USR1; exit 7' USR1; echo ready; while :; do sleep 0.05; done"
    seen: list[str] = []
    with anyio.fail_after(T):
        async with open_sandbox(
            ["sh", "-c", script], stdout=subprocess.PIPE, container_name="signals"
        ) as box:

            async def follow() -> None:
                async for record in box.events():
                    jsonschema.validate(record, SCHEMA)
                    seen.append(record["event_type"])

            async with anyio.create_task_group() as group:
                group.start_soon(follow)
                assert box.stdout is not None
                assert (await box.stdout.receive_some()).startswith(b"ready")
                box.send_signal(signal.SIGUSR1)
                status = await box.wait()
    assert status.code == 7
    assert seen[0] == "init_supervisor_started" and seen[-1] == "container_stop"
    assert seen.index("container_exec") < seen.index("signal_forwarded")
    assert seen.index("signal_forwarded") < seen.index("workload_exited")
    assert all(r["container_name"] == "signals" for r in box.records)


# A workload that leaves a daemon (double fork, setsid, SIGTERM ignored), a
# process in a group of its own, and a zombie, then waits.
LEAVES_BEHIND = (
    "setsid sh -c 'trap \"\" TERM; sleep 600' & "
    "sh -c 'trap \"\" TERM; (trap \"\" TERM; exec sleep 600) & exec sleep 600' & "
    "sh -c 'sleep 0 & exec sleep 600' & "
    "echo ready; exec sleep 600"
)


@needs_sandbox
@BOTH
async def test_leaving_the_block_ends_every_process_of_the_namespace(anyio_backend: str) -> None:
    before = children()
    with anyio.fail_after(T):
        async with open_sandbox(
            ["sh", "-c", LEAVES_BEHIND], grace=0.3, stdout=subprocess.PIPE, margin=1.0
        ) as box:
            assert box.stdout is not None
            assert (await box.stdout.receive_some()).startswith(b"ready")
            namespace = box.pid_namespace
            assert namespace is not None
            while len(members(namespace)) < 8:  # the init, the workload, 6 left behind
                await anyio.sleep(0.02)
    assert members(namespace) == []
    assert children() - before == set() and zombie_children() == set()
    events = [r["event_type"] for r in box.records]
    assert "shutdown_terminate" in events and "shutdown_kill" in events


@needs_sandbox
@BOTH
async def test_a_workload_that_ignores_sigterm_ends_with_the_namespace(anyio_backend: str) -> None:
    with anyio.fail_after(T):
        async with open_sandbox(
            ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"],
            stdout=subprocess.PIPE,
            grace=0.2,
            margin=0.5,
        ) as box:
            assert box.stdout is not None
            assert (await box.stdout.receive_some()).startswith(b"ready")
            namespace = box.pid_namespace
    assert box.killed and box.status is not None and box.status.signal == signal.SIGKILL
    assert namespace is not None and members(namespace) == []


@needs_sandbox
@BOTH
async def test_cancellation_tears_the_sandbox_down(anyio_backend: str) -> None:
    namespaces: list[str] = []
    with anyio.fail_after(T):
        with anyio.move_on_after(1.0):
            async with open_sandbox(["sh", "-c", LEAVES_BEHIND], grace=0.2) as box:
                namespace = box.pid_namespace
                assert namespace is not None
                namespaces.append(namespace)
                await anyio.sleep_forever()
    assert namespaces and members(namespaces[0]) == []
    assert box.status is not None


@needs_sandbox
@BOTH
async def test_keyboard_interrupt_tears_the_sandbox_down(anyio_backend: str) -> None:
    namespaces: list[str] = []
    with pytest.raises(KeyboardInterrupt), anyio.fail_after(T):
        async with open_sandbox(["sh", "-c", LEAVES_BEHIND], grace=0.2) as box:
            namespace = box.pid_namespace
            assert namespace is not None
            namespaces.append(namespace)
            await anyio.sleep(0.3)
            raise KeyboardInterrupt
    assert namespaces and members(namespaces[0]) == []


@needs_sandbox
@BOTH
async def test_fifty_sandboxes_leave_nothing(anyio_backend: str) -> None:
    before = children()
    boxes: list[Sandbox] = []
    namespaces: set[str] = set()
    script = "sh -c 'sleep 0 & exec sleep 600' & setsid sh -c 'trap \"\" TERM; sleep 600' & exit 0"

    async def one(index: int) -> None:
        async with open_sandbox(["sh", "-c", script], grace=0.3, container_id=f"b{index}") as box:
            namespace = box.pid_namespace
            if namespace is not None:
                namespaces.add(namespace)
            await box.wait()
            boxes.append(box)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for index in range(50):
                group.start_soon(one, index)
    assert len(boxes) == 50 and all(box.status and box.status.code == 0 for box in boxes)
    assert not [pid for namespace in namespaces for pid in members(namespace)]
    assert children() - before == set() and zombie_children() == set()


#: What a sandbox imports, copied where ``nobody`` can read it (the
#: repository and this interpreter may live under /root).
_PACKAGES = (
    "nucleus_trio", "trio", "outcome", "sniffio", "sortedcontainers", "idna",
    "attr", "attrs", "anyio", "typing_extensions",
)  # fmt: skip

_ROOTLESS = r"""
# Run as nobody: every behaviour of the root tests, in rootless sandboxes,
# on both loops; one JSON line of findings per loop.
import json, os, signal, subprocess, sys, anyio
from nucleus_trio.sandbox import open_sandbox

LEAVES = (
    'setsid sh -c "trap \'\' TERM; sleep 600" & '
    "sh -c 'sleep 0 & exec sleep 600' & echo ready; exec sleep 600"
)

def members(namespace):
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.readlink(f"/proc/{name}/ns/pid") == namespace:
                found.append(int(name))
        except OSError:
            pass
    return found

async def ready(box):
    out = b""
    while b"ready" not in out:
        out += await box.stdout.receive_some()
    return out

async def main(found):
    for argv in (["sh", "-c", "exit 3"], ["sh", "-c", "kill -TERM $$"], ["no-such-program"]):
        async with open_sandbox(argv) as box:
            found["codes"].append((await box.wait()).code)
    script = "id -u; trap 'exit 7' USR1; echo ready; while :; do sleep 0.05; done"
    async with open_sandbox(["sh", "-c", script], stdout=subprocess.PIPE) as box:
        found["uid"] = (await ready(box)).split()[0].decode()
        box.send_signal(signal.SIGUSR1)
        found["signalled"] = (await box.wait()).code
    found["records"] = box.records
    spaces = []
    async with open_sandbox(["sh", "-c", LEAVES], grace=0.2, stdout=subprocess.PIPE) as box:
        await ready(box)
        spaces.append(box.pid_namespace)
    with anyio.move_on_after(0.5):
        async with open_sandbox(["sh", "-c", LEAVES], grace=0.2, stdout=subprocess.PIPE) as box:
            await ready(box)
            spaces.append(box.pid_namespace)
            await anyio.sleep_forever()
    try:
        async with open_sandbox(["sh", "-c", LEAVES], grace=0.2, stdout=subprocess.PIPE) as box:
            await ready(box)
            spaces.append(box.pid_namespace)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        found["interrupted"] = True
    ends = []

    async def one(index):
        script = (
            "sh -c 'sleep 0 & exec sleep 600' & "
            'setsid sh -c "trap \'\' TERM; sleep 600" & exit 0'
        )
        async with open_sandbox(["sh", "-c", script], grace=0.3) as box:
            spaces.append(box.pid_namespace)
            ends.append((await box.wait()).code)

    async with anyio.create_task_group() as group:
        for index in range(50):
            group.start_soon(one, index)
    found["fifty"] = ends
    found["namespaces"] = len([space for space in spaces if space])
    found["left"] = [pid for space in spaces if space for pid in members(space)]

for backend in ("trio", "asyncio"):
    found = {"backend": backend, "codes": []}
    anyio.run(main, found, backend=backend)
    print(json.dumps(found), flush=True)
"""


@needs_sandbox
def test_a_user_without_privilege_gets_a_rootless_sandbox() -> None:
    """As ``nobody``: a user namespace maps it to root inside; the exit codes,
    a forwarded signal, the events against the schema, the end of leftovers,
    cancellation, KeyboardInterrupt and 50 sandboxes at once, on both loops."""
    import importlib
    import shutil
    import tempfile

    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or system_python is None:
        pytest.skip("needs root (to become nobody) and a python3 in /usr/bin that nobody can run")
    where = Path(tempfile.mkdtemp(prefix="nt-rootless-", dir="/tmp"))
    try:
        where.chmod(0o755)
        for name in _PACKAGES:
            origin = Path(importlib.import_module(name).__file__ or "")
            if origin.name == "__init__.py":
                shutil.copytree(origin.parent, where / name, ignore=shutil.ignore_patterns("*.pyc"))
            else:
                shutil.copy(origin, where / origin.name)
        (where / "rootless.py").write_text(_ROOTLESS)
        for path in [where, *where.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        done = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             system_python, "-E", "-s", "-B", str(where / "rootless.py")],
            capture_output=True, text=True, timeout=150, check=False, cwd="/",
        )  # fmt: skip
    finally:
        shutil.rmtree(where, ignore_errors=True)
    if "are user namespaces enabled" in done.stderr:
        pytest.skip(f"unprivileged user namespaces are disabled here: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [run["backend"] for run in runs] == ["trio", "asyncio"]
    for run in runs:
        assert run["codes"] == [3, 128 + signal.SIGTERM, 127], run["codes"]
        assert run["uid"] == "0" and run["signalled"] == 7  # root inside, the signal forwarded
        events = [record["event_type"] for record in run["records"]]
        for record in run["records"]:
            jsonschema.validate(record, SCHEMA)
        assert events[0] == "init_supervisor_started" and events[-1] == "container_stop"
        assert events.index("signal_forwarded") < events.index("workload_exited")
        assert run["interrupted"] is True
        assert run["fifty"] == [0] * 50
        assert run["namespaces"] >= 3  # those that lived long enough to be read
        assert run["left"] == [], run["left"]


@needs_sandbox
def test_disabled_user_namespaces_are_a_clear_error() -> None:
    """Inside a user namespace whose limit of user namespaces is 0, a
    rootless sandbox is refused with a line that says what to check."""
    code = (
        "import trio\n"
        "from nucleus_trio.sandbox import open_sandbox, SandboxError\n"
        "async def main():\n"
        "    try:\n"
        "        async with open_sandbox(['true'], rootless=True):\n"
        "            pass\n"
        "    except SandboxError as exc:\n"
        "        print('refused:', exc)\n"
        "trio.run(main)\n"
    )
    shell = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {sys.executable} -c \"$0\""
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", shell, code],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: cannot make the namespaces (unshare)" in done.stdout, done.stdout
    assert "max_user_namespaces" in done.stdout
