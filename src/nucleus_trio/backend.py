"""The one place that knows whether it runs under trio or asyncio.

The machinery (pidfds, the reaper, the shutdown, signal forwarding, the event
sinks) is written once against these few calls (:class:`Loop`); the command
line runs it on trio, the library on whichever loop its caller runs (README,
"Library").
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sniffio


def is_trio() -> bool:
    """Whether the current task runs under trio (else asyncio, through anyio)."""
    return sniffio.current_async_library() == "trio"


async def wait_readable(fd: int) -> None:
    """Wait until ``fd`` is readable, without blocking the loop."""
    await loop().wait_readable(fd)


def notify_closing(fd: int) -> None:
    """Wake a task waiting on ``fd`` before it is closed (no-op outside a loop)."""
    try:
        trio_loop = is_trio()
    except sniffio.AsyncLibraryNotFoundError:
        return  # outside an event loop: nobody can be waiting on it
    if trio_loop:
        import trio

        trio.lowlevel.notify_closing(fd)
    else:
        import anyio

        anyio.notify_closing(fd)


async def checkpoint() -> None:
    """Yield to the loop (and let cancellation in)."""
    await loop().checkpoint()


class Loop:
    """The calls that trio and anyio share, bound to the running loop's own.

    On trio they are trio's: the command line never loads anyio's trio
    backend (about 50 ms of imports and 2 MiB at every start, README
    "Benchmarks"); on asyncio they are anyio's. The names are those both
    libraries use (``Event``, ``CancelScope``, ``move_on_after``, ...), with
    ``open_task_group`` for trio's ``open_nursery`` and anyio's
    ``create_task_group`` (the same ``start_soon`` and ``cancel_scope``).
    """

    def __init__(self, trio_loop: bool) -> None:
        self.is_trio = trio_loop
        lib: Any
        if trio_loop:
            import trio

            lib = trio
            self.open_task_group: Callable[[], Any] = trio.open_nursery
            self.cancelled: type[BaseException] = trio.Cancelled
        else:
            import anyio
            import anyio.lowlevel

            lib = anyio
            self.open_task_group = anyio.create_task_group
            self.cancelled = anyio.get_cancelled_exc_class()
        self.Event: Callable[[], Any] = lib.Event
        self.CancelScope: Callable[..., Any] = lib.CancelScope
        self.move_on_after: Callable[[float], Any] = lib.move_on_after
        self.sleep: Callable[[float], Awaitable[None]] = lib.sleep
        self.sleep_until: Callable[[float], Awaitable[None]] = lib.sleep_until
        self.sleep_forever: Callable[[], Awaitable[None]] = lib.sleep_forever
        self.current_time: Callable[[], float] = lib.current_time
        self.checkpoint: Callable[[], Awaitable[None]] = lib.lowlevel.checkpoint
        self.checkpoint_if_cancelled: Callable[[], Awaitable[None]] = (
            lib.lowlevel.checkpoint_if_cancelled
        )
        self.wait_readable: Callable[[int], Awaitable[None]] = (
            lib.lowlevel.wait_readable if trio_loop else lib.wait_readable
        )
        self.wait_writable: Callable[[int], Awaitable[None]] = (
            lib.lowlevel.wait_writable if trio_loop else lib.wait_writable
        )
        #: ``run_sync_in_thread(fn)``: ``fn()`` in a worker thread of trio's
        #: or anyio's pool (40 at a time), not abandoned when cancelled.
        self.run_sync_in_thread: Callable[[Callable[[], Any]], Awaitable[Any]]
        if trio_loop:
            import trio.to_thread

            self.run_sync_in_thread = trio.to_thread.run_sync
        else:
            import anyio.to_thread

            self.run_sync_in_thread = anyio.to_thread.run_sync


_LOOPS: dict[bool, Loop] = {}


def loop() -> Loop:
    """The :class:`Loop` of the running event loop."""
    trio_loop = is_trio()
    found = _LOOPS.get(trio_loop)
    if found is None:
        found = _LOOPS[trio_loop] = Loop(trio_loop)
    return found


def thread_caller() -> Callable[[Callable[[], None]], None]:
    """A function that any thread may call to run a callback in this loop's
    thread soon; the callback is dropped once the loop has ended."""
    if is_trio():
        import trio

        token = trio.lowlevel.current_trio_token()

        def call_trio(callback: Callable[[], None]) -> None:
            try:
                token.run_sync_soon(callback)
            except trio.RunFinishedError:
                pass

        return call_trio
    import asyncio

    loop = asyncio.get_running_loop()

    def call_asyncio(callback: Callable[[], None]) -> None:
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed
            pass

    return call_asyncio


def refused_signals(signals: Iterable[int]) -> set[int]:
    """The signals of ``signals`` that this loop's receiver cannot take.

    trio takes any catchable signal; asyncio, through anyio, only those of
    :class:`signal.Signals` (no realtime signals).
    """
    if is_trio():
        return set()
    known = {int(member) for member in signal.Signals}
    return {signo for signo in signals if signo not in known}


@contextmanager
def open_signal_receiver(signals: Iterable[int]) -> Iterator[AsyncIterator[int]]:
    """Receive ``signals`` as an async iterator of signal numbers.

    Under trio, every signal that arrives is delivered (trio collapses
    repeats of one signal that arrive before the receiver is read); under
    asyncio, anyio's receiver delivers each arrival.
    """
    wanted = frozenset(signals)
    if is_trio():
        import trio

        with trio.open_signal_receiver(*wanted) as receiver:
            yield receiver
        return
    import anyio

    with anyio.open_signal_receiver(*(signal.Signals(s) for s in wanted)) as receiver:
        yield _Numbers(receiver)


class _Numbers:
    """Signal numbers from anyio's receiver. A class, not an async generator:
    a ``__anext__`` cancelled by a timeout must leave it usable."""

    def __init__(self, receiver: AsyncIterator[signal.Signals]) -> None:
        self._receiver = receiver

    def __aiter__(self) -> _Numbers:
        return self

    async def __anext__(self) -> int:
        return int(await self._receiver.__anext__())
