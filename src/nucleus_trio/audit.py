"""Events of the init: the stderr log and the JSON-lines audit trail.

Every event goes through a bounded trio channel per sink to that sink's task,
which hands each line to the sink's own writer thread. A slow, full or broken
sink therefore never delays forwarding or reaping, nor the other sink: when a
channel is full the event is dropped and counted, and the audit trail reports
the count in one ``audit_dropped`` event as soon as a write succeeds again.
The writer threads block every signal, so a write to a broken pipe fails
there with ``EPIPE`` instead of raising a SIGPIPE that the init would forward
to the workload.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final

import attrs
import trio

from nucleus_trio.levels import DEBUG, ERROR, INFO, WARNING
from nucleus_trio.records import audit_line, audit_record

_LEVEL_NAMES: Final = {ERROR: "error", WARNING: "warning", INFO: "info", DEBUG: "debug"}

#: Event type of plain log messages: shown on stderr, never audited.
LOG: Final = "log"


@attrs.frozen
class Event:
    """One thing that happened in the init.

    ``fields`` are the event's own keys (``pid``, ``signal``, ...). Events of
    type :data:`LOG` are stderr chatter and never reach the audit trail.
    """

    event_type: str
    detail: str
    level: int = INFO
    is_error: bool = False
    fields: Mapping[str, object] = attrs.field(factory=dict)
    timestamp: float = attrs.field(factory=time.time)

    def record(self, container_id: str, container_name: str) -> dict[str, object]:
        """The audit record (a JSON-ready ``dict``) of this event."""
        return audit_record(
            self.event_type,
            self.detail,
            self.is_error,
            self.fields,
            timestamp=self.timestamp,
            container_id=container_id,
            container_name=container_name,
        )


def log_line(event: Event) -> bytes:
    """The stderr line for an event: ``nucleus-trio: warning: detail``."""
    prefix = "" if event.level == INFO else f"{_LEVEL_NAMES.get(event.level, 'debug')}: "
    return f"nucleus-trio: {prefix}{event.detail}\n".encode(errors="replace")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``, across partial writes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class WriterThread:
    """One long-lived thread that performs blocking writes for the trio loop.

    A dedicated thread, not trio's thread cache: the cache starts and retires
    threads, which would wake an otherwise idle init. This one sleeps in
    ``queue.get()`` until there is something to write.
    """

    def __init__(self, name: str = "nucleus-trio-writer") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            self._jobs.get()()

    async def run(self, write: Callable[[], None]) -> None:
        """Run ``write`` in the thread and wait for it; its exception is re-raised.

        If the caller is cancelled, the write still completes in the thread.
        """
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        failure: list[BaseException] = []

        def job() -> None:
            try:
                write()
            except BaseException as exc:
                failure.append(exc)
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        self._jobs.put(job)
        await done.wait()
        if failure:
            raise failure[0]


class Sink:
    """One destination: a bounded queue, a task and a writer thread.

    ``render`` turns an event into the bytes to write (or ``None`` to skip
    it); ``write`` performs the blocking write. ``on_recovery`` builds the
    event to write after a drop, once writing works again.
    """

    def __init__(
        self,
        name: str,
        render: Callable[[Event], bytes | None],
        write: Callable[[bytes], None],
        *,
        capacity: int = 1024,
        on_recovery: Callable[[int], Event] | None = None,
    ) -> None:
        self.name = name
        self.dropped = 0
        self._unreported = 0
        self._render = render
        self._write = write
        self._on_recovery = on_recovery
        self._send, self._receive = trio.open_memory_channel[Event](capacity)
        self._writer = WriterThread(f"nucleus-trio-{name}")

    def put(self, event: Event) -> None:
        """Queue ``event``; drop and count it when the queue is full or closed."""
        try:
            self._send.send_nowait(event)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._drop()

    def _drop(self) -> None:
        self.dropped += 1
        self._unreported += 1

    async def _write_event(self, event: Event) -> bool:
        try:
            data = self._render(event)
        except Exception:
            self._drop()  # an event that cannot be rendered must not stop the sink
            return False
        if data is None:
            return True
        try:
            await self._writer.run(partial(self._write, data))
        except Exception:
            # OSError from a full, broken or closed sink, or anything else a
            # sink may raise: the event is lost, the init goes on.
            self._drop()
            return False
        return True

    async def run(self) -> None:
        """Write queued events until :meth:`close` and the queue is empty.

        Cancelled before that (a stalled sink at exit), it counts what it
        could not write: the event being written and those still queued.
        """
        async with self._receive:
            writing = False
            try:
                async for event in self._receive:
                    writing = True
                    if not await self._write_event(event):
                        writing = False
                        continue
                    writing = False
                    if self._unreported and self._on_recovery is not None:
                        count, self._unreported = self._unreported, 0
                        if not await self._write_event(self._on_recovery(count)):
                            self._unreported += count
            finally:
                if writing:
                    self._drop()
                while True:
                    try:
                        self._receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    self._drop()

    def close(self) -> None:
        """No more events: :meth:`run` returns once the queue is written."""
        self._send.close()


def dropped_event(count: int) -> Event:
    """The ``audit_dropped`` event: ``count`` events could not be written."""
    return Event(
        "audit_dropped",
        f"{count} audit event{'s' if count != 1 else ''} dropped (sink full, slow or broken)",
        WARNING,
        True,
        {"count": count},
    )


class EventLog:
    """The init's event stream: :meth:`emit` never blocks; :meth:`run` writes.

    ``verbosity`` selects which events reach stderr (0 errors, 1 warnings,
    2 info, 3 debug). With ``audit_fd`` every event that is not a plain log
    message is also written there as one JSON object per line.
    """

    def __init__(
        self,
        verbosity: int = WARNING,
        *,
        audit_fd: int | None = None,
        container_id: str = "",
        container_name: str = "",
        capacity: int = 1024,
        log_fd: int = 2,
    ) -> None:
        self.verbosity = verbosity
        self.container_id = container_id
        self.container_name = container_name
        self.log_sink = Sink("log", log_line, partial(write_all, log_fd), capacity=capacity)
        self.audit_sink: Sink | None = None
        if audit_fd is not None:
            self.audit_sink = Sink(
                "audit",
                self.render_audit,
                partial(write_all, audit_fd),
                capacity=capacity,
                on_recovery=dropped_event,
            )

    @property
    def dropped(self) -> int:
        """Log lines dropped (stderr full, slow or broken)."""
        return self.log_sink.dropped

    @property
    def audit_dropped(self) -> int:
        """Audit events dropped (sink full, slow or broken)."""
        return self.audit_sink.dropped if self.audit_sink is not None else 0

    def render_audit(self, event: Event) -> bytes | None:
        """The audit line for ``event``, or ``None`` for plain log messages."""
        if event.event_type == LOG:
            return None
        return audit_line(event.record(self.container_id, self.container_name))

    def wants(self, level: int) -> bool:
        """Whether an event of ``level`` reaches stderr."""
        return level <= self.verbosity

    def wants_event(self, level: int) -> bool:
        """Whether an audit-worthy event of ``level`` reaches any sink."""
        return self.audit_sink is not None or level <= self.verbosity

    def emit(self, event: Event) -> None:
        """Queue ``event`` for every sink that takes it."""
        if self.wants(event.level):
            self.log_sink.put(event)
        if self.audit_sink is not None and event.event_type != LOG:
            self.audit_sink.put(event)

    def log(
        self,
        level: int,
        detail: str,
        event_type: str = LOG,
        *,
        is_error: bool | None = None,
        **fields: object,
    ) -> None:
        """Shorthand for :meth:`emit`; ``is_error`` defaults to ``level == ERROR``."""
        if event_type == LOG and not self.wants(level):
            return
        error = level == ERROR if is_error is None else is_error
        self.emit(Event(event_type, detail, level, error, fields))

    async def run(self) -> None:
        """Run every sink's task until :meth:`close`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.log_sink.run)
            if self.audit_sink is not None:
                nursery.start_soon(self.audit_sink.run)

    def close(self) -> None:
        """No more events: :meth:`run` returns once every queue is written."""
        self.log_sink.close()
        if self.audit_sink is not None:
            self.audit_sink.close()
