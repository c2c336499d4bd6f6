"""stdout and stderr that fail (:func:`stdio_faults`): a workload that closes
or floods its own, an init whose own are closed or a full pipe nobody reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import threading
import time

from stress.harness import (
    finish_figures,
    launch,
    only_workload_left,
    signal_label,
    tracebacks_in,
)
from stress.procfs import Figures, children_of, wait_until

STDIO_CASES = ("workload-closes", "workload-floods", "init-closed", "init-full-pipe")

#: Kinds sent in the stdio scenarios (SIGPIPE among them: sent from outside,
#: it is the workload's; the init's own SIGPIPEs never are).
STDIO_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGPIPE,
    signal.SIGWINCH,
    signal.SIGTERM,
    signal.SIGRTMIN + 1,
)


def _drainer(fd: int, counter: list[int], tail: bytearray) -> threading.Thread:
    """A thread that reads ``fd`` to its end, counting bytes, keeping a tail."""

    def drain() -> None:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            counter[0] += len(chunk)
            tail.extend(chunk)
            if len(tail) > 1 << 20:
                del tail[: len(tail) - (1 << 19)]

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


def fill_pipe(write_end: int) -> int:
    """Fill a pipe to the brim (then leave its write end blocking); return bytes."""
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    total = 0
    chunk = b"f" * 4096
    with contextlib.suppress(BlockingIOError):
        while True:
            total += os.write(write_end, chunk)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags)
    return total


def stdio_faults(
    case: str, mode: str, orphans: int, *, flood_bytes: int = 16 << 20, code: int = 9
) -> Figures:
    """stdout and stderr that fail: the workload closes or floods its own, or
    the init's are closed or a full pipe nobody reads. The init (with ``-w``,
    so it writes for every orphan) keeps reaping and forwarding, and exits
    with the workload's code."""
    if case not in STDIO_CASES:
        raise ValueError(case)
    fig: Figures = {"scenario": f"stdio: {case}", "mode": mode, "orphans": orphans}
    failures: list[str] = []
    args = [f"orphans={orphans}", "armed=0", f"code={code}"]
    init_args = ["-w"]
    stdout: int | None = None
    stderr: int | None = None
    wrapper: list[str] = []
    pipes: list[int] = []
    out_count, err_count = [0], [0]
    out_tail, err_tail = bytearray(), bytearray()
    threads: list[threading.Thread] = []
    if case == "workload-closes":
        args.append("closeout=1")
    elif case == "workload-floods":
        args.append(f"flood={flood_bytes}")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pipes += [out_r, out_w, err_r, err_w]
        stdout, stderr = out_w, err_w
        threads = [
            _drainer(out_r, out_count, out_tail),
            _drainer(err_r, err_count, err_tail),
        ]
    elif case == "init-closed":
        init_args += ["--audit", "-"]
        wrapper = ["sh", "-c", 'exec "$@" >&- 2>&-', "nt-closed"]
        stdout = subprocess.DEVNULL
        stderr = subprocess.DEVNULL
    else:
        init_args += ["--audit", "-"]
        full_r, full_w = os.pipe()
        pipes += [full_r, full_w]
        fig["prefilled_bytes"] = fill_pipe(full_w)
        stdout = stderr = full_w
    try:
        with launch(
            mode, init_args, args, report_pipe=True, stdout=stdout, stderr=stderr, wrapper=wrapper
        ) as run:
            for fd in (stdout, stderr):
                if fd is not None and fd in pipes:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                        pipes.remove(fd)
            run.ready()
            line = run.report.expect("storm", 120 + orphans / 200)
            wait_until(only_workload_left(run), 60 + orphans / 1000, "every orphan reaped")
            for signo in STDIO_SIGNALS:
                run.send(signo)
            took = run.report.wait_kinds(set(STDIO_SIGNALS), 60)
            fig["alive"] = run.alive()
            # Every child but the workload: zombies, or orphans about to be.
            fig["zombies_left"] = len(children_of(run.init_pid)) - 1
            began = time.monotonic()
            run.finish(code_timeout=60)
            fig["exit_after_term_s"] = round(time.monotonic() - began, 2)
            received = run.report.kinds
            missing = set(STDIO_SIGNALS) - received
            fig.update(
                orphans_made=int(line.split()[1]),
                kinds_sent=len(STDIO_SIGNALS),
                kinds_received=len(received & set(STDIO_SIGNALS)),
                kinds_missing=sorted(signal_label(s) for s in missing),
                all_kinds_after_s=round(took, 2),
            )
            if missing:
                failures.append(f"kinds never received: {fig['kinds_missing']}")
            if fig["zombies_left"]:
                failures.append(f"{fig['zombies_left']} orphans left unreaped")
            if not fig["alive"]:
                failures.append("the init died")
            if fig["exit_after_term_s"] > 15:
                failures.append(f"exit took {fig['exit_after_term_s']} s after SIGTERM")
            for thread in threads:
                thread.join(30)
            if case == "workload-floods":
                fig["flooded_bytes"] = out_count[0] + err_count[0]
                tail = bytes(err_tail).decode(errors="replace")
                fig["tracebacks_tail"] = tracebacks_in(tail)
                if fig["flooded_bytes"] < 2 * flood_bytes:
                    failures.append(f"only {fig['flooded_bytes']} bytes of the flood arrived")
                if fig["tracebacks_tail"]:
                    failures.append("traceback on the init's stderr")
            if case == "init-full-pipe":
                unread = b""
                flags = fcntl.fcntl(pipes[0], fcntl.F_GETFL)
                fcntl.fcntl(pipes[0], fcntl.F_SETFL, flags | os.O_NONBLOCK)
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(pipes[0], 1 << 16):
                        unread += chunk
                fig["pipe_bytes_after"] = len(unread)
                if tracebacks_in(unread.decode(errors="replace")):
                    failures.append("traceback on the init's stderr")
            finish_figures(fig, failures, run, code)
    finally:
        for fd in pipes:
            with contextlib.suppress(OSError):
                os.close(fd)
    fig["failures"] = failures
    return fig
