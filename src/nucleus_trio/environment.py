"""The workload's environment: inherited or minimal, plus ``--env``.

Pure functions; the one file-system question (where a ``NOTIFY_SOCKET`` path
really leads) is a parameter.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

#: The environment a workload starts from under ``--clean-env``.
MINIMAL_ENV: dict[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM": "xterm",
    "HOME": "/",
}

#: The dynamic loader's variables: never passed under ``--clean-env``.
LOADER_VARIABLES: frozenset[str] = frozenset(
    {
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "LD_DEBUG",
        "LD_PROFILE",
        "LD_DYNAMIC_WEAK",
        "LD_SHOW_AUXV",
    }
)

NOTIFY_SOCKET = "NOTIFY_SOCKET"


class EnvError(ValueError):
    """A bad ``--env``; the message is one line for the user."""


def parse_env_assignment(text: str) -> tuple[str, str]:
    """Parse ``KEY=VALUE``; the key must be non-empty and hold no ``=`` or NUL."""
    key, eq, value = text.partition("=")
    if not eq:
        raise EnvError(f"expected KEY=VALUE, got {text!r}")
    if not key:
        raise EnvError(f"expected a variable name before '=', got {text!r}")
    if "\0" in text:
        raise EnvError("NUL bytes are not allowed")
    return key, value


def check_env_assignments(
    assignments: "Iterable[tuple[str, str]]", *, clean_env: bool, sd_notify: bool
) -> None:
    """Refuse what the README ("Command line") makes a usage error."""
    for key, _ in assignments:
        if clean_env and key in LOADER_VARIABLES:
            raise EnvError(f"--env {key}: the loader's variables are refused with --clean-env")
        if key == NOTIFY_SOCKET and not sd_notify:
            raise EnvError("--env NOTIFY_SOCKET needs --sd-notify")


def notify_socket_allowed(value: str, realpath: "Callable[[str], str]") -> bool:
    """Whether ``NOTIFY_SOCKET`` may pass: abstract, or a path under /run."""
    if value.startswith("@"):
        return len(value) > 1
    if not value.startswith("/") or ".." in value.split("/"):
        return False
    resolved = realpath(value)
    return resolved.startswith(("/run/", "/var/run/"))


def workload_environment(
    inherited: "Mapping[str, str]",
    *,
    clean_env: bool,
    assignments: "Sequence[tuple[str, str]]" = (),
    sd_notify: bool = False,
    realpath: "Callable[[str], str] | None" = None,
) -> tuple[dict[str, str], list[str]]:
    """The workload's environment, and the warnings to give about it.

    Without ``clean_env`` the inherited environment passes unchanged, plus
    ``assignments``; with it, :data:`MINIMAL_ENV` plus ``assignments``.
    ``NOTIFY_SOCKET`` passes only with ``sd_notify`` and only when
    :func:`notify_socket_allowed`; otherwise it is dropped (with a warning
    when ``sd_notify`` was asked for).
    """
    env = dict(MINIMAL_ENV) if clean_env else dict(inherited)
    env.pop(NOTIFY_SOCKET, None)
    for key, value in assignments:
        env[key] = value
    if clean_env:
        for key in LOADER_VARIABLES:
            env.pop(key, None)
    warnings: list[str] = []
    if sd_notify:
        chosen = dict(assignments).get(NOTIFY_SOCKET, inherited.get(NOTIFY_SOCKET))
        if chosen is not None:
            if realpath is None:
                import os.path  # only here: os costs the start-up path 1.5 ms

                realpath = os.path.realpath
            if notify_socket_allowed(chosen, realpath):
                env[NOTIFY_SOCKET] = chosen
            else:
                env.pop(NOTIFY_SOCKET, None)
                warnings.append(
                    f"NOTIFY_SOCKET={chosen!r} dropped: only an abstract socket (@...) "
                    "or a path under /run/ or /var/run/ may pass"
                )
    else:
        env.pop(NOTIFY_SOCKET, None)
    return env, warnings


#: Set by the command's shell preamble: the size in bytes of the environment
#: the shell itself was given (from its ``/proc/PID/stat``).
SHELL_ENV_SIZE = "_NUCLEUS_TRIO_ENV_SIZE"


def undo_the_shell(environ: "Mapping[bytes, bytes]", original_size: int) -> tuple[bool, int]:
    """What the command's ``/bin/sh`` preamble changed in the environment it
    passed on (README, "In a Dockerfile"): whether it added ``PWD`` (a POSIX
    shell exports one, inherited or not), and how many bytes of variables it
    dropped (names that are not shell identifiers, ``my.var``, never pass
    through a shell). Decided from sizes alone: ``original_size`` is the
    kernel's count for the shell's own environment, ``environ`` what the
    init received; when the sizes explain neither case, ``PWD`` is kept.
    """
    total = sum(len(key) + len(value) + 2 for key, value in environ.items())
    pwd = environ.get(b"PWD")
    if original_size == total:
        return False, 0
    added = len(pwd) + 5 if pwd is not None else 0  # b"PWD=" and the NUL
    if added and original_size == total - added:
        return True, 0
    # Both: not knowing whether PWD was the shell's, keep it (count it as added).
    return False, max(0, original_size - (total - added))


def decode_environment(raw: "Mapping[bytes, bytes]") -> dict[str, str]:
    """``raw`` (``posix.environ``, ``/proc/self/environ``) decoded as
    ``os.environ`` would be, without importing ``os`` (1.5 ms of the
    start-up path: README, "Benchmarks")."""
    import sys

    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    return {
        key.decode(encoding, errors): value.decode(encoding, errors) for key, value in raw.items()
    }
