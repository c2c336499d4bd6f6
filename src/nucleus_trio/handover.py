"""The command line once its workload runs, or once it has none to run
(``-P``): the first events, the hand-over to trio's machinery, or the end
before trio when the workload is gone first (:mod:`nucleus_trio.early`).

Apart from :mod:`nucleus_trio.cli` because each module read before the spawn
is start latency, and none of this is needed before it (README,
"Benchmarks"). The crash guard stays there, importable whatever fails here.
"""

import _signal
import posix

from nucleus_trio import levels
from nucleus_trio.cli import crash_exit
from nucleus_trio.config import Config
from nucleus_trio.stderr import say

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nucleus_trio.early import TrioImport
    from nucleus_trio.events import Event


def supervise(
    config: Config,
    pid: int,
    audit_fd: int | None,
    notes: "list[Event]",
    inherited_fds: list[int],
    *,
    early_sigint: bool = False,
) -> int:
    """Supervise the workload ``pid`` (started, not yet reaped) to its end and
    return the init's exit code: on trio, or without it when the workload
    ends first and leaves nothing behind."""
    launched = _prepare(config, pid, audit_fd, notes)
    if early_sigint:
        # Pending (blocked) until the receiver is up; then forwarded as usual.
        posix.kill(posix.getpid(), _signal.SIGINT)
    _let_go(inherited_fds, audit_fd)
    _warn_of_tight_memory(config)
    launched.importer = _start_trio_import()
    return _supervise(config, launched)


def pause(
    config: Config, audit_fd: int | None, notes: "list[Event]", inherited_fds: list[int]
) -> int:
    """``-P``: no workload; reap orphans on trio until SIGINT or SIGTERM."""
    launched = _Launched(None, None, None)
    launched.notes, launched.audit_fd = notes, audit_fd
    _let_go(inherited_fds, audit_fd)
    _warn_of_tight_memory(config)
    _import_trio()
    return _run_trio(config, launched)


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
        say(f"audit: the {event.event_type} event could not be written")


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


def _warn_of_tight_memory(config: Config) -> None:
    """Say at once when the cgroup's memory limit leaves the init too little
    room: an init the OOM killer ends says nothing more."""
    if config.verbosity < levels.WARNING:
        return
    from nucleus_trio.cgroups import memory_limit, memory_warning

    warning = memory_warning(memory_limit())
    if warning is not None:
        say(warning)


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
        say(f"{log.dropped} log lines were dropped (stderr too slow or broken)")
    if log.audit_dropped:
        say(f"{log.audit_dropped} audit events were dropped (sink too slow or broken)")
    return code
