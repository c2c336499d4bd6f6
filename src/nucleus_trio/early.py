"""A workload that ends before trio has loaded: report it and leave at once.

trio takes about 100 ms to import, and the command line imports it only once
the workload runs (README, "Benchmarks": start latency). A short-lived
workload (``INIT -- true``, a one-shot ``docker run --rm``, a health check)
is often over before that. When it has left nothing behind (no process, no
zombie) and no forwarded signal waits, there is nothing for the machinery to
do: the init writes the events it would have written and exits with the
workload's status, without waiting for trio. Otherwise it returns ``None``
and the machinery runs as ever.

Standard library only: this runs while another thread may still be
importing trio, attrs and the rest.
"""

from __future__ import annotations

import _signal
import os
import time

from nucleus_trio import events
from nucleus_trio.config import Config
from nucleus_trio.levels import DEBUG
from nucleus_trio.proctree import leftovers, list_children
from nucleus_trio.records import audit_line
from nucleus_trio.signals import FORWARDED
from nucleus_trio.status import ExitStatus, init_exit_code
from nucleus_trio.stderr import write_bounded, write_stderr


def nothing_left(workload: int) -> bool:
    """Whether the init has nothing to do but leave: no live process in its
    namespace or subtree, no child but the (exited) workload, no forwarded
    signal pending."""
    if _signal.sigpending() & FORWARDED:
        return False
    if any(child != workload for child in list_children()):
        return False  # an orphan's zombie, or a live child: the reaper's
    return not leftovers()


def leave_early(
    config: Config,
    pid: int,
    pidfd: int,
    notes: list[events.Event],
    audit_fd: int | None,
    started: float | None,
) -> int | None:
    """Reap the exited workload and record its end, if nothing else is left;
    return the init's exit code, or ``None`` for the machinery's way."""
    if not nothing_left(pid):
        return None
    info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    if info is None:  # pragma: no cover - the pidfd said it had exited
        return None
    os.close(pidfd)
    status = ExitStatus.from_siginfo(info)
    code = init_exit_code(status, config.remap_exit)
    is_pid1 = os.getpid() == 1
    first = events.supervisor_started(
        os.getpid(), pid1=is_pid1, subreaper=config.wants_subreaper(is_pid1), pause=False
    )
    if notes:
        first.timestamp = notes[0].timestamp
    runtime = time.monotonic() - started if started is not None else None
    ending = [
        events.workload_exited(status),
        events.log(DEBUG, "the workload ended before trio was up, nothing left: leaving at once"),
        events.container_stop(code, status, runtime=runtime),
    ]
    for event in (first, *notes, *ending):
        _write_now(event, config, audit_fd)
    return code


def _write_now(event: events.Event, config: Config, audit_fd: int | None) -> None:
    """Write one event where the event log would (bounded, never raising)."""
    if event.level <= config.verbosity:
        write_stderr(events.log_line(event))
    if audit_fd is not None and event.event_type != events.LOG:
        from nucleus_trio.cli import container_fields

        if not write_bounded(audit_fd, audit_line(event.record(*container_fields(config)))):
            write_stderr(b"nucleus-trio: 1 audit events were dropped (sink too slow or broken)\n")
