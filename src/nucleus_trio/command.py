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
import subprocess
import time
from collections.abc import Sequence

from nucleus_trio import cli
from nucleus_trio.audit import Event, EventLog
from nucleus_trio.config import Action, Config, UsageError, parse_args
from nucleus_trio.environment import workload_environment
from nucleus_trio.init import run_with_log
from nucleus_trio.levels import DEBUG, ERROR, INFO, WARNING
from nucleus_trio.pidfd import PidFd
from nucleus_trio.signals import STARTUP_BLOCKED
from nucleus_trio.spawn import EXIT_USAGE, exec_failure_code


def _child_setup(no_new_privs: bool) -> None:
    """Runs in the child between fork and exec: no Python-level locks used."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    if no_new_privs:
        from nucleus_trio.kernel import set_no_new_privs

        set_no_new_privs()


def _spawn(config: Config, log: EventLog) -> tuple[PidFd | None, int | None]:
    """Start the workload; return its pidfd, or the exit code of a failure."""
    env, warnings = workload_environment(
        os.environ, clean_env=config.clean_env, assignments=config.env, sd_notify=config.sd_notify
    )
    for warning in warnings:
        log.log(WARNING, warning, "notify_socket_dropped", is_error=False)
    identity = config.identity
    if config.no_new_privs:
        from nucleus_trio.kernel import load_libc

        load_libc()
    try:
        popen = subprocess.Popen(
            list(config.argv),
            env=env,
            process_group=0,
            close_fds=False,
            preexec_fn=lambda: _child_setup(config.no_new_privs),
            user=identity.uid if identity is not None else None,
            group=identity.gid if identity is not None else None,
            extra_groups=list(identity.groups) if identity is not None else None,
        )
    except OSError as exc:
        code = exc.errno or 0
        message = f"cannot run {config.argv[0]!r}: {os.strerror(code)}"
        exit_code = exec_failure_code(code)
        log.log(
            ERROR,
            message,
            "exec_failed",
            program=config.argv[0],
            error=os.strerror(code),
            exit_code=exit_code,
        )
        return None, exit_code
    pidfd = PidFd.open(popen.pid)
    # The pidfd waiter reaps it from now on; the Popen object must not.
    popen.returncode = 0
    log.log(
        INFO,
        f"started workload pid={popen.pid}",
        "container_exec",
        pid=popen.pid,
        argv=cli.shown_argv(config),
    )
    if config.no_new_privs:
        log.log(DEBUG, "PR_SET_NO_NEW_PRIVS set", "no_new_privs_set", pid=popen.pid)
    return pidfd, None


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
    try:
        notes: list[cli.Note] = []
        cli.prepare_init(config, notes)
        container_id, container_name = cli.container_fields(config)
        audit_fd = None
        if config.audit is not None:
            from nucleus_trio.records import open_audit_destination

            try:
                audit_fd = open_audit_destination(config.audit)
            except OSError as exc:
                cli.usage_error(f"--audit {config.audit}: {exc.strerror}", show_usage=False)
                return EXIT_USAGE
        log = EventLog(
            config.verbosity,
            audit_fd=audit_fd,
            container_id=container_id,
            container_name=container_name,
        )
        for note in notes:
            log.emit(note.event())
        workload = None
        started = None
        if not config.pause:
            workload, failure = _spawn(config, log)
            if failure is not None:
                await _flush(log)
                return failure
            started = time.monotonic()
        try:
            return await run_with_log(config, workload, log, started, owns_all_children=False)
        finally:
            if audit_fd is not None and audit_fd > 2 and config.audit != f"fd:{audit_fd}":
                os.close(audit_fd)
    finally:
        _discard_pending(STARTUP_BLOCKED - previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


async def _flush(log: EventLog) -> None:
    """Write what is queued (bounded), for the early-failure path."""
    import trio

    log.close()
    with trio.move_on_after(1.0):
        await log.run()


__all__ = ["Event", "run_command"]
