"""The init's own writes to stderr outside the log task: bounded, SIGPIPE-safe.

A stderr nobody reads (a full pipe) must not keep the init from exiting, and
a stderr whose reader is gone must not raise a SIGPIPE that the signal
receiver would forward to the workload. Standard library only: it serves the
start-up path too.
"""

import _signal
import posix
import select

#: How long a message may wait for room in a full stderr before it is dropped.
WRITE_TIMEOUT = 1.0


def write_stderr(data: bytes, *, timeout: float = WRITE_TIMEOUT) -> bool:
    """Write ``data`` to stderr unless it stays unwritable for ``timeout`` s.

    Returns whether everything was written. Never raises, never blocks for
    longer than ``timeout`` per chunk, never leaves a SIGPIPE pending.
    """
    return write_bounded(2, data, timeout=timeout)


def write_bounded(fd: int, data: bytes, *, timeout: float = WRITE_TIMEOUT) -> bool:
    """:func:`write_stderr` for any descriptor (the audit's, on the way out)."""
    previous = _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGPIPE})
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        view = memoryview(data)
        while view:
            if not poller.poll(int(timeout * 1000)):
                return False
            # At most PIPE_BUF bytes: a pipe that polls writable takes them
            # without blocking.
            written = posix.write(fd, view[: select.PIPE_BUF])
            view = view[written:]
        return True
    except BrokenPipeError:
        # The write queued a SIGPIPE for this thread: take it off again.
        _signal.sigtimedwait({_signal.SIGPIPE}, 0)
        return False
    except OSError:
        return False
    finally:
        if _signal.SIGPIPE not in previous:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {_signal.SIGPIPE})


def say(line: str) -> None:
    """One line of the init's own on stderr, ``nucleus-trio:`` first, with
    :func:`write_stderr`'s bounds."""
    write_stderr(f"nucleus-trio: {line}\n".encode(errors="replace"))


def report_fault(exc: BaseException) -> None:
    """Write ``exc`` with its traceback to stderr, directly (the log may be the
    part that failed); never raises. Standard library only: the crash guard
    uses it when trio itself failed to import."""
    import traceback

    try:
        text = "".join(traceback.format_exception(exc))
        lines = "".join(f"nucleus-trio: {line}\n" for line in text.rstrip().splitlines())
        write_stderr(lines.encode(errors="replace"))
    except Exception:
        pass
