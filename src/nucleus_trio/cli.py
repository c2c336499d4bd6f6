"""The command line, from arguments to exit code.

Runs in this order, as the README's "Signals" section has it: arguments are read
with the standard library, the workload is started, and only then is trio
imported (about 150 ms the workload does not wait for), by
:mod:`nucleus_trio.handover`, which takes over once the workload runs. The
entry point (:mod:`nucleus_trio._entry`) has blocked the forwarded signals
before any of this, so none is lost in between.
"""

import _signal
import posix

from nucleus_trio.config import PROG, USAGE, Action, Config, UsageError, help_text, parse_args
from nucleus_trio.environment import decode_environment, workload_environment
from nucleus_trio.signals import TERMINAL_STOPS
from nucleus_trio.spawn import (
    SpawnError,
    fork_exec,
    should_take_terminal,
    workload_ignored_signals,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from nucleus_trio.events import Event
    from nucleus_trio.pidfd import PidFd


def _stderr(line: str) -> None:
    """Write one line to stderr; a closed, broken or full stderr is not our death."""
    from nucleus_trio.stderr import say  # not on the start-up path

    say(line)


def _stdout(text: str) -> None:
    try:
        posix.write(1, text.encode())
    except OSError:
        pass


def usage_error(reason: str, *, show_usage: bool = True) -> None:
    """Report bad usage: the reason on one line, then the usage."""
    from nucleus_trio.stderr import write_stderr

    _stderr(reason)
    if show_usage:
        write_stderr(f"{USAGE}\nTry '{PROG} --help' for more information.\n".encode())


def print_info(action: str) -> int:
    """Print the help or the version on stdout; return the exit code (0)."""
    _stdout(help_text() if action == Action.HELP else f"{PROG} {version()}\n")
    return 0


def version() -> str:
    """The installed version, from the package metadata."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("nucleus-trio")
    except PackageNotFoundError:
        return "0+unknown"


def inherited_environment() -> tuple[dict[str, str], int]:
    """The environment the init was started with, and the bytes of variables
    that the command's shell preamble could not pass on.

    Not ``posix.environ``: Python's locale coercion (PEP 538) adds
    ``LC_CTYPE=C.UTF-8`` there when the locale is C, and the workload must
    get what the init got. ``/proc/self/environ`` still holds the original;
    the ``PWD`` that the preamble's shell added is taken out again (see
    :func:`~nucleus_trio.environment.undo_the_shell`).
    """
    from nucleus_trio.environment import SHELL_ENV_SIZE, undo_the_shell

    try:
        with open("/proc/self/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return decode_environment(posix.environ), 0
    entries: dict[bytes, bytes] = {}
    for entry in raw.split(b"\0"):
        key, eq, value = entry.partition(b"=")
        if eq and key:
            entries[key] = value
    size = entries.pop(SHELL_ENV_SIZE.encode(), b"")
    lost = 0
    if size.isdigit():
        added_pwd, lost = undo_the_shell(entries, int(size))
        if added_pwd:
            del entries[b"PWD"]
    return decode_environment(entries), lost


def _occupy_closed_stdio() -> None:
    """Put /dev/null (close-on-exec) on whichever of 0, 1, 2 is closed.

    Otherwise the init's own descriptors (the audit file, pidfds, trio's
    sockets) would take those numbers, and its log lines would go into them.
    Close-on-exec: the workload still finds them closed, as inherited.
    """
    for fd in (0, 1, 2):
        try:
            posix.fstat(fd)
        except OSError:
            try:
                null = posix.open("/dev/null", posix.O_RDWR | posix.O_CLOEXEC)
            except OSError:
                return
            if null != fd:
                posix.dup2(null, fd, inheritable=False)
                posix.close(null)


def _inherited_fds() -> list[int]:
    """Descriptors above 2 that the init inherited (listed before it opens any)."""
    try:
        names = posix.listdir("/proc/self/fd")
    except OSError:
        return []
    fds = []
    for name in names:
        fd = int(name)
        if fd <= 2:
            continue
        try:
            posix.fstat(fd)  # the descriptor of the listing itself is closed now
        except OSError:
            continue
        fds.append(fd)
    return fds


def prepare_init(config: Config, notes: "list[Event]") -> None:
    """Changes to the init itself that must precede the spawn."""
    # Events are imported only when there is one to record: as PID 1 there
    # is none before the spawn (README, "Benchmarks": start latency).
    for signo in TERMINAL_STOPS:
        # As tini: a background init never stops on terminal I/O.
        _signal.signal(signo, _signal.SIG_IGN)
    is_pid1 = posix.getpid() == 1
    if config.pdeathsig is not None or config.wants_subreaper(is_pid1):
        from nucleus_trio import events, kernel, levels

        if config.pdeathsig is not None:
            try:
                kernel.set_pdeathsig(config.pdeathsig)
            except OSError as exc:
                notes.append(
                    events.init_error(f"cannot set the parent-death signal: {exc}", levels.WARNING)
                )
        if config.wants_subreaper(is_pid1):
            try:
                kernel.set_child_subreaper()
                notes.append(events.log(levels.DEBUG, "registered as child subreaper"))
            except OSError as exc:
                notes.append(
                    events.init_error(f"cannot register as child subreaper: {exc}", levels.WARNING)
                )
    elif not is_pid1:
        from nucleus_trio import events, levels

        notes.append(
            events.log(
                levels.WARNING,
                "not PID 1 and not a subreaper (--no-subreaper): "
                "orphans will not be reaped by this init",
            )
        )


def run(
    args: "Sequence[str]",
    *,
    early_sigint: bool = False,
    inherited_ignored: frozenset[int] = frozenset(),
) -> int:
    """Run the init for ``args`` and return its exit code.

    Expects the forwarded signals to be blocked already (the entry point
    does it on its first line). The phases, in order: read the arguments,
    prepare the init, start the workload, let go of what the init inherited,
    then supervise with trio.
    """
    # Read once: the options' variables come from it, and the workload gets it.
    inherited, lost = inherited_environment()
    parsed = _parse(args, inherited)
    if isinstance(parsed, int):
        return parsed
    config = parsed
    _occupy_closed_stdio()
    inherited_fds = _inherited_fds()  # listed before the init opens anything
    audit_fd = _open_audit(config)
    if audit_fd == -1:
        from nucleus_trio.exits import EXIT_USAGE

        return EXIT_USAGE
    notes: list[Event] = []
    prepare_init(config, notes)
    if config.pause:
        try:
            from nucleus_trio.handover import pause

            return pause(config, audit_fd, notes, inherited_fds)
        except BaseException as exc:  # the crash guard
            return crash_exit(exc, None)
    pid = _launch(config, inherited, lost, inherited_ignored, audit_fd, notes)
    if pid < 0:
        return -pid
    try:
        from nucleus_trio.handover import supervise

        return supervise(config, pid, audit_fd, notes, inherited_fds, early_sigint=early_sigint)
    except BaseException as exc:  # the crash guard, for the start-up too
        return crash_exit(exc, pid)


def _parse(args: "Sequence[str]", environ: "Mapping[str, str]") -> Config | int:
    """The configuration, or the exit code of a usage error, help or version."""
    try:
        action, config = parse_args(args, environ)
    except UsageError as exc:
        from nucleus_trio.exits import EXIT_USAGE

        usage_error(str(exc))
        return EXIT_USAGE
    if action != Action.RUN:
        return print_info(action)
    return config


def _open_audit(config: Config) -> int | None:
    """The ``--audit`` descriptor, ``None`` without one, -1 when it cannot be opened."""
    if config.audit is None:
        return None
    from nucleus_trio.records import open_audit_destination

    try:
        return open_audit_destination(config.audit)
    except OSError as exc:
        usage_error(f"--audit {config.audit}: {exc.strerror}", show_usage=False)
        return -1


def _launch(
    config: Config,
    inherited: "Mapping[str, str]",
    lost: int,
    inherited_ignored: frozenset[int],
    audit_fd: int | None,
    notes: "list[Event]",
) -> int:
    """Start the workload before trio: its PID, or minus the exit code when
    it could not start. ``inherited`` and ``lost``: see
    :func:`inherited_environment`."""
    env, warnings = workload_environment(
        inherited,
        clean_env=config.clean_env,
        assignments=config.env,
        sd_notify=config.sd_notify,
    )
    if warnings or lost:
        from nucleus_trio import events, levels

        notes.extend(events.notify_socket_dropped(warning) for warning in warnings)
        if lost:
            notes.append(
                events.log(
                    levels.WARNING,
                    f"the command's /bin/sh preamble passed on {lost} bytes less environment "
                    "than it was given: variables whose names are no shell identifiers "
                    "(my.var, my-var) never pass a shell, and a PWD that is not the working "
                    "directory is replaced; `python3 -I -m nucleus_trio` passes everything",
                )
            )
    try:
        return fork_exec(
            config.argv,
            env=env,
            ignored=workload_ignored_signals(inherited_ignored),
            take_terminal=should_take_terminal(),
            identity=config.identity,
            no_new_privs=config.no_new_privs,
        )
    except (SpawnError, OSError) as exc:
        from nucleus_trio import events
        from nucleus_trio.exits import EXIT_CANNOT_EXECUTE

        if isinstance(exc, SpawnError):
            message, code, error = exc.message, exc.exit_code, exc.reason
        else:
            error = exc.strerror or str(exc)
            message, code = f"cannot run {config.argv[0]!r}: {error}", EXIT_CANNOT_EXECUTE
        from nucleus_trio.handover import audit_now

        _stderr(message)
        audit_now(audit_fd, config, events.exec_failed(config.argv[0], error, code, message))
        return -code


def crash_exit(exc: BaseException, workload: "PidFd | int | None") -> int:
    """The crash guard: report ``exc``, kill the workload's group and every
    descendant, reap them, and return :data:`EXIT_INTERNAL_ERROR`.

    A dead init must not leave a workload orphaned (as a subreaper) or a
    container hung: killing is the only safe choice once the init cannot
    supervise any more.
    """
    from nucleus_trio.exits import EXIT_INTERNAL_ERROR
    from nucleus_trio.proctree import leftovers
    from nucleus_trio.reaper import reap_any
    from nucleus_trio.stderr import report_fault

    report_fault(exc)
    _stderr("internal error: killing the workload and every process left, then exiting")
    if isinstance(workload, int):
        # Not reaped yet (nothing reaps before trio), so its group is its own.
        try:
            posix.killpg(workload, _signal.SIGKILL)
        except OSError:
            pass
        try:
            posix.waitpid(workload, 0)
        except OSError:
            pass
        workload = None
    if workload is not None:
        try:
            workload.send_signal(_signal.SIGKILL, group=True)
        except OSError:
            pass
    try:
        for pid in leftovers():
            try:
                posix.kill(pid, _signal.SIGKILL)
            except OSError:
                pass
    except OSError:
        pass
    if workload is not None:
        try:
            posix.waitid(posix.P_PIDFD, workload.fileno(), posix.WEXITED)
        except OSError:
            pass
    more = True
    while more:
        _, more = reap_any(keep=False)
    return EXIT_INTERNAL_ERROR
