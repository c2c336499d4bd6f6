"""Entering a sandbox's namespaces: what to unshare (a pure decision), and
the code that runs in the forked child before the init's exec (README,
"Sandboxes").

The child that ``subprocess`` forks unshares the namespaces (a user
namespace first when the caller is not root: it maps the caller's uid and
gid to root inside, as ``unshare --user --map-root-user`` does, so no
privilege is needed), then forks again. The grandchild is PID 1 of the new
PID namespace: it mounts its own ``/proc``, sets the hostname, brings the
loopback up, and returns to ``subprocess``, which execs the init. The child
stays as the init's parent (the *relay*): it reports the init's host PID,
lets go of every descriptor, waits, and leaves with the init's status, so
that the caller's process handle ends with the init's code.

Everything here that runs after the fork uses modules loaded before it
(the child of a threaded program must import nothing).
"""

import _signal
import fcntl
import posix
import socket
import struct

import attrs

from nucleus_trio import kernel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

#: ``network``: share the caller's network, or a new one with only loopback.
NETWORKS = ("host", "none")

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sh22x"  # struct ifreq: the name, then the flags in the union

#: The relay's exit code when its stage before the init failed (the report
#: pipe says which stage, and why).
SETUP_FAILED = 127


@attrs.frozen
class Namespaces:
    """The namespaces of one sandbox, beyond its PID and mount namespaces."""

    #: A user namespace that maps the caller's uid and gid to root.
    user: bool
    #: A network namespace of its own, loopback only.
    network: bool
    #: A UTS namespace with this hostname (``None``: the caller's).
    hostname: str | None

    @property
    def flags(self) -> int:
        """The ``unshare(2)`` flags."""
        flags = kernel.CLONE_NEWPID | kernel.CLONE_NEWNS
        if self.user:
            flags |= kernel.CLONE_NEWUSER
        if self.network:
            flags |= kernel.CLONE_NEWNET
        if self.hostname is not None:
            flags |= kernel.CLONE_NEWUTS
        return flags


def plan_namespaces(
    euid: int, *, rootless: bool | None, network: str, hostname: str | None
) -> Namespaces:
    """Which namespaces a sandbox gets; raises ``ValueError`` for a bad option.

    ``rootless`` ``None`` means a user namespace exactly when the caller is
    not root (root can unshare the others directly).
    """
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    if hostname is not None and (not hostname or len(hostname.encode()) > 64 or "\0" in hostname):
        raise ValueError(f"a hostname has 1 to 64 bytes and no NUL, got {hostname!r}")
    user = euid != 0 if rootless is None else rootless
    return Namespaces(user=user, network=network == "none", hostname=hostname)


def parse_report(data: bytes) -> tuple[int | None, tuple[str, int] | None]:
    """The relay's report: the init's host PID, and the failed stage with its
    errno (``None`` when every stage succeeded)."""
    pid: int | None = None
    failure: tuple[str, int] | None = None
    for line in data.decode(errors="replace").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "pid" and rest.isdigit():
            pid = int(rest)
        elif kind == "error":
            stage, _, number = rest.partition(" ")
            failure = (stage, int(number) if number.isdigit() else 0)
    return pid, failure


class ChildSetup:
    """The ``child_setup`` of the sandbox's spawn (see the module's text).

    Made in the parent, where it loads what the child will need; called in
    the forked child, where it returns only in the grandchild.
    """

    def __init__(self, namespaces: Namespaces, report_fd: int) -> None:
        self.namespaces = namespaces
        self.report_fd = report_fd
        self.uid = posix.geteuid()
        self.gid = posix.getegid()
        kernel.load_libc()

    def __call__(self) -> None:
        stage = "unshare"
        try:
            kernel.unshare(self.namespaces.flags)
            if self.namespaces.user:
                stage = "user-map"
                self._map_root()
            stage = "fork"
            pid = posix.fork()
            if pid:
                _relay(pid, self.report_fd)
            stage = "pdeathsig"
            # The namespace must not outlive its relay (and so its caller's
            # process handle): PID 1's death ends every process in it.
            kernel.set_pdeathsig(_signal.SIGKILL)
            stage = "mount-proc"
            kernel.mount("none", "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
            flags = kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC
            kernel.mount("proc", "/proc", "proc", flags)
            if self.namespaces.hostname is not None:
                stage = "hostname"
                socket.sethostname(self.namespaces.hostname)
            if self.namespaces.network:
                stage = "loopback"
                _loopback_up()
        except OSError as exc:
            _report(self.report_fd, f"error {stage} {exc.errno or 0}\n")
            posix._exit(SETUP_FAILED)
        except BaseException:
            _report(self.report_fd, f"error {stage} 0\n")
            posix._exit(SETUP_FAILED)

    def _map_root(self) -> None:
        for name, text in (
            ("setgroups", "deny"),  # required before an unprivileged gid_map
            ("uid_map", f"0 {self.uid} 1"),
            ("gid_map", f"0 {self.gid} 1"),
        ):
            fd = posix.open(f"/proc/self/{name}", posix.O_WRONLY | posix.O_CLOEXEC)
            try:
                posix.write(fd, text.encode())
            finally:
                posix.close(fd)


def _report(fd: int, text: str) -> None:
    try:
        posix.write(fd, text.encode())
    except OSError:
        pass


def _loopback_up() -> None:
    """``ip link set lo up`` in the new network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def _relay(init_pid: int, report_fd: int) -> None:
    """The relay's life: report, hold nothing, wait, leave as the init did."""
    _report(report_fd, f"pid {init_pid}\n")
    # Every pipe the caller reads (the workload's stdio, the audit, the
    # report, subprocess's own) must end when the init's copies do.
    posix.closerange(0, 1 << 20)
    # Signals sent to the process group are the init's to forward.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    status = 0
    while True:
        try:
            _, status = posix.waitpid(init_pid, 0)
            break
        except InterruptedError:
            continue
        except OSError:
            posix._exit(SETUP_FAILED)
    if posix.WIFSIGNALED(status):
        signo = posix.WTERMSIG(status)
        if signo not in (_signal.SIGKILL, _signal.SIGSTOP):  # these need no help
            _signal.signal(signo, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {signo})
        posix.kill(posix.getpid(), signo)
        posix._exit(128 + signo)
    posix._exit(posix.waitstatus_to_exitcode(status))


def init_command(
    python: str, path: "Sequence[str]", flags: "Sequence[str]", audit_fd: int, argv: "Sequence[str]"
) -> list[str]:
    """The init's command line in the sandbox: this interpreter, isolated,
    with the caller's module path (so the init runs the caller's
    nucleus-trio and trio), the flags, the audit pipe, the workload."""
    boot = (
        f"import sys; sys.path[:0] = {list(path)!r}; sys.argv[0] = 'nucleus-trio'; "
        "from nucleus_trio._entry import main; main()"
    )
    return [python, "-I", "-S", "-c", boot, *flags, "--audit", f"fd:{audit_fd}", "--", *argv]
