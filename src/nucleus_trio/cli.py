"""The command line, from arguments to exit code.

Runs in this order, as the spec's start-up section asks: arguments are read
with the standard library, the workload is forked and exec'd, and only then
is trio imported (about 150 ms the workload does not wait for). The entry
point (:mod:`nucleus_trio._entry`) has blocked the forwarded signals before
any of this, so none is lost in between.
"""

from __future__ import annotations

import _signal
import os

from nucleus_trio.config import HELP, PROG, USAGE, Action, Config, UsageError, parse_args
from nucleus_trio.signals import TERMINAL_STOPS
from nucleus_trio.spawn import (
    EXIT_CANNOT_EXECUTE,
    EXIT_USAGE,
    SpawnError,
    fork_exec,
    should_take_terminal,
    workload_ignored_signals,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _stderr(line: str) -> None:
    """Write one line to stderr; a closed or broken stderr is not our death."""
    try:
        os.write(2, f"{PROG}: {line}\n".encode(errors="replace"))
    except OSError:
        pass


def _stdout(text: str) -> None:
    try:
        os.write(1, text.encode())
    except OSError:
        pass


def version() -> str:
    """The installed version, from the package metadata."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("nucleus-trio")
    except PackageNotFoundError:
        return "0+unknown"


def _inherited_fds() -> list[int]:
    """Descriptors above 2 that the init inherited (listed before it opens any)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    fds = []
    for name in names:
        fd = int(name)
        if fd <= 2:
            continue
        try:
            os.fstat(fd)  # the descriptor of the listing itself is closed now
        except OSError:
            continue
        fds.append(fd)
    return fds


def _prepare_init(config: Config, notes: list[tuple[int, str]]) -> None:
    """Changes to the init itself that must precede the spawn."""
    from nucleus_trio import levels

    for signo in TERMINAL_STOPS:
        # As tini: a background init never stops on terminal I/O.
        _signal.signal(signo, _signal.SIG_IGN)
    if config.pdeathsig is not None or config.wants_subreaper(os.getpid() == 1):
        from nucleus_trio import kernel

        if config.pdeathsig is not None:
            try:
                kernel.set_pdeathsig(config.pdeathsig)
            except OSError as exc:
                notes.append((levels.WARNING, f"cannot set the parent-death signal: {exc}"))
        if config.wants_subreaper(os.getpid() == 1):
            try:
                kernel.set_child_subreaper()
                notes.append((levels.DEBUG, "registered as child subreaper"))
            except OSError as exc:
                notes.append(
                    (levels.WARNING, f"cannot register as child subreaper: {exc}")
                )
    elif os.getpid() != 1:
        notes.append(
            (
                levels.WARNING,
                "not PID 1 and not a subreaper (--no-subreaper): "
                "orphans will not be reaped by this init",
            )
        )


def run(
    args: Sequence[str],
    *,
    early_sigint: bool = False,
    inherited_ignored: frozenset[int] = frozenset(),
) -> int:
    """Run the init for ``args`` and return its exit code.

    Expects the forwarded signals to be blocked already (the entry point
    does it on its first line).
    """
    try:
        action, config = parse_args(args)
    except UsageError as exc:
        _stderr(str(exc))
        try:
            os.write(2, f"{USAGE}\nTry '{PROG} --help' for more information.\n".encode())
        except OSError:
            pass
        return EXIT_USAGE
    if action == Action.HELP:
        _stdout(HELP)
        return 0
    if action == Action.VERSION:
        _stdout(f"{PROG} {version()}\n")
        return 0

    from nucleus_trio import levels

    notes: list[tuple[int, str]] = []
    _prepare_init(config, notes)
    inherited_fds = _inherited_fds()
    pid = pidfd = None
    if not config.pause:
        try:
            pid = fork_exec(
                config.argv,
                ignored=workload_ignored_signals(inherited_ignored),
                take_terminal=should_take_terminal(),
            )
        except SpawnError as exc:
            _stderr(exc.message)
            return exc.exit_code
        except OSError as exc:
            _stderr(f"cannot run {config.argv[0]!r}: {exc.strerror}")
            return EXIT_CANNOT_EXECUTE
        # Nobody reaps before trio runs (SIGCHLD is blocked), so the PID is
        # still this child's even if it has exited already.
        pidfd = os.pidfd_open(pid)
        shown = " ".join(config.argv).replace("\n", "\\n")
        notes.append((levels.INFO, f"started workload pid={pid}: {shown[:200]}"))
    if early_sigint:
        # Pending (blocked) until the receiver is up; then forwarded as usual.
        os.kill(os.getpid(), _signal.SIGINT)
    # Pin no mount and hold no inherited socket open (our copies only).
    try:
        os.chdir("/")
    except OSError:
        pass
    for fd in inherited_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    return _run_trio(config, pid, pidfd, notes)


def _import_trio() -> None:
    """Import trio without its ``ldconfig -p`` subprocess.

    trio looks for libpthread with ``ctypes.util.find_library``, which runs
    ``ldconfig -p``: a fork and about 100 ms, at every start of the init.
    Since glibc 2.34 the pthread functions live in ``libc.so.6`` itself, so
    the answer is known without asking.
    """
    libc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else ""
    name, _, number = (libc or "").partition(" ")
    try:
        new_glibc = name == "glibc" and tuple(map(int, number.split(".")[:2])) >= (2, 34)
    except ValueError:
        new_glibc = False
    if not new_glibc:
        import trio

        return
    import ctypes.util

    original = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        return "libc.so.6" if name == "pthread" else original(name)

    ctypes.util.find_library = find_library
    try:
        import trio  # noqa: F401
    finally:
        ctypes.util.find_library = original


def _run_trio(
    config: Config, pid: int | None, pidfd: int | None, notes: list[tuple[int, str]]
) -> int:
    """Import trio (only now) and supervise."""
    _import_trio()
    import trio

    from nucleus_trio.audit import EventLog
    from nucleus_trio.init import run_with_log
    from nucleus_trio.pidfd import PidFd

    log = EventLog(config.verbosity)
    for level, text in notes:
        log.log(level, text)
    workload = PidFd(pid, pidfd) if pid is not None and pidfd is not None else None
    code = trio.run(run_with_log, config, workload, log)
    if log.dropped:
        _stderr(f"{log.dropped} log events were dropped (stderr too slow or broken)")
    return code
