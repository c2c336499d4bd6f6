"""The one place that knows whether it runs under trio or asyncio.

The machinery (pidfds, the reaper, the shutdown, signal forwarding, the event
sinks) is written once against these few calls and anyio; the command line
runs it on trio, the library on whichever loop its caller runs (README,
"Library"). trio's own calls are used on trio where anyio's would add a
layer on the signal path.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager

import sniffio


def is_trio() -> bool:
    """Whether the current task runs under trio (else asyncio, through anyio)."""
    return sniffio.current_async_library() == "trio"


async def wait_readable(fd: int) -> None:
    """Wait until ``fd`` is readable, without blocking the loop."""
    if is_trio():
        import trio

        await trio.lowlevel.wait_readable(fd)
    else:
        import anyio

        await anyio.wait_readable(fd)


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
    if is_trio():
        import trio

        await trio.lowlevel.checkpoint()
    else:
        import anyio.lowlevel

        await anyio.lowlevel.checkpoint()


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
