"""Starting workloads: the command line's fork and exec before trio is
imported (:func:`fork_exec`), and the one spawn path once a loop runs
(:func:`popen_workload`), which the supervisor and :func:`run_command` share.

Two ways meet every rule of the README's "Signals" section at once.
``posix_spawn`` does not: it leaves glibc's internal signals 32 and 33
ignored in the child and cannot change identity; nor does a plain
``subprocess.Popen``, which copies the caller's blocked mask into the child.

- The quick way, whenever the workload is to start with no signal ignored,
  no new identity and no terminal to take (a container's usual case):
  ``_posixsubprocess.fork_exec``, the C half of ``subprocess``, with its
  ``vfork``. No page table is copied and no Python runs in the child, which
  makes the spawn 1 to 1.5 ms quicker (README, "Benchmarks"). It gives the
  child the caller's mask, so the caller's mask is emptied for the moment of
  the spawn, with every signal caught by a recorder meanwhile and sent again
  once it is blocked again: none is lost, none reaches the init's handlers.
- Otherwise Python's own ``fork``, with the child's state set up in Python
  before the exec. Safe, because the init has a single thread until trio
  starts.

Standard library only, and ``posix`` rather than ``os``, whose import costs
the start-up path 1.5 ms.
"""

import _signal
import errno
import posix
import sys

from nucleus_trio.signals import SYNCHRONOUS

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    import subprocess
    from collections.abc import Callable, Mapping, Sequence
    from signal import _HANDLER
    from types import ModuleType

    from nucleus_trio.identity import Identity

__all__ = ["SpawnError", "fork_exec"]

#: Python ignores these two at start-up, so the init cannot know whether it
#: inherited them ignored: the workload gets them at their defaults.
PYTHON_IGNORED: frozenset[int] = frozenset({_signal.SIGPIPE, _signal.SIGXFSZ})

#: The exit of a child whose exec failed: never seen, the parent reads the
#: error from the report pipe and reaps the child.
_CHILD_FAILED = 127

#: ``os.defpath``: the search path when the environment has no PATH.
_DEFAULT_PATH = "/bin:/usr/bin"

_SETTABLE: frozenset[int] = frozenset(_signal.valid_signals() - {_signal.SIGKILL, _signal.SIGSTOP})


def exec_failure_code(errno_value: int) -> int:
    """127 for a program that does not exist, 126 for one that cannot run."""
    # Imported here: the exit codes are needed once something failed, and
    # each module read before the spawn is start latency (README, "Benchmarks").
    from nucleus_trio.exits import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND

    if errno_value in (errno.ENOENT, errno.ENOTDIR):
        return EXIT_NOT_FOUND
    return EXIT_CANNOT_EXECUTE


def workload_ignored_signals(inherited_ignored: frozenset[int]) -> frozenset[int]:
    """The signals the workload starts with ignored; every other one is default."""
    return (inherited_ignored & _SETTABLE) - PYTHON_IGNORED


class SpawnError(OSError):
    """The workload could not be started; ``exit_code`` is 126 or 127.

    An ``OSError``, raised as the subclass that ``subprocess`` raises for the
    same ``errno`` (``FileNotFoundError``, ``PermissionError``,
    ``NotADirectoryError``, ...), with ``errno`` and ``filename`` set: the
    program, or the working directory when that is what is missing
    (``stage`` ``"chdir"``). ``str()`` is the init's one-line message.
    """

    program: str
    stage: str

    def __new__(
        cls, program: str, errno_value: int, stage: str = "exec", filename: str | None = None
    ) -> "SpawnError":
        if cls is SpawnError:
            cls = _subclass_for(errno_value)
        # OSError reads its arguments in __new__ once a subclass has its own.
        return super().__new__(cls, errno_value, posix.strerror(errno_value), filename or program)

    def __init__(
        self, program: str, errno_value: int, stage: str = "exec", filename: str | None = None
    ) -> None:
        self.program = program
        self.stage = stage

    @property
    def exit_code(self) -> int:
        """The init's exit code for this failure."""
        if self.stage != "exec":
            from nucleus_trio.exits import EXIT_CANNOT_EXECUTE  # see exec_failure_code

            return EXIT_CANNOT_EXECUTE
        return exec_failure_code(self.errno or 0)

    @property
    def reason(self) -> str:
        """The system's text for the error."""
        return self.strerror or posix.strerror(self.errno or 0)

    @property
    def message(self) -> str:
        """The one-line message for stderr (without the ``nucleus-trio:`` prefix)."""
        if self.stage == "chdir":
            return f"cannot run {self.program!r}: directory {self.filename!r}: {self.reason}"
        if self.stage != "exec":
            return f"cannot run {self.program!r}: {self.stage}: {self.reason}"
        return f"cannot run {self.program!r}: {self.reason}"

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (SpawnError, (self.program, self.errno, self.stage, self.filename))


#: The ``OSError`` subclass that ``subprocess`` raises for an ``errno``.
_OS_ERRORS: dict[int, type[OSError]] = {
    errno.ENOENT: FileNotFoundError,
    errno.EACCES: PermissionError,
    errno.EPERM: PermissionError,
    errno.ENOTDIR: NotADirectoryError,
    errno.EISDIR: IsADirectoryError,
}

_SUBCLASSES: dict[type[OSError], type[SpawnError]] = {}

_SUBCLASS_DOC = "A :class:`SpawnError` that is also the ``OSError`` subclass for its ``errno``."


def _subclass_for(errno_value: int) -> type[SpawnError]:
    """``SpawnFileNotFoundError`` (a :class:`SpawnError` and a
    ``FileNotFoundError``) and its kin, made on first use: four classes
    with ``OSError`` bases cost the start-up path 0.1 ms (README,
    "Benchmarks"), and most runs raise none."""
    base = _OS_ERRORS.get(errno_value)
    if base is None:
        return SpawnError
    subclass = _SUBCLASSES.get(base)
    if subclass is None:
        name = f"Spawn{base.__name__}"
        namespace = {"__module__": __name__, "__qualname__": name, "__doc__": _SUBCLASS_DOC}
        subclass = _SUBCLASSES[base] = type(name, (SpawnError, base), namespace)
    return subclass


def should_take_terminal(fd: int = 0) -> bool:
    """Whether the workload should get the terminal's foreground.

    Only when ``fd`` is a terminal whose foreground group is the init's own:
    otherwise the init would steal the terminal from the real foreground job.
    """
    try:
        return posix.isatty(fd) and posix.tcgetpgrp(fd) == posix.getpgrp()
    except OSError:
        return False


def _reachable(path: str) -> bool:
    """Whether ``path`` exists as far as this process may look."""
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def _exec_search(argv: "Sequence[str]", env: "Mapping[str, str]") -> None:
    """``execvpe`` without its lazy imports: the child may already run as a
    user who cannot read the standard library.

    PATH comes from the workload's environment, as a shell would use it; the
    error reported is the first one that is not "not found here", as
    ``execvp`` reports.
    """
    program = argv[0]
    arguments = list(argv)
    environment = dict(env)
    if "/" in program:
        posix.execve(program, arguments, environment)
    first_error: OSError | None = None
    for directory in environment.get("PATH", _DEFAULT_PATH).split(":"):
        try:
            posix.execve(f"{directory or '.'}/{program}", arguments, environment)
        except OSError as exc:
            if exc.errno == errno.EACCES and not _reachable(f"{directory or '.'}/{program}"):
                continue  # a directory we may not search: not found here, as in bash
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR) and first_error is None:
                first_error = exc
    raise first_error or OSError(errno.ENOENT, posix.strerror(errno.ENOENT))


def _child(
    argv: "Sequence[str]",
    env: "Mapping[str, str]",
    ignored: frozenset[int],
    take_terminal: bool,
    identity: "Identity | None",
    no_new_privs: bool,
    report: int,
) -> None:
    """Runs in the forked child: set the workload's state up, then exec."""
    stage = "setpgid"
    try:
        posix.setpgid(0, 0)
        if take_terminal:
            stage = "tcsetpgrp"
            # SIGTTOU is still blocked (inherited), so a background caller is
            # let through by the kernel instead of being stopped.
            try:
                posix.tcsetpgrp(0, posix.getpgrp())
            except OSError as exc:
                if exc.errno not in (errno.ENOTTY, errno.ENXIO, errno.EBADF):
                    raise
        if identity is not None:
            # Groups first, then the gid, then the uid: each step needs the
            # privilege the next one drops.
            stage = "setgroups"
            posix.setgroups(list(identity.groups))
            if identity.gid is not None:
                stage = "setgid"
                posix.setresgid(identity.gid, identity.gid, identity.gid)
            if identity.uid is not None:
                stage = "setuid"
                posix.setresuid(identity.uid, identity.uid, identity.uid)
        if no_new_privs:
            stage = "no_new_privs"
            from nucleus_trio.kernel import set_no_new_privs

            set_no_new_privs()
        stage = "signals"
        # Dispositions first, then the mask: a signal pending in the child now
        # meets its default action, never a copy of the init's handlers.
        for signo in _SETTABLE:
            _signal.signal(signo, _signal.SIG_IGN if signo in ignored else _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
        stage = "exec"
        _exec_search(argv, env)
    except OSError as exc:
        code = exc.errno if exc.errno is not None else errno.EINVAL
        posix.write(report, f"{code}:{stage}".encode())
    except BaseException:
        posix.write(report, f"{errno.EINVAL}:{stage}".encode())
    finally:
        posix._exit(_CHILD_FAILED)


def fork_exec(
    argv: "Sequence[str]",
    *,
    env: "Mapping[str, str] | None" = None,
    ignored: frozenset[int] = frozenset(),
    take_terminal: bool = False,
    identity: "Identity | None" = None,
    no_new_privs: bool = False,
) -> int:
    """Start ``argv`` in its own process group and return its PID.

    Returns only once the exec has succeeded, so the process group exists
    before anyone can signal it. ``env`` of ``None`` passes the init's own
    environment. ``ignored`` are the signals that start ignored in the
    workload; every other one starts at its default, with an empty mask.
    ``identity`` sets the groups, gid and uid (in that order); with
    ``no_new_privs`` the workload cannot gain privileges through exec.
    Raises :class:`SpawnError` when the program cannot be run; the failed
    child is reaped before that.

    Without ``ignored``, ``take_terminal``, ``identity`` and
    ``no_new_privs``, and when called from the main thread, the child is
    started with ``vfork`` (see the module's docstring): the caller's
    signals that arrive meanwhile are held and sent to it again, its mask and
    handlers are as they were. Otherwise it forks.
    """
    if not argv:
        raise ValueError("argv must not be empty")
    if env is None:
        import os  # a library caller's (the command line passes its own)

        env = os.environ
    if not (ignored or take_terminal or identity is not None or no_new_privs):
        pid = _vfork_exec(argv, env)
        if pid is not None:
            return pid
    if no_new_privs:
        from nucleus_trio.kernel import load_libc

        load_libc()  # in the parent: the child must not import anything
    read_end, write_end = posix.pipe2(posix.O_CLOEXEC)
    try:
        pid = posix.fork()
    except BaseException:
        posix.close(read_end)
        posix.close(write_end)
        raise
    if pid == 0:  # pragma: no cover - the child execs or _exits
        posix.close(read_end)
        _child(argv, env, ignored, take_terminal, identity, no_new_privs, write_end)
    posix.close(write_end)
    try:
        chunks = []
        while chunk := posix.read(read_end, 256):
            chunks.append(chunk)
    finally:
        posix.close(read_end)
    if not chunks:
        return pid
    posix.waitpid(pid, 0)
    code_text, _, stage = b"".join(chunks).decode(errors="replace").partition(":")
    try:
        code = int(code_text)
    except ValueError:
        code = errno.EINVAL
    raise SpawnError(argv[0], code, stage or "exec")


def _vfork_exec(argv: "Sequence[str]", env: "Mapping[str, str]") -> int | None:
    """The quick way (see the module's docstring): the PID of the workload,
    started with every signal at its default and an empty mask, or ``None``
    where the quick way does not apply or the program could not be run (the
    caller's ``fork`` then does it again, and reports the error exactly)."""
    c_fork_exec = _c_fork_exec()
    if c_fork_exec is None:  # pragma: no cover - part of every CPython on Linux
        return None
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    program = argv[0]
    try:
        if "/" in program:
            candidates = [program.encode(encoding, errors)]
        else:
            candidates = [
                f"{directory or '.'}/{program}".encode(encoding, errors)
                for directory in env.get("PATH", _DEFAULT_PATH).split(":")
            ]
        environment = [f"{name}={value}".encode(encoding, errors) for name, value in env.items()]
    except UnicodeError:
        return None
    recorded: list[int] = []
    record = _record_into(recorded)
    previous: dict[int, _HANDLER] = {}
    # The synchronous signals keep their dispositions: a recorder on SIGSEGV
    # would turn a fault into a loop.
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _SETTABLE - SYNCHRONOUS)
    read_end, write_end = posix.pipe2(posix.O_CLOEXEC)
    pid = None
    try:
        for signo in _SETTABLE - SYNCHRONOUS:
            handler = _signal.getsignal(signo)
            if handler is None:
                return None  # a handler Python did not install: it could not be put back
            _signal.signal(signo, record)
            previous[signo] = handler
        for signo in SYNCHRONOUS:
            if _signal.getsignal(signo) == _signal.SIG_IGN:
                return None  # the child would keep it ignored
        # The child gets the mask of the moment (the quick way cannot set
        # one): empty; whatever arrives meanwhile meets a recorder.
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
        # args, executable_list, close_fds, pass_fds, cwd, env, the six
        # stdio ends (inherited), the error pipe, restore_signals,
        # call_setsid, pgid_to_set (its own group), gid, extra_groups, uid,
        # child_umask, preexec_fn, and allow_vfork before 3.14.
        arguments: tuple[object, ...] = (list(argv), candidates, False, (), None, environment)
        arguments += (-1, -1, -1, -1, -1, -1, read_end, write_end)
        arguments += (True, False, 0, None, None, None, -1, None)
        if sys.version_info < (3, 14):
            arguments += (True,)
        pid = c_fork_exec(*arguments)
    except (TypeError, ValueError):
        return None  # an unknown signature, a NUL in an argument, not the main thread
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        for signo, handler in previous.items():
            _signal.signal(signo, handler)
        for signo in recorded:
            posix.kill(posix.getpid(), signo)  # pending again, as if never taken
        posix.close(write_end)
        try:
            failed = pid is not None and bool(posix.read(read_end, 256))
        finally:
            posix.close(read_end)
    if failed:
        posix.waitpid(pid, 0)
        return None
    return pid


def _c_fork_exec() -> "Callable[..., int] | None":
    """``_posixsubprocess.fork_exec`` (its signature changes with the version).

    Where the module is a shared library (pyenv's builds, the official
    Docker images' Pythons) rather than built in (Debian's), the import
    system's search for it costs the start-up path 0.3 ms, three times the
    ``dlopen`` itself (README, "Benchmarks"): it is loaded straight from the
    standard library's ``lib-dynload`` directory, with the import system as
    the fallback.
    """
    name = "_posixsubprocess"
    module = sys.modules.get(name)
    if module is None and name not in sys.builtin_module_names:
        try:
            module = _load_shared_library(name)
        except Exception:  # a layout of the interpreter's that is not the usual one
            module = None
    if module is None:
        try:
            import _posixsubprocess
        except ImportError:  # pragma: no cover - part of every CPython on Linux
            return None
        module = _posixsubprocess
    spawn: Callable[..., int] = module.fork_exec
    return spawn


def _load_shared_library(name: str) -> "ModuleType | None":
    """Module ``name`` from the first ``lib-dynload`` directory on
    ``sys.path``, loaded and registered as the import system would."""
    import _imp

    bootstrap = sys.modules["_frozen_importlib"]
    external = sys.modules["_frozen_importlib_external"]
    for directory in sys.path:
        if directory.endswith("/lib-dynload"):
            for suffix in _imp.extension_suffixes():
                origin = f"{directory}/{name}{suffix}"
                try:
                    posix.stat(origin)
                except OSError:
                    continue
                spec = bootstrap.ModuleSpec(
                    name, external.ExtensionFileLoader(name, origin), origin=origin
                )
                spec.has_location = True
                module: ModuleType = bootstrap.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
                return module
    return None


def _record_into(recorded: list[int]) -> "Callable[[int, object], None]":
    """A signal handler that only notes the signal, for :func:`_vfork_exec`."""

    def record(signo: int, frame: object) -> None:
        recorded.append(signo)

    return record


def _reset_mask_and(no_new_privs: bool, child_setup: "Callable[[], None] | None") -> None:
    """Runs in a ``Popen`` child between fork and exec: an empty signal mask
    (a caller that blocked signals must not pass them on blocked),
    ``PR_SET_NO_NEW_PRIVS`` when asked, then ``child_setup``. No
    Python-level locks are taken."""
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    if no_new_privs:
        from nucleus_trio.kernel import set_no_new_privs

        set_no_new_privs()
    if child_setup is not None:
        child_setup()


def popen_workload(
    argv: "Sequence[str]",
    *,
    env: "Mapping[str, str] | None",
    cwd: "str | os.PathLike[str] | None" = None,
    identity: "Identity | None" = None,
    process_group: bool = True,
    no_new_privs: bool = False,
    close_fds: bool = True,
    pass_fds: "Sequence[int]" = (),
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    child_setup: "Callable[[], None] | None" = None,
) -> "tuple[subprocess.Popen[bytes], dict[str, int]]":
    """Start ``argv`` with ``subprocess`` once an event loop (and maybe its
    threads) runs: ``subprocess`` forks in C, which is safe with threads.

    Returns the ``Popen`` and, by name (``"stdout"``...), our ends of the
    pipes asked for with ``subprocess.PIPE``: made here, as trio makes them,
    not by ``subprocess`` (whose file objects cost twice the CPU of the rest
    of the start, and a ``dup`` to take the descriptor from). The child
    starts with an empty signal mask. ``child_setup`` runs in the child
    last before the exec (the sandboxes' entry into their namespaces: it
    must import nothing). Raises ``OSError`` (the subclass ``subprocess``
    raises) when the program cannot be run.
    """
    import subprocess

    if no_new_privs:
        from nucleus_trio.kernel import load_libc

        load_libc()  # in the parent: the child must not import anything
    kwargs: dict[str, object] = {}
    if identity is not None:
        if identity.uid is not None:
            kwargs["user"] = identity.uid
        if identity.gid is not None:
            kwargs["group"] = identity.gid
        kwargs["extra_groups"] = list(identity.groups)
    # Python in the child only when there is something to do there.
    blocked = bool(_signal.pthread_sigmask(_signal.SIG_BLOCK, ()))
    needed = blocked or no_new_privs or child_setup is not None
    preexec = (lambda: _reset_mask_and(no_new_privs, child_setup)) if needed else None
    streams = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
    ours: dict[str, int] = {}
    theirs: list[int] = []
    try:
        for name, target in streams.items():
            if target == subprocess.PIPE:
                read_end, write_end = posix.pipe2(posix.O_CLOEXEC)
                mine, child_end = read_end, write_end
                if name == "stdin":
                    mine, child_end = write_end, read_end
                ours[name] = mine
                theirs.append(child_end)
                streams[name] = child_end
        child = subprocess.Popen(  # type: ignore[call-overload]
            list(argv),
            env=None if env is None else dict(env),
            cwd=cwd,
            process_group=0 if process_group else None,
            close_fds=close_fds,
            pass_fds=tuple(pass_fds),
            preexec_fn=preexec,
            **streams,
            **kwargs,
        )
    except BaseException:
        for fd in ours.values():
            posix.close(fd)
        raise
    finally:
        for fd in theirs:
            posix.close(fd)
    return child, ours
