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
from nucleus_trio.signals import FORWARDED
from nucleus_trio.status import ExitStatus, init_exit_code
from nucleus_trio.stderr import write_stderr


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
    from nucleus_trio.cli import audit_now, opening_events

    runtime = time.monotonic() - started if started is not None else None
    ending = [
        events.workload_exited(status),
        events.log(DEBUG, "the workload ended before trio was up, nothing left: leaving at once"),
        events.container_stop(code, status, runtime=runtime),
    ]
    for event in (*opening_events(config, notes), *ending):
        if event.level <= config.verbosity:
            write_stderr(events.log_line(event))
        if event.event_type != events.LOG:
            audit_now(audit_fd, config, event)
    return code
