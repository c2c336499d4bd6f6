"""Thin wrappers for the few kernel calls the standard library lacks.

``ctypes`` costs about 3 ms to import, so it is loaded only when one of these
is called (as PID 1 with no hardening flag, never).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38

#: ``pidfd_send_signal`` flag (Linux 6.9): signal the target's process group.
PIDFD_SIGNAL_PROCESS_GROUP = 1 << 2


_libc: Any = None


def load_libc() -> Any:
    """The C library through ctypes, loaded once (before a fork, so the child
    need not import anything)."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """Call prctl(2); raise :class:`OSError` on failure."""
    import ctypes

    libc = load_libc()
    args = [ctypes.c_ulong(value) for value in (arg2, arg3, arg4, arg5)]
    result: int = libc.prctl(ctypes.c_int(option), *args)
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def set_child_subreaper(on: bool = True) -> None:
    """Adopt orphaned descendants, as PID 1 would (``PR_SET_CHILD_SUBREAPER``)."""
    prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0)


def get_child_subreaper() -> bool:
    """Whether this process is a child subreaper."""
    import ctypes

    value = ctypes.c_int(0)
    prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(value))
    return bool(value.value)


def set_pdeathsig(signo: int) -> None:
    """Have the kernel send ``signo`` to this process when its parent dies.

    The setting follows the parent that exists when it is made: if the parent
    died already, the kernel will never send it, so send it now ourselves.
    """
    parent = os.getppid()
    prctl(PR_SET_PDEATHSIG, signo)
    if os.getppid() != parent:
        os.kill(os.getpid(), signo)


def set_no_new_privs() -> None:
    """Forbid privilege gains through exec (``PR_SET_NO_NEW_PRIVS``)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def open_signalfd(signals: Iterable[int]) -> int:
    """A non-blocking, close-on-exec signalfd(2) for ``signals``.

    The signals must stay blocked in every thread for the descriptor to
    receive them.
    """
    import ctypes

    words = ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong)))
    mask = words()
    bits = 8 * ctypes.sizeof(ctypes.c_ulong)
    for signo in signals:
        mask[(signo - 1) // bits] |= 1 << ((signo - 1) % bits)
    libc = load_libc()
    fd: int = libc.signalfd(
        ctypes.c_int(-1), ctypes.byref(mask), ctypes.c_int(os.O_NONBLOCK | os.O_CLOEXEC)
    )
    if fd == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


#: ``unshare(2)`` and ``clone(2)`` flags for the namespaces of a sandbox.
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: ``mount(2)`` flags.
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def unshare(flags: int) -> None:
    """``unshare(2)``: ``os.unshare`` on Python 3.12 and later, the C library
    otherwise (load it with :func:`load_libc` before a fork)."""
    native = getattr(os, "unshare", None)
    if native is not None:
        native(flags)
        return
    import ctypes

    if load_libc().unshare(ctypes.c_int(flags)) == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    """``mount(2)`` without data (the standard library has no call for it)."""
    import ctypes

    result = load_libc().mount(
        source.encode(),
        target.encode(),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        None,
    )
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)
