"""The command line, from arguments to exit code.

Runs in this order, as the README's "Signals" section has it: arguments are read
with the standard library, the workload is forked and exec'd, and only then
is trio imported (about 150 ms the workload does not wait for). The entry
point (:mod:`nucleus_trio._entry`) has blocked the forwarded signals before
any of this, so none is lost in between.
"""

import _signal
import posix

from nucleus_trio import levels
from nucleus_trio.config import PROG, USAGE, Action, Config, UsageError, help_text, parse_args
from nucleus_trio.environment import decode_environment, workload_environment
from nucleus_trio.exits import EXIT_CANNOT_EXECUTE, EXIT_INTERNAL_ERROR, EXIT_USAGE
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

    from nucleus_trio.early import TrioImport
    from nucleus_trio.events import Event
    from nucleus_trio.pidfd import PidFd


def _stderr(line: str) -> None:
    """Write one line to stderr; a closed, broken or full stderr is not our death."""
    from nucleus_trio.stderr import write_stderr  # not on the start-up path

    write_stderr(f"{PROG}: {line}\n".encode(errors="replace"))


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
        from nucleus_trio import events, kernel

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
        from nucleus_trio import events

        notes.append(
            events.log(
                levels.WARNING,
                "not PID 1 and not a subreaper (--no-subreaper): "
                "orphans will not be reaped by this init",
            )
        )


def container_fields(config: Config) -> tuple[str, str]:
    """``container_id`` (default: the hostname) and ``container_name``
    (default: PROGRAM's base name, or ``pause``)."""
    container_id = config.container_id
    if container_id is None:
        container_id = posix.uname().nodename
    name = config.container_name
    if name is None:
        name = config.argv[0].rsplit("/", 1)[-1] if config.argv else "pause"
    return container_id, name


def audit_now(audit_fd: int | None, config: Config, event: "Event") -> None:
    """Write one audit record synchronously and bounded (when the init leaves
    without trio's event log); say so on stderr when it cannot."""
    if audit_fd is None:
        return
    from nucleus_trio.records import audit_line
    from nucleus_trio.stderr import write_bounded

    if not write_bounded(audit_fd, audit_line(event.record(*container_fields(config)))):
        _stderr(f"audit: the {event.event_type} event could not be written")


def opening_events(config: Config, notes: "list[Event]") -> "list[Event]":
    """``init_supervisor_started`` (stamped with the first note's time), then
    the notes: the first events of every run of the init."""
    from nucleus_trio import events

    is_pid1 = posix.getpid() == 1
    first = events.supervisor_started(
        posix.getpid(), pid1=is_pid1, subreaper=config.wants_subreaper(is_pid1), pause=config.pause
    )
    if notes:
        first.timestamp = notes[0].timestamp
    return [first, *notes]


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
        return EXIT_USAGE
    notes: list[Event] = []
    prepare_init(config, notes)
    if config.pause:
        launched = _Launched(None, None, None)
        launched.notes, launched.audit_fd = notes, audit_fd
        _let_go(inherited_fds, audit_fd)
        _warn_of_tight_memory(config)
        try:
            _import_trio()
            return _run_trio(config, launched)
        except BaseException as exc:  # the crash guard
            return crash_exit(exc, None)
    pid = _launch(config, inherited, lost, inherited_ignored, audit_fd, notes)
    if pid < 0:
        return -pid
    try:
        launched = _prepare(config, pid, audit_fd, notes)
        if early_sigint:
            # Pending (blocked) until the receiver is up; then forwarded as usual.
            posix.kill(posix.getpid(), _signal.SIGINT)
        _let_go(inherited_fds, audit_fd)
        _warn_of_tight_memory(config)
        launched.importer = _start_trio_import()
        return _supervise(config, launched)
    except BaseException as exc:  # the crash guard, for the start-up too
        return crash_exit(exc, pid)


def _warn_of_tight_memory(config: Config) -> None:
    """Say at once when the cgroup's memory limit leaves the init too little
    room: an init the OOM killer ends says nothing more."""
    if config.verbosity < levels.WARNING:
        return
    from nucleus_trio.cgroups import memory_limit, memory_warning

    warning = memory_warning(memory_limit())
    if warning is not None:
        _stderr(warning)


def _parse(args: "Sequence[str]", environ: "Mapping[str, str]") -> Config | int:
    """The configuration, or the exit code of a usage error, help or version."""
    try:
        action, config = parse_args(args, environ)
    except UsageError as exc:
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
        from nucleus_trio import events

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

        if isinstance(exc, SpawnError):
            message, code, error = exc.message, exc.exit_code, exc.reason
        else:
            error = exc.strerror or str(exc)
            message, code = f"cannot run {config.argv[0]!r}: {error}", EXIT_CANNOT_EXECUTE
        _stderr(message)
        audit_now(audit_fd, config, events.exec_failed(config.argv[0], error, code, message))
        return -code


def _prepare(config: Config, pid: int, audit_fd: int | None, notes: "list[Event]") -> "_Launched":
    """What supervision needs once the workload runs: the pidfd, the start
    time, the first events, and the modules of an early end (loaded now,
    not once the workload has ended: see early.py)."""
    import time

    from nucleus_trio import early, events  # noqa: F401

    if audit_fd is not None:
        import json  # noqa: F401  (the records' format)

        from nucleus_trio import records  # noqa: F401
    started = time.monotonic()
    # Nobody reaps before trio runs (SIGCHLD is blocked, and not ignored),
    # so the PID is still this child's even if it has exited.
    launched = _Launched(pid, posix.pidfd_open(pid), started)
    launched.notes, launched.audit_fd = notes, audit_fd
    identity = config.identity
    notes.append(
        events.container_exec(
            pid,
            config.shown_argv(),
            env_keys=[key for key, _ in config.env],
            uid=identity.uid if identity is not None else None,
            gid=identity.gid if identity is not None else None,
            groups=identity.groups if identity is not None else None,
        )
    )
    if config.no_new_privs:
        notes.append(events.no_new_privs_set(pid))
    return launched


def _let_go(inherited_fds: list[int], audit_fd: int | None) -> None:
    """Pin no mount and hold no inherited socket open (our copies only)."""
    try:
        posix.chdir("/")
    except OSError:
        pass
    for fd in inherited_fds:
        if fd == audit_fd:
            continue
        try:
            posix.close(fd)
        except OSError:
            pass


def crash_exit(exc: BaseException, workload: "PidFd | int | None") -> int:
    """The crash guard: report ``exc``, kill the workload's group and every
    descendant, reap them, and return :data:`EXIT_INTERNAL_ERROR`.

    A dead init must not leave a workload orphaned (as a subreaper) or a
    container hung: killing is the only safe choice once the init cannot
    supervise any more.
    """
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


def _import_trio() -> None:
    """Import trio without its ``ldconfig -p`` subprocess.

    trio looks for libpthread with ``ctypes.util.find_library``, which runs
    ``ldconfig -p``: a fork and about 100 ms, at every start of the init.
    Since glibc 2.34 the pthread functions live in ``libc.so.6`` itself, so
    the answer is known without asking.
    """
    known = "CS_GNU_LIBC_VERSION" in posix.confstr_names
    libc = posix.confstr("CS_GNU_LIBC_VERSION") if known else ""
    name, _, number = (libc or "").partition(" ")
    try:
        new_glibc = name == "glibc" and tuple(map(int, number.split(".")[:2])) >= (2, 34)
    except ValueError:
        new_glibc = False
    if not new_glibc:
        import trio

        return
    import ctypes.util

    original = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        return "libc.so.6" if name == "pthread" else original(name)

    ctypes.util.find_library = find_library
    try:
        import trio  # noqa: F401
    finally:
        ctypes.util.find_library = original


class _Launched:
    """What the spawn hands on to supervision: the workload's PID, pidfd and
    start time (``None`` in pause mode), the events so far, the audit fd,
    and trio's import under way."""

    __slots__ = ("audit_fd", "importer", "notes", "pid", "pidfd", "started")

    def __init__(self, pid: int | None, pidfd: int | None, started: float | None) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.started = started
        self.notes: list[Event] = []
        self.audit_fd: int | None = None
        self.importer: TrioImport | None = None


def _start_trio_import() -> "TrioImport":
    from nucleus_trio.early import TrioImport

    return TrioImport(_import_trio)


def _supervise(config: Config, launched: _Launched) -> int:
    """Wait for trio's import or the workload's end, whichever comes first; a
    workload that ends first and leaves nothing behind is reported at once
    (see :mod:`nucleus_trio.early`), anything else is supervised on trio."""
    from nucleus_trio.early import leave_early

    pid, pidfd, importer = launched.pid, launched.pidfd, launched.importer
    assert pid is not None and pidfd is not None and importer is not None
    if importer.workload_ends_first(pidfd):
        importer.hold()
        try:
            code = leave_early(
                config, pid, pidfd, launched.notes, launched.audit_fd, launched.started
            )
        finally:
            importer.release()
        if code is not None:
            return code
    importer.join()
    return _run_trio(config, launched)


def _run_trio(config: Config, launched: _Launched) -> int:
    """Supervise on trio (imported by now)."""
    pid, pidfd, notes, audit_fd = launched.pid, launched.pidfd, launched.notes, launched.audit_fd
    import trio

    from nucleus_trio.audit import EventLog
    from nucleus_trio.init import run_with_log
    from nucleus_trio.pidfd import PidFd

    container_id, container_name = container_fields(config)
    log = EventLog(
        config.verbosity,
        audit_fd=audit_fd,
        container_id=container_id,
        container_name=container_name,
    )
    for event in opening_events(config, notes):
        log.emit(event)
    workload = PidFd(pid, pidfd) if pid is not None and pidfd is not None else None
    # Everything imported so far lives as long as the init: keep it out of
    # the collector's scans, which a storm of reaps would otherwise repeat.
    import gc

    gc.freeze()
    try:
        code = trio.run(run_with_log, config, workload, log, launched.started)
    except BaseException as exc:  # the crash guard: see crash_exit
        return crash_exit(exc, workload)
    if log.dropped:
        _stderr(f"{log.dropped} log lines were dropped (stderr too slow or broken)")
    if log.audit_dropped:
        _stderr(f"{log.audit_dropped} audit events were dropped (sink too slow or broken)")
    return code
