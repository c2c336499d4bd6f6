"""The audit record format, importable before trio (standard library only).

An audit record is one JSON object per line with the core keys
``timestamp`` (RFC 3339, UTC, milliseconds), ``container_id``,
``container_name``, ``event_type``, ``detail``, ``is_error``, followed by the
event's own fields. The schema is ``audit.schema.json`` beside this module.
"""

import posix
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

#: Keys every audit record has; an event's own fields never override them.
CORE_KEYS = ("timestamp", "container_id", "container_name", "event_type", "detail", "is_error")


def format_timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-11-29T12:56:50.123Z``."""
    whole = int(seconds)
    millis = min(int((seconds - whole) * 1000), 999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def audit_record(
    event_type: str,
    detail: str,
    is_error: bool,
    fields: "Mapping[str, object]",
    *,
    timestamp: float,
    container_id: str,
    container_name: str,
) -> dict[str, object]:
    """The JSON object of one event: the core keys, then its own fields."""
    record: dict[str, object] = {
        "timestamp": format_timestamp(timestamp),
        "container_id": container_id,
        "container_name": container_name,
        "event_type": event_type,
        "detail": detail,
        "is_error": is_error,
    }
    for key, value in fields.items():
        if key not in record:
            record[key] = value
    return record


def audit_line(record: "Mapping[str, object]") -> bytes:
    """One record as a JSON line."""
    import json

    return (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode(errors="replace")


def open_audit_destination(dest: str) -> int:
    """Open ``--audit DEST`` and return the descriptor the init writes to.

    A path is opened for appending (created 0600), ``-`` is stderr, ``fd:N``
    is descriptor N: from 3 up it is the init's alone and is marked
    close-on-exec so the workload never holds it. Raises ``OSError``.
    """
    if dest == "-":
        return 2
    if dest.startswith("fd:"):
        fd = int(dest[3:])
        posix.fstat(fd)  # it must be open
        if fd >= 3:
            posix.set_inheritable(fd, False)
        return fd
    flags = posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC
    return posix.open(dest, flags, 0o600)
