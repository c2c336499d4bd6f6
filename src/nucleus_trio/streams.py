"""Byte streams over a workload's pipes, on trio and asyncio alike.

``start(..., stdout=subprocess.PIPE)`` gives the :class:`~nucleus_trio.Process`
a stream for that pipe, as ``trio.lowlevel.open_process`` and
``anyio.open_process`` do (README, "Library"). One small class serves both
loops: it waits for readiness through :mod:`nucleus_trio.backend` and reads
or writes the descriptor itself.
"""

from __future__ import annotations

import errno
import os
from types import TracebackType

from nucleus_trio.backend import loop, notify_closing

#: The most a single :meth:`FdStream.receive_some` returns by default.
DEFAULT_RECEIVE_SIZE = 65536


class FdStream:
    """One end of a pipe: ``receive_some`` / ``send_all`` / ``aclose``, as
    trio's ``FdStream``; ``async for chunk in stream`` reads to the end."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    def fileno(self) -> int:
        """The descriptor, or -1 once closed."""
        return self._fd

    async def receive_some(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Up to ``max_bytes`` bytes as soon as there are any; ``b""`` at the end."""
        calls = loop()
        while True:
            if self._fd < 0:
                raise ValueError("the stream is closed")
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await calls.wait_readable(self._fd)
                continue
            await calls.checkpoint()
            return data

    async def send_all(self, data: bytes) -> None:
        """Write all of ``data``; ``BrokenPipeError`` once the reader is gone."""
        calls = loop()
        view = memoryview(data)
        while view:
            if self._fd < 0:
                raise ValueError("the stream is closed")
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await calls.wait_writable(self._fd)
                continue
            view = view[written:]
        await calls.checkpoint()

    def close(self) -> None:
        """Close the descriptor (a task waiting on it is woken)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            notify_closing(fd)
            try:
                os.close(fd)
            except OSError as exc:  # pragma: no cover - closed under us
                if exc.errno != errno.EBADF:
                    raise

    async def aclose(self) -> None:
        """Close, as an async resource."""
        self.close()
        await loop().checkpoint()

    def __aiter__(self) -> FdStream:
        return self

    async def __anext__(self) -> bytes:
        data = await self.receive_some()
        if not data:
            raise StopAsyncIteration
        return data

    async def __aenter__(self) -> FdStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
