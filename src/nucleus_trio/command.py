"""The whole command-line behaviour as one awaitable: :func:`run_command`.

``exit_code = await nucleus_trio.run_command(["-g", "--", "my-server"])``
inside ``trio.run`` does what ``nucleus-trio -g -- my-server`` does: parses
the arguments, starts the workload, forwards every signal the process
receives to it, reaps orphans, shuts the leftovers down, and returns the exit
code the command would exit with (printing usage errors, help or the version
as the command does). The process acts as the init of its whole tree, as the
command does: every child that is not claimed is reaped, and every
descendant is ended at the shutdown.

The command itself (:mod:`nucleus_trio.cli`) runs the same parts in a
different order, spawning before trio is even imported; here the event loop
already runs and may have threads, so the workload is started with
``subprocess``'s fork, whose child clears the signal mask before exec.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from nucleus_trio import cli, handover
from nucleus_trio.audit import EventLog
from nucleus_trio.config import Action, UsageError, parse_args
from nucleus_trio.events import Event
from nucleus_trio.exits import EXIT_USAGE
from nucleus_trio.init import run_with_log
from nucleus_trio.signals import STARTUP_BLOCKED


def _discard_pending(signals: frozenset[int]) -> None:
    """Drop blocked signals that arrived after the workload was gone, so that
    restoring the caller's mask does not deliver them to default handlers."""
    pending = signal.sigpending() & set(signals)
    while pending:
        if signal.sigtimedwait(pending, 0) is None:
            break
        pending = signal.sigpending() & set(signals)


async def run_command(args: Sequence[str]) -> int:
    """Run the command line ``args`` (without ``argv[0]``) and return its exit code.

    Must run in trio's main thread, as the only signal handling of the
    process while it runs.
    """
    try:
        action, config = parse_args(args, os.environ)
    except UsageError as exc:
        cli.usage_error(str(exc))
        return EXIT_USAGE
    if action != Action.RUN:
        return cli.print_info(action)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STARTUP_BLOCKED)
    audit_fd = None
    try:
        notes: list[Event] = []
        cli.prepare_init(config, notes)
        if config.audit is not None:
            from nucleus_trio.records import open_audit_destination

            try:
                audit_fd = open_audit_destination(config.audit)
            except OSError as exc:
                cli.usage_error(f"--audit {config.audit}: {exc.strerror}", show_usage=False)
                return EXIT_USAGE
        container_id, container_name = handover.container_fields(config)
        log = EventLog(
            config.verbosity,
            audit_fd=audit_fd,
            container_id=container_id,
            container_name=container_name,
        )
        for note in notes:
            log.emit(note)
        # The same supervisor as the command's, which starts the workload
        # itself here (the loop runs already): see nucleus_trio.init.
        return await run_with_log(config, None, log, owns_all_children=False)
    finally:
        if audit_fd is not None and audit_fd > 2 and config.audit != f"fd:{audit_fd}":
            os.close(audit_fd)
        _discard_pending(STARTUP_BLOCKED - previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


__all__ = ["run_command"]
