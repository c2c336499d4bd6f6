"""The event vocabulary: every event type the init and the library emit, built here.

One function per event type decides its ``detail``, its level, whether it
is an error and its own fields, so the command line, :func:`~nucleus_trio.run_command` and
the :class:`~nucleus_trio.Supervisor` say the same thing in the same words
(README, "Audit"). Every type is listed in :data:`EVENT_TYPES`, in
``audit.schema.json`` and in the README's table; a test holds the three
together.

Standard library only, and cheap to import: the command line builds its
first events before trio is imported, while the workload starts.
"""

import time

from nucleus_trio.levels import DEBUG, ERROR, INFO, WARNING
from nucleus_trio.signals import signal_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from nucleus_trio.shutdown import ShutdownReport
    from nucleus_trio.status import ExitStatus

#: Plain log messages: shown on stderr, never audited.
LOG = "log"

INIT_SUPERVISOR_STARTED = "init_supervisor_started"
CONTAINER_EXEC = "container_exec"
EXEC_FAILED = "exec_failed"
NO_NEW_PRIVS_SET = "no_new_privs_set"
NOTIFY_SOCKET_DROPPED = "notify_socket_dropped"
SIGNAL_FORWARDED = "signal_forwarded"
SIGNAL_DROPPED = "signal_dropped"
ZOMBIE_REAPED = "zombie_reaped"
WORKLOAD_EXITED = "workload_exited"
STATUS_LOST = "status_lost"
WORKLOAD_RESTARTING = "workload_restarting"
RESTART_LIMIT_REACHED = "restart_limit_reached"
INIT_ERROR = "init_error"
SHUTDOWN_TERMINATE = "shutdown_terminate"
SHUTDOWN_KILL = "shutdown_kill"
SHUTDOWN_COMPLETE = "shutdown_complete"
SHUTDOWN_SURVIVOR = "shutdown_survivor"
CONTAINER_STOP = "container_stop"
AUDIT_DROPPED = "audit_dropped"

#: Every audited event type (all but :data:`LOG`).
EVENT_TYPES: frozenset[str] = frozenset(
    {
        INIT_SUPERVISOR_STARTED,
        CONTAINER_EXEC,
        EXEC_FAILED,
        NO_NEW_PRIVS_SET,
        NOTIFY_SOCKET_DROPPED,
        SIGNAL_FORWARDED,
        SIGNAL_DROPPED,
        ZOMBIE_REAPED,
        WORKLOAD_EXITED,
        STATUS_LOST,
        WORKLOAD_RESTARTING,
        RESTART_LIMIT_REACHED,
        INIT_ERROR,
        SHUTDOWN_TERMINATE,
        SHUTDOWN_KILL,
        SHUTDOWN_COMPLETE,
        SHUTDOWN_SURVIVOR,
        CONTAINER_STOP,
        AUDIT_DROPPED,
    }
)


class Event:
    """One thing that happened: its type, a line for humans, a level, whether
    it is the init's error, its own fields and when it happened.

    Immutable by convention (a plain ``__slots__`` class, not attrs: events
    are built before trio, on the start-up path).
    """

    __slots__ = ("detail", "event_type", "fields", "is_error", "level", "timestamp")

    def __init__(
        self,
        event_type: str,
        detail: str,
        level: int = INFO,
        is_error: bool = False,
        fields: "Mapping[str, object] | None" = None,
        timestamp: float | None = None,
    ) -> None:
        self.event_type = event_type
        self.detail = detail
        self.level = level
        self.is_error = is_error
        self.fields: Mapping[str, object] = dict(fields or {})
        self.timestamp = time.time() if timestamp is None else timestamp

    def record(self, container_id: str, container_name: str) -> dict[str, object]:
        """The audit record (a JSON-ready ``dict``) of this event."""
        from nucleus_trio.records import audit_record

        return audit_record(
            self.event_type,
            self.detail,
            self.is_error,
            self.fields,
            timestamp=self.timestamp,
            container_id=container_id,
            container_name=container_name,
        )

    def __repr__(self) -> str:
        return f"Event({self.event_type!r}, {self.detail!r}, fields={dict(self.fields)!r})"


_LEVEL_NAMES = {ERROR: "error", WARNING: "warning", INFO: "info", DEBUG: "debug"}


def log_line(event: Event) -> bytes:
    """The stderr line for an event: ``nucleus-trio: warning: detail``."""
    prefix = "" if event.level == INFO else f"{_LEVEL_NAMES.get(event.level, 'debug')}: "
    return f"nucleus-trio: {prefix}{event.detail}\n".encode(errors="replace")


def status_fields(status: "ExitStatus") -> dict[str, object]:
    """Audit fields of an exit status: ``pid`` and ``exit_code``, or ``signal``
    and ``signo``."""
    if status.signal is not None:
        return {"pid": status.pid, "signal": signal_name(status.signal), "signo": status.signal}
    return {"pid": status.pid, "exit_code": status.code}


def log(level: int, detail: str) -> Event:
    """A plain log line (stderr only)."""
    return Event(LOG, detail, level, level == ERROR)


def supervisor_started(pid: int, *, pid1: bool, subreaper: bool, pause: bool) -> Event:
    """The init (or a supervisor) is up."""
    where = "PID 1" if pid1 else f"pid {pid}"
    fields = {"pid": pid, "pid1": pid1, "subreaper": subreaper, "pause": pause}
    return Event(INIT_SUPERVISOR_STARTED, f"supervisor started as {where}", DEBUG, False, fields)


def container_exec(
    pid: int,
    argv: "Sequence[str]",
    *,
    env_keys: "Iterable[str]" = (),
    uid: int | None = None,
    gid: int | None = None,
    groups: "Sequence[int] | None" = None,
) -> Event:
    """A workload was started. ``env_keys`` names the variables that were set
    for it (never their values)."""
    shown = " ".join(argv).replace("\n", "\\n")
    fields: dict[str, object] = {"pid": pid, "argv": list(argv)}
    keys = list(env_keys)
    if keys:
        fields["env_keys"] = keys
    if uid is not None or gid is not None or groups is not None:
        fields["uid"] = uid
        fields["gid"] = gid
        fields["groups"] = list(groups or ())
    return Event(CONTAINER_EXEC, f"started workload pid={pid}: {shown[:200]}", INFO, False, fields)


def exec_failed(program: str, error: str, exit_code: int, message: str | None = None) -> Event:
    """A workload could not be started (``exit_code`` 126 or 127)."""
    detail = message or f"cannot run {program!r}: {error}"
    fields = {"program": program, "error": error, "exit_code": exit_code}
    return Event(EXEC_FAILED, detail, ERROR, True, fields)


def no_new_privs_set(pid: int) -> Event:
    """``PR_SET_NO_NEW_PRIVS`` was set for the workload."""
    return Event(
        NO_NEW_PRIVS_SET, f"PR_SET_NO_NEW_PRIVS set for pid={pid}", DEBUG, False, {"pid": pid}
    )


def notify_socket_dropped(reason: str) -> Event:
    """``NOTIFY_SOCKET`` was not passed to the workload (``reason`` says why)."""
    return Event(NOTIFY_SOCKET_DROPPED, reason, WARNING, False)


def signal_forwarded(
    signo: int,
    target: int,
    *,
    received: int | None = None,
    reason: str | None = None,
    level: int = INFO,
    detail: str | None = None,
) -> Event:
    """``signo`` was sent to ``target`` (a pid, or minus a process group).
    ``received`` is the signal that came in, when a rewrite changed it."""
    fields: dict[str, object] = {"signal": signal_name(signo), "signo": signo, "target": target}
    shown = signal_name(signo)
    if received is not None and received != signo:
        fields["rewritten_from"] = signal_name(received)
        shown = f"{shown} (rewritten from {signal_name(received)})"
    if reason is not None:
        fields["reason"] = reason
    where = f"group {-target}" if target < 0 else f"pid {target}"
    text = detail or f"forwarded {shown} to {where}"
    return Event(SIGNAL_FORWARDED, text, level, False, fields)


def signal_dropped(received: int) -> Event:
    """A rewrite to 0 swallowed ``received``."""
    fields = {"signal": signal_name(received), "signo": received}
    detail = f"received {signal_name(received)} (dropped by a rewrite)"
    return Event(SIGNAL_DROPPED, detail, DEBUG, False, fields)


def zombie_reaped(status: "ExitStatus", level: int = DEBUG) -> Event:
    """An orphan was reaped."""
    detail = f"reaped zombie process with pid={status.pid} ({status.describe()})"
    return Event(ZOMBIE_REAPED, detail, level, False, status_fields(status))


def workload_exited(status: "ExitStatus") -> Event:
    """A workload exited (and was reaped by its own waiter)."""
    detail = f"workload pid={status.pid} {status.describe()}"
    return Event(WORKLOAD_EXITED, detail, INFO, False, status_fields(status))


def status_lost(pid: int) -> Event:
    """A workload was reaped by someone else: its status is unknown."""
    detail = f"pid {pid} was reaped by someone else: its exit status is lost"
    return Event(STATUS_LOST, detail, ERROR, True, {"pid": pid})


def workload_restarting(status: "ExitStatus", restarts: int, delay: float) -> Event:
    """A worker with a restart policy exited and starts again after ``delay``
    seconds (its ``restarts``-th restart)."""
    detail = (
        f"workload pid={status.pid} {status.describe()}: "
        f"restart {restarts} in {delay:.3g} s"
    )
    fields = {**status_fields(status), "restarts": restarts, "delay": round(delay, 6)}
    return Event(WORKLOAD_RESTARTING, detail, WARNING, False, fields)


def restart_limit_reached(status: "ExitStatus", restarts: int, window: float) -> Event:
    """A worker failed too often (its burst limit): it is not restarted again."""
    detail = (
        f"workload pid={status.pid} {status.describe()}: "
        f"{restarts} restarts within {window:g} s, not restarted again"
    )
    fields = {**status_fields(status), "restarts": restarts, "window": window}
    return Event(RESTART_LIMIT_REACHED, detail, ERROR, True, fields)


def init_error(detail: str, level: int = ERROR) -> Event:
    """Something in the init (or supervisor) itself went wrong."""
    return Event(INIT_ERROR, detail, level, True)


def shutdown_signalled(phase: str, signo: int, pids: "Sequence[int]") -> Event:
    """The shutdown sent ``signo`` to ``pids`` (``phase``: terminate or kill)."""
    shown = " ".join(str(pid) for pid in pids[:50])
    more = f" (+{len(pids) - 50} more)" if len(pids) > 50 else ""
    plural = "es" if len(pids) != 1 else ""
    detail = (
        f"shutdown: sent {signal_name(signo)} to {len(pids)} process{plural} "
        f"left behind: {shown}{more}"
    )
    event_type = SHUTDOWN_KILL if phase == "kill" else SHUTDOWN_TERMINATE
    level = WARNING if phase == "kill" else INFO
    fields = {"signal": signal_name(signo), "pids": list(pids)}
    return Event(event_type, detail, level, False, fields)


def shutdown_complete(
    seconds: float, terminated: "Sequence[int]", killed: "Sequence[int]", survivors: "Sequence[int]"
) -> Event:
    """The shutdown is over."""
    on_term = len(set(terminated) - set(killed))
    detail = (
        f"shutdown: done in {seconds:.3f} s ({on_term} ended on SIGTERM, "
        f"{len(killed)} killed, {len(survivors)} survived)"
    )
    fields = {
        "seconds": round(seconds, 6),
        "terminated": len(terminated),
        "killed": len(killed),
        "survivors": list(survivors),
    }
    return Event(SHUTDOWN_COMPLETE, detail, INFO, False, fields)


def shutdown_over(report: "ShutdownReport") -> list[Event]:
    """The events that close a shutdown: ``shutdown_complete`` when it had
    anything to do, and a ``shutdown_survivor`` per process SIGKILL missed."""
    done: list[Event] = []
    if report.terminated or report.survivors:
        done.append(
            shutdown_complete(report.seconds, report.terminated, report.killed, report.survivors)
        )
    done.extend(shutdown_survivor(pid) for pid in report.survivors)
    return done


def shutdown_survivor(pid: int) -> Event:
    """``pid`` survived SIGKILL (uninterruptible sleep): nothing more can be done."""
    return Event(
        SHUTDOWN_SURVIVOR, f"shutdown: pid {pid} survived SIGKILL", ERROR, True, {"pid": pid}
    )


def container_stop(
    exit_code: int,
    status: "ExitStatus | None",
    *,
    pause: bool = False,
    runtime: float | None = None,
) -> Event:
    """The init stops with ``exit_code``; ``status`` is the workload's."""
    fields: dict[str, object] = {"exit_code": exit_code}
    if status is not None:
        fields["workload"] = status_fields(status)
        if status.signal is not None:
            fields["signal"] = signal_name(status.signal)
    if runtime is not None:
        fields["runtime"] = round(runtime, 3)
    if pause:
        what = "pause ended"
    elif status is not None:
        what = f"workload {status.describe()}"
    else:
        what = "workload status lost"
    return Event(CONTAINER_STOP, f"stopping: {what}; exit code {exit_code}", INFO, False, fields)


def audit_dropped(count: int) -> Event:
    """``count`` events could not be written (sink full, slow or broken)."""
    plural = "s" if count != 1 else ""
    detail = f"{count} audit event{plural} dropped (sink full, slow or broken)"
    return Event(AUDIT_DROPPED, detail, WARNING, True, {"count": count})
