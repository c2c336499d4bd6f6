"""The audit trail (``--audit``): its records, destinations and faulty sinks.

Every test runs the real init (as PID 1 of a new namespace or as subreaper)
with real workloads; every line an init writes to an audit destination is
validated against ``audit.schema.json``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.support.launch import Init, Lines, run_init, start_init, workload
from tests.support.procfs import children_of, proc_status, wait_for

SCHEMA: dict[str, Any] = json.loads(
    resources.files("nucleus_trio").joinpath("audit.schema.json").read_text()
)
Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = Draft202012Validator(SCHEMA)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
DROPPED_LINE = re.compile(r"nucleus-trio: .*?(\d+) audit events? (?:were|was) dropped")
SIGRTMIN_3 = signal.SIGRTMIN + 3

Record = dict[str, Any]


# ---------------------------------------------------------------- helpers


def parse_audit(text: str, *, since: float | None = None) -> list[Record]:
    """Parse JSON lines; each must validate and carry an RFC 3339 UTC timestamp."""
    records: list[Record] = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        errors = [error.message for error in VALIDATOR.iter_errors(record)]
        assert not errors, f"{line}: {errors}"
        stamp = record["timestamp"]
        assert TIMESTAMP.match(stamp), stamp
        assert stamp.endswith("Z")
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        if since is not None:
            # UTC, not local time: it matches the clock within a few seconds.
            assert since - 2 <= when.timestamp() <= time.time() + 2, stamp
        records.append(record)
    return records


def json_lines(text: str) -> str:
    """The lines of ``text`` that look like JSON objects (the rest is output)."""
    return "".join(line + "\n" for line in text.splitlines() if line.startswith("{"))


def of_type(records: list[Record], event_type: str) -> list[Record]:
    return [record for record in records if record["event_type"] == event_type]


def one(records: list[Record], event_type: str) -> Record:
    found = of_type(records, event_type)
    assert len(found) == 1, (event_type, [r["event_type"] for r in records])
    return found[0]


def stdout_lines(run: Init) -> Lines:
    """The workload's stdout, line by line, decoded strictly."""
    assert run.proc.stdout is not None
    return Lines(run.proc.stdout.fileno(), errors="strict")


def read_to_eof(fd: int, timeout: float = 20.0) -> str:
    """The lines left in a pipe whose writers are (or will soon be) closed,
    empty ones dropped, each ended by a newline."""
    text = Lines(fd, errors="strict").read_to_eof(timeout)
    return "".join(line + "\n" for line in text.split("\n") if line)


def exchange(run: Init, lines: Lines, signo: int, echoed: int | None = None) -> None:
    """Send ``signo`` to the init and see the workload print what it got."""
    run.send(signo)
    assert lines.readline(20, keepends=False) == str(echoed if echoed is not None else signo)


@contextmanager
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe whose two ends are closed on the way out (if still open)."""
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        for fd in (read_end, write_end):
            try:
                os.close(fd)
            except OSError:
                pass


def dropped_reported(stderr: str) -> int:
    """The count of the init's 'audit events were dropped' line at exit."""
    found = DROPPED_LINE.findall(stderr)
    assert found, f"no line about dropped audit events in stderr: {stderr[-2000:]!r}"
    return int(found[-1])


def outside_pid(init_pid: int, ns_pid: int) -> int:
    """The PID, as the test sees it, of the init's child whose own PID is ``ns_pid``.

    Not the lowest child PID: with many orphans, PIDs may wrap around.
    """
    for kid in children_of(init_pid):
        try:
            nspid = proc_status(kid)["NSpid"].split()
        except (OSError, KeyError):
            continue
        if int(nspid[-1]) == ns_pid:
            return kid
    raise AssertionError(f"no child of {init_pid} is {ns_pid} in its namespace")


def wait_reaped(init_pid: int, outside: int, timeout: float, what: str) -> None:
    """Wait until the workload is the init's only child: every orphan reaped."""
    last: list[int] = []

    def only_workload() -> bool:
        last[:] = children_of(init_pid)
        return last == [outside]

    try:
        wait_for(only_workload, timeout, what)
    except AssertionError as exc:
        states = {}
        for kid in last[:20]:
            try:
                states[kid] = proc_status(kid)["State"]
            except OSError:
                states[kid] = "gone"
        raise AssertionError(f"{exc}: workload {outside}, children {states}") from None


def busy_argv(orphans: int, code: int) -> list[str]:
    return workload("audit_busy.py", str(orphans), str(code))


# ----------------------------------------------------------- the records


def test_audit_records_of_a_run(mode: str, tmp_path: Path) -> None:
    """Start, exec, no_new_privs, forwarded (plain, rewritten, realtime),
    reaped orphans and the stop of a workload that exits non-zero."""
    audit = tmp_path / "audit.jsonl"
    since = time.time()
    argv = busy_argv(3, 5)
    args = [
        "--audit", str(audit), "--container-id", "cid-42", "--container-name", "web",
        "--no-new-privs", "-r", "TERM:USR1", "--", *argv,
    ]  # fmt: skip
    with start_init(args, pid1=mode == "pid1") as run:
        lines = stdout_lines(run)
        ready = lines.readline(20, keepends=False)
        assert ready.startswith("ready ")
        wpid = int(ready.split()[1])  # as the init sees it (namespace PID)
        init_pid = run.init_pid
        outside = outside_pid(init_pid, wpid)
        exchange(run, lines, signal.SIGUSR1)
        exchange(run, lines, signal.SIGTERM, signal.SIGUSR1)
        exchange(run, lines, SIGRTMIN_3)
        wait_reaped(init_pid, outside, 30, "the orphans reaped")
        exchange(run, lines, signal.SIGINT)
        assert run.wait(20) == 5
        _, err = run.communicate(10)
    assert "Traceback" not in err
    records = parse_audit(audit.read_text(), since=since)
    types = [record["event_type"] for record in records]
    assert types[0] == "init_supervisor_started", types
    assert types[-1] == "container_stop", types
    for record in records:
        assert record["container_id"] == "cid-42"
        assert record["container_name"] == "web"
        assert record["is_error"] is False, record

    started = one(records, "init_supervisor_started")
    assert started["pid"] == (1 if mode == "pid1" else init_pid)
    exec_record = one(records, "container_exec")
    assert exec_record["pid"] == wpid
    assert exec_record["argv"] == argv
    assert one(records, "no_new_privs_set")["pid"] == wpid

    forwarded = [
        (r["signal"], r["signo"], r["target"], r.get("rewritten_from"))
        for r in of_type(records, "signal_forwarded")
    ]
    assert forwarded == [
        ("SIGUSR1", signal.SIGUSR1, wpid, None),
        ("SIGUSR1", signal.SIGUSR1, wpid, "SIGTERM"),
        ("SIGRTMIN+3", SIGRTMIN_3, wpid, None),
        ("SIGINT", signal.SIGINT, wpid, None),
    ]

    reaped = of_type(records, "zombie_reaped")
    assert len(reaped) == 3, reaped
    assert all(r["exit_code"] == 0 and r["pid"] not in (wpid, 1) for r in reaped)

    stop = one(records, "container_stop")
    assert stop["exit_code"] == 5
    assert "signal" not in stop


def test_audit_group_target_and_killed_workload(mode: str, tmp_path: Path) -> None:
    """With -g the target is the negative group; a killed workload's stop
    names the signal and is not the init's error."""
    audit = tmp_path / "audit.jsonl"
    with start_init(
        ["-g", "--audit", str(audit), "--", *busy_argv(0, 0)], pid1=mode == "pid1"
    ) as run:
        lines = stdout_lines(run)
        wpid = int(lines.readline(20, keepends=False).split()[1])
        exchange(run, lines, signal.SIGUSR2)
        os.kill(outside_pid(run.init_pid, wpid), signal.SIGKILL)
        assert run.wait(20) == 128 + signal.SIGKILL
    records = parse_audit(audit.read_text())
    forwarded = one(records, "signal_forwarded")
    assert (forwarded["signal"], forwarded["signo"], forwarded["target"]) == (
        "SIGUSR2",
        signal.SIGUSR2,
        -wpid,
    )
    stop = one(records, "container_stop")
    assert stop["exit_code"] == 137
    assert stop["signal"] == "SIGKILL"
    assert all(record["is_error"] is False for record in records)


def test_audit_default_correlation_fields(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    code, _, _ = run_init(["--audit", str(audit), "--", "/bin/sh", "-c", "exit 0"])
    assert code == 0
    records = parse_audit(audit.read_text())
    assert records
    for record in records:
        assert record["container_id"] == os.uname().nodename
        assert record["container_name"] == "sh"
    code, out, _ = run_init(["-h"])
    assert code == 0
    flat = " ".join(out.split())
    assert "(default: the hostname)" in flat
    assert "(default: PROGRAM's base name" in flat


@pytest.mark.parametrize(
    ("make_program", "expected"),
    [("missing", 127), ("not-executable", 126)],
)
def test_audit_exec_failed(tmp_path: Path, make_program: str, expected: int) -> None:
    audit = tmp_path / "audit.jsonl"
    program = tmp_path / "prog"
    if make_program == "not-executable":
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o644)
    code, _, err = run_init(["--audit", str(audit), "--", str(program), "arg"])
    assert code == expected
    assert "Traceback" not in err
    assert f"cannot run '{program}'" in err
    failed = one(parse_audit(audit.read_text()), "exec_failed")
    assert failed["program"] == str(program)
    assert failed["error"]
    assert failed["is_error"] is True
    assert failed["exit_code"] == expected


# ------------------------------------------------------ the destinations


def test_audit_file_is_private_and_appended(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    old_umask = os.umask(0o000)  # the 0600 must not come from the umask
    try:
        first, _, _ = run_init(["--audit", str(audit), "--", "/bin/sh", "-c", "exit 0"])
    finally:
        os.umask(old_umask)
    assert first == 0
    assert audit.stat().st_mode & 0o777 == 0o600
    second, _, _ = run_init(["--audit", str(audit), "--", "/bin/sh", "-c", "exit 1"])
    assert second == 1
    records = parse_audit(audit.read_text())
    assert len(of_type(records, "init_supervisor_started")) == 2
    assert [r["exit_code"] for r in of_type(records, "container_stop")] == [0, 1]
    assert audit.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("dest", ["-", "fd:2", "fd:1"])
def test_audit_to_stderr_and_stdout(dest: str) -> None:
    code, out, err = run_init(["--audit", dest, "--", "/bin/sh", "-c", "echo hello; exit 4"])
    assert code == 4
    audit_stream, other = (out, err) if dest == "fd:1" else (err, out)
    assert "hello\n" in out
    assert not json_lines(other), other
    records = parse_audit(json_lines(audit_stream))
    types = [record["event_type"] for record in records]
    assert {"init_supervisor_started", "container_exec", "container_stop"} <= set(types)
    assert one(records, "container_stop")["exit_code"] == 4


def test_audit_fd_is_the_inits_alone(mode: str) -> None:
    """fd:N gets the events, the workload does not hold N, and a descriptor
    the init inherited (not the audit one) still reaches the workload."""
    with pipe() as (audit_r, audit_w), pipe() as (_other_r, other_w):
        with start_init(
            ["--audit", f"fd:{audit_w}", "--", *workload("audit_fds.py")],
            pid1=mode == "pid1",
            pass_fds=(audit_w, other_w),
        ) as run:
            os.close(audit_w)
            os.close(other_w)
            assert run.wait(20) == 0
            out, err = run.communicate(10)
        fds = json.loads(out.splitlines()[0])
        assert audit_w not in fds, (audit_w, fds)
        assert other_w in fds, (other_w, fds)
        records = parse_audit(read_to_eof(audit_r))
        assert one(records, "container_exec")["argv"] == workload("audit_fds.py")
        assert one(records, "container_stop")["exit_code"] == 0
        assert "Traceback" not in err


# --------------------------------------------------------- faulty sinks


def drive_faulty(
    run: Init, lines: Lines, *, orphans: int, signals: int = 8, code: int = 7
) -> dict[str, Any]:
    """Forward signals and make orphans while the sink misbehaves; stop.

    Returns what happened: signals forwarded, seconds from the workload's
    exit to the init's, the init's code, its stderr and the workload's lines.
    """
    ready = lines.readline(60, keepends=False)
    assert ready.startswith("ready ")
    init_pid = run.init_pid
    outside = outside_pid(init_pid, int(ready.split()[1]))
    wait_reaped(init_pid, outside, 60, "the first orphans reaped")
    sent = 0
    for i in range(signals):
        exchange(run, lines, signal.SIGUSR1 if i % 2 == 0 else signal.SIGUSR2)
        sent += 1
    exchange(run, lines, signal.SIGHUP)
    sent += 1
    assert lines.readline(60, keepends=False) == f"made {orphans}"
    wait_reaped(init_pid, outside, 60, "the new orphans reaped")
    for i in range(signals):
        exchange(run, lines, signal.SIGUSR2 if i % 2 == 0 else signal.SIGUSR1)
        sent += 1
    run.send(signal.SIGTERM)
    sent += 1
    assert lines.readline(20, keepends=False) == str(int(signal.SIGTERM))
    workload_gone = time.monotonic()
    exit_code = run.wait(30)
    seconds = time.monotonic() - workload_gone
    out, err = run.communicate(10)
    printed = [*lines.seen, *out.splitlines()]
    assert str(int(signal.SIGPIPE)) not in printed, "a SIGPIPE reached the workload"
    assert exit_code == code, err
    assert "Traceback" not in err
    return {
        "code": exit_code,
        "forwarded": sent,
        "seconds": seconds,
        "stderr": err,
        "events_at_least": 2 + sent + 2 * orphans + 1,  # start, exec, ..., stop
    }


def report(case: str, result: dict[str, Any], dropped: int, written: int) -> None:
    print(
        f"\nFAULTY-SINK {case}: exit {result['code']}, {result['forwarded']} signals "
        f"forwarded and received, {dropped} dropped reported, {written} written, "
        f"init exit {result['seconds']:.2f}s after the workload",
        file=sys.stderr,
    )


def test_audit_sink_full(mode: str) -> None:
    """/dev/full: every write fails with ENOSPC; nothing else suffers."""
    with start_init(["--audit", "/dev/full", "--", *busy_argv(20, 7)], pid1=mode == "pid1") as run:
        result = drive_faulty(run, stdout_lines(run), orphans=20)
    dropped = dropped_reported(result["stderr"])
    report(f"/dev/full ({mode})", result, dropped, 0)
    assert dropped >= result["events_at_least"]


def test_audit_sink_broken_pipe(mode: str) -> None:
    """A pipe whose reader has gone: EPIPE, and no SIGPIPE to anyone."""
    with pipe() as (audit_r, audit_w):
        os.close(audit_r)
        with start_init(
            ["--audit", f"fd:{audit_w}", "--", *busy_argv(20, 7)],
            pid1=mode == "pid1",
            pass_fds=(audit_w,),
        ) as run:
            os.close(audit_w)
            result = drive_faulty(run, stdout_lines(run), orphans=20)
    dropped = dropped_reported(result["stderr"])
    report(f"broken pipe ({mode})", result, dropped, 0)
    assert dropped >= result["events_at_least"]


STALL_ORPHANS = 1400  # more than the 1024 events a sink's queue holds, plus a pipe's worth


def small_pipe_write_end(write_end: int) -> None:
    """Shrink the pipe to one page, so a stalled reader blocks the writer soon."""
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)


def drive_stalled(signals: int) -> tuple[dict[str, Any], list[Record], int]:
    """:func:`drive_faulty` with an audit pipe nobody reads until the init has exited.

    Returns its result, the records the pipe got, and the count of dropped
    events the init reported.
    """
    with pipe() as (audit_r, audit_w):
        small_pipe_write_end(audit_w)
        with start_init(
            ["--audit", f"fd:{audit_w}", "--", *busy_argv(STALL_ORPHANS, 7)],
            pass_fds=(audit_w,),
        ) as run:
            os.close(audit_w)
            result = drive_faulty(run, stdout_lines(run), orphans=STALL_ORPHANS, signals=signals)
        written = parse_audit(read_to_eof(audit_r))
    return result, written, dropped_reported(result["stderr"])


def test_audit_sink_stalled() -> None:
    """A reader that never reads: the init still forwards, reaps, leaves
    promptly, and reports what it dropped."""
    result, written, dropped = drive_stalled(signals=8)
    report("stalled pipe", result, dropped, len(written))
    assert result["seconds"] < 5, result["seconds"]
    assert dropped > 0


def test_audit_sink_stalled_counts_every_lost_event() -> None:
    """What the stalled sink never got is all counted in the exit report."""
    result, written, dropped = drive_stalled(signals=2)
    assert dropped + len(written) >= result["events_at_least"], (dropped, len(written))


def test_audit_sink_recovers_and_reports_drops() -> None:
    """A reader that stalls, then drains: audit_dropped with the count."""
    drained: list[bytes] = []
    with pipe() as (audit_r, audit_w):
        small_pipe_write_end(audit_w)

        def drain() -> None:
            while True:
                ready, _, _ = select.select([audit_r], [], [], 60)
                if not ready:
                    return
                chunk = os.read(audit_r, 65536)
                if not chunk:
                    return
                drained.append(chunk)

        drainer = threading.Thread(target=drain, daemon=True)
        with start_init(
            ["--audit", f"fd:{audit_w}", "--", *busy_argv(STALL_ORPHANS, 7)],
            pass_fds=(audit_w,),
        ) as run:
            os.close(audit_w)
            lines = stdout_lines(run)
            ready = lines.readline(60, keepends=False)
            assert ready.startswith("ready ")
            init_pid = run.init_pid
            outside = outside_pid(init_pid, int(ready.split()[1]))
            wait_reaped(init_pid, outside, 60, "the orphans reaped")
            drainer.start()  # the reader wakes up
            for i in range(6):
                exchange(run, lines, signal.SIGUSR1 if i % 2 == 0 else signal.SIGUSR2)
                time.sleep(0.05)
            run.send(signal.SIGTERM)
            assert lines.readline(20, keepends=False) == str(int(signal.SIGTERM))
            assert run.wait(30) == 7
            _, err = run.communicate(10)
        drainer.join(30)
        assert not drainer.is_alive()
    records = parse_audit(b"".join(drained).decode())
    reports = of_type(records, "audit_dropped")
    assert reports, [r["event_type"] for r in records][-20:]
    assert all(r["is_error"] is True and r["count"] >= 1 for r in reports)
    total = sum(r["count"] for r in reports)
    assert total == dropped_reported(err)
    # Events after the recovery are written again.
    assert of_type(records, "container_stop")
    assert len(of_type(records, "signal_forwarded")) >= 1
    print(
        f"\nFAULTY-SINK recovering pipe: exit 7, 7 signals forwarded and received, "
        f"audit_dropped counts {[r['count'] for r in reports]}, {len(records)} written",
        file=sys.stderr,
    )


# ------------------------------------------------------------ secrets


def test_redact_args_hides_arguments(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    secret = "hunter2-s3cr3t-arg"
    code, _, err = run_init(
        ["--redact-args", "-vvv", "--audit", str(audit), "--", "/bin/sh", "-c", "exit 0", secret]
    )
    assert code == 0
    text = audit.read_text()
    assert secret not in text
    argv = one(parse_audit(text), "container_exec")["argv"]
    assert argv[0] == "/bin/sh"
    assert len(argv) == 2 and argv[1] != "-c", argv
    assert secret not in err


def test_env_values_are_never_logged(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    value = "topsecret-env-value-31337"
    code, out, err = run_init(
        [
            "-vvv",
            "--audit",
            str(audit),
            "--env",
            f"SECRET={value}",
            "--env",
            "OTHER=1",
            "--",
            "/bin/sh",
            "-c",
            'printf "%s\\n" "$SECRET" | tr a-z A-Z',
        ]
    )
    assert code == 0, err
    assert out == value.upper() + "\n"  # the workload got it
    text = audit.read_text()
    assert value not in text
    assert value not in err
    assert one(parse_audit(text), "container_exec")["env_keys"] == ["SECRET", "OTHER"]
