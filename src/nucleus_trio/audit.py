"""Where events go: the stderr log and the audit trail, for both faces.

Every event goes through a bounded channel per sink to that sink's task,
which hands each line to the sink's own writer thread. A slow, full or broken
sink therefore never delays forwarding or reaping, nor the other sink: when a
channel is full the event is dropped and counted, and the audit trail reports
the count in one ``audit_dropped`` event as soon as a write succeeds again.
The writer threads block every signal, so a write to a broken pipe fails
there with ``EPIPE`` instead of raising a SIGPIPE that the init would forward
to the workload (README, "Audit").

The library's sinks (:data:`EventSinkLike`) go the same way: a path or a
stream through a writer thread, a callable or a memory channel directly (they
must not block). Runs on trio and asyncio.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from nucleus_trio.backend import loop
from nucleus_trio.events import LOG, Event, audit_dropped, log_line
from nucleus_trio.levels import ERROR, WARNING
from nucleus_trio.records import audit_line

EventSinkLike = Any
"""Where a supervisor's events go: a path (``str`` or ``os.PathLike``), a text
stream with ``write``, a callable taking the record ``dict``, or a memory
channel / object stream with ``send_nowait``."""


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
        from nucleus_trio.backend import thread_caller

        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        call_soon = thread_caller()
        done = loop().Event()
        failure: list[BaseException] = []

        def job() -> None:
            try:
                write()
            except BaseException as exc:
                failure.append(exc)
            call_soon(done.set)

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
        self._capacity = capacity
        self._queue: collections.deque[Event] = collections.deque()
        self._closed = False
        self._wake: Any = None
        self._writer = WriterThread(f"nucleus-trio-{name}")

    def put(self, event: Event) -> None:
        """Queue ``event``; drop and count it when the queue is full or closed."""
        if self._closed or len(self._queue) >= self._capacity:
            self._drop()
            return
        self._queue.append(event)
        if self._wake is not None:
            self._wake.set()

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
        new_event = loop().Event
        writing = False
        try:
            while True:
                # A fresh wake-up before draining: a put during the drain
                # sets it, so the wait below cannot miss that event.
                self._wake = new_event()
                while self._queue:
                    event = self._queue.popleft()
                    writing = True
                    written = await self._write_event(event)
                    writing = False
                    if written and self._unreported and self._on_recovery is not None:
                        count, self._unreported = self._unreported, 0
                        if not await self._write_event(self._on_recovery(count)):
                            self._unreported += count
                if self._closed:
                    return
                await self._wake.wait()
        finally:
            self._closed = True
            if writing:
                self._drop()
            while self._queue:
                self._queue.popleft()
                self._drop()

    def close(self) -> None:
        """No more events: :meth:`run` returns once the queue is written."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()


class DirectSink:
    """A sink that takes each record at once, in the loop: a callable, or a
    memory channel's ``send_nowait``. It must not block; whatever it raises
    (a full channel, a bug) drops the event and is counted."""

    def __init__(
        self,
        deliver: Callable[[dict[str, object]], object],
        render: Callable[[Event], dict[str, object]],
    ) -> None:
        self.dropped = 0
        self._unreported = 0
        self._deliver = deliver
        self._render = render

    def put(self, event: Event) -> None:
        """Deliver ``event`` now; after a drop, report the count first."""
        try:
            if self._unreported:
                self._deliver(self._render(audit_dropped(self._unreported)))
                self._unreported = 0
            self._deliver(self._render(event))
        except Exception:
            self.dropped += 1
            self._unreported += 1

    async def run(self) -> None:
        """Nothing to run: events are delivered as they come."""

    def close(self) -> None:
        """Nothing to close: the sink belongs to the caller."""


class EventLog:
    """An event stream: :meth:`emit` never blocks; :meth:`run` writes.

    ``verbosity`` selects which events reach stderr (0 errors, 1 warnings,
    2 info, 3 debug; below 0, nothing: the library never writes to the
    host's stderr). With ``audit_fd`` every event that is not a plain log
    message is also written there as one JSON object per line; ``sink``
    takes them instead, in any form of :data:`~nucleus_trio.audit.EventSinkLike`.
    """

    def __init__(
        self,
        verbosity: int = WARNING,
        *,
        audit_fd: int | None = None,
        sink: EventSinkLike | None = None,
        container_id: str = "",
        container_name: str = "",
        capacity: int = 1024,
        log_fd: int = 2,
    ) -> None:
        self.verbosity = verbosity
        self.container_id = container_id
        self.container_name = container_name
        self.log_sink: Sink | None = None
        if verbosity >= 0:
            self.log_sink = Sink("log", log_line, partial(write_all, log_fd), capacity=capacity)
        self.audit_sink: Sink | DirectSink | None = None
        if audit_fd is not None:
            self.audit_sink = self._threaded(partial(write_all, audit_fd), capacity)
        elif sink is not None:
            self.audit_sink = self._library_sink(sink, capacity)

    def _threaded(self, write: Callable[[bytes], None], capacity: int) -> Sink:
        return Sink("audit", self.render_audit, write, capacity=capacity, on_recovery=audit_dropped)

    def _library_sink(self, sink: EventSinkLike, capacity: int) -> Sink | DirectSink:
        send_nowait = getattr(sink, "send_nowait", None)
        if send_nowait is not None:
            return DirectSink(send_nowait, self.record)
        write = getattr(sink, "write", None)
        if write is not None:

            def write_stream(line: bytes) -> None:
                write(line.decode())
                sink.flush()

            return self._threaded(write_stream, capacity)
        if isinstance(sink, (str, os.PathLike)):
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            fd = os.open(os.fspath(sink), flags, 0o600)
            return self._threaded(partial(write_all, fd), capacity)
        if callable(sink):
            return DirectSink(sink, self.record)
        raise TypeError(f"cannot send events to {sink!r}")

    @property
    def dropped(self) -> int:
        """Log lines dropped (stderr full, slow or broken)."""
        return self.log_sink.dropped if self.log_sink is not None else 0

    @property
    def audit_dropped(self) -> int:
        """Audit events dropped (sink full, slow or broken)."""
        return self.audit_sink.dropped if self.audit_sink is not None else 0

    def record(self, event: Event) -> dict[str, object]:
        """The audit record of ``event``, with this log's correlation fields."""
        return event.record(self.container_id, self.container_name)

    def render_audit(self, event: Event) -> bytes | None:
        """The audit line for ``event``, or ``None`` for plain log messages."""
        if event.event_type == LOG:
            return None
        return audit_line(self.record(event))

    def wants(self, level: int) -> bool:
        """Whether an event of ``level`` reaches stderr."""
        return level <= self.verbosity

    def wants_event(self, level: int) -> bool:
        """Whether an audit-worthy event of ``level`` reaches any sink."""
        return self.audit_sink is not None or level <= self.verbosity

    def emit(self, event: Event) -> None:
        """Queue ``event`` for every sink that takes it."""
        if self.log_sink is not None and event.level <= self.verbosity:
            self.log_sink.put(event)
        if self.audit_sink is not None and event.event_type != LOG:
            self.audit_sink.put(event)

    def log(self, level: int, detail: str) -> None:
        """A plain log line on stderr (never audited)."""
        if level <= self.verbosity:
            self.emit(Event(LOG, detail, level, level == ERROR))

    async def run(self) -> None:
        """Run every sink's task until :meth:`close`."""
        async with loop().open_task_group() as group:
            if self.log_sink is not None:
                group.start_soon(self.log_sink.run)
            if self.audit_sink is not None:
                group.start_soon(self.audit_sink.run)

    def close(self) -> None:
        """No more events: :meth:`run` returns once every queue is written."""
        if self.log_sink is not None:
            self.log_sink.close()
        if self.audit_sink is not None:
            self.audit_sink.close()
