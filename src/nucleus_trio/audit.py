"""Events of the init, and their emission off the signal and reap paths.

Every event goes through a bounded trio channel to one task, which hands each
line to a dedicated writer thread. A slow, full or broken sink therefore never
delays forwarding or reaping: when the channel is full the event is dropped
and counted. The thread blocks every signal, so a write to a broken pipe
fails there with ``EPIPE`` instead of raising a SIGPIPE that the init would
forward to the workload.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final

import attrs
import trio

from nucleus_trio.levels import DEBUG, ERROR, INFO, WARNING

_LEVEL_NAMES: Final = {ERROR: "error", WARNING: "warning", INFO: "info", DEBUG: "debug"}


@attrs.frozen
class Event:
    """One thing that happened in the init."""

    event_type: str
    detail: str
    level: int = INFO
    is_error: bool = False
    fields: Mapping[str, object] = attrs.field(factory=dict)


def log_line(event: Event) -> bytes:
    """The stderr line for an event: ``nucleus-trio: [warning] detail``."""
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

    def __init__(self) -> None:
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
            self._thread = threading.Thread(
                target=self._loop, name="nucleus-trio-writer", daemon=True
            )
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


class EventLog:
    """The init's event stream: ``emit`` never blocks; :meth:`run` writes.

    ``verbosity`` selects which events reach stderr (0 errors, 1 warnings,
    2 info, 3 debug).
    """

    def __init__(self, verbosity: int = WARNING, *, capacity: int = 1024, fd: int = 2) -> None:
        self.verbosity = verbosity
        self.dropped = 0
        self._fd = fd
        self._send, self._receive = trio.open_memory_channel[Event](capacity)
        self._writer = WriterThread()

    def wants(self, level: int) -> bool:
        """Whether an event of ``level`` would be shown at all."""
        return level <= self.verbosity

    def emit(self, event: Event) -> None:
        """Queue ``event`` for writing; drop and count it if the queue is full."""
        if not self.wants(event.level):
            return
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.dropped += 1

    def log(self, level: int, detail: str, event_type: str = "log", **fields: object) -> None:
        """Shorthand for :meth:`emit` of a plain log event."""
        if self.wants(level):
            self.emit(Event(event_type, detail, level, level == ERROR, fields))

    async def run(self) -> None:
        """Write queued events until :meth:`close` is called and the queue is empty."""
        async with self._receive:
            async for event in self._receive:
                line = log_line(event)
                try:
                    await self._writer.run(partial(write_all, self._fd, line))
                except OSError:
                    self.dropped += 1

    def close(self) -> None:
        """No more events: :meth:`run` returns once the queue is written."""
        self._send.close()
