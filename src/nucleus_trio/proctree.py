"""Which processes exist: children, descendants, the namespace, zombies, command lines.

Read from ``/proc`` with the standard library alone: the reaper, the
shutdown, the pytest fixture and the crash guard (which must work when trio
cannot even be imported) all ask the same questions.
"""

import posix

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc costs the early exit about 3 ms to import
    from collections.abc import Iterator


def list_children(pid: int | None = None) -> list[int]:
    """The PIDs of the children of ``pid`` (default: this process).

    Read from every thread's ``children`` list; for this process, on a kernel
    without those lists, from a walk of ``/proc/*/stat``.
    """
    base = "/proc/self" if pid is None else f"/proc/{pid}"
    kids: list[int] = []
    try:
        tids = posix.listdir(f"{base}/task")
    except OSError:
        tids = []
    found_file = False
    for tid in tids:
        try:
            with open(f"{base}/task/{tid}/children", "rb") as handle:
                found_file = True
                kids.extend(int(word) for word in handle.read().split())
        except OSError:
            continue
    if found_file or pid is not None:
        return kids
    return list(_children_from_stat())


def _children_from_stat() -> "Iterator[int]":
    """Fallback for kernels without ``children`` files: walk ``/proc/*/stat``."""
    me = posix.getpid()
    for entry in posix.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            yield int(entry)


def process_argv(pid: int) -> list[str]:
    """The arguments ``pid`` runs with, from ``/proc/PID/cmdline``.

    Empty for a zombie (the kernel has freed its memory), a kernel thread,
    or a process that is gone.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    if not raw:
        return []
    # Each argument ends with a NUL (a process that rewrote its arguments
    # may have dropped the last one).
    return [word.decode(errors="replace") for word in raw.rstrip(b"\0").split(b"\0")]


def command_line(pid: int) -> str:
    """``pid``'s command line as ``ps`` shows it: the arguments joined by
    spaces, or, once they are gone (a zombie), the command name in brackets
    (``[sleep]``); empty once the process is gone."""
    argv = process_argv(pid)
    if argv:
        return " ".join(argv)
    try:
        with open(f"/proc/{pid}/comm", "rb") as handle:
            name = handle.read().rstrip(b"\n").decode(errors="replace")
    except OSError:
        return ""
    return f"[{name}]"


def own_namespace_proc() -> bool:
    """Whether this process is PID 1 and ``/proc`` shows its own namespace."""
    if posix.getpid() != 1:
        return False
    try:
        return posix.readlink("/proc/self") == "1"
    except OSError:
        return False


def namespace_processes() -> set[int]:
    """Every process of the PID namespace but the init (``/proc`` must be ours)."""
    return {int(name) for name in posix.listdir("/proc") if name.isdigit()} - {posix.getpid()}


def descendants(root: int | None = None) -> set[int]:
    """Every descendant of ``root`` (default: this process)."""
    me = posix.getpid()
    start = me if root is None else root
    found: set[int] = set()
    frontier = [start]
    while frontier:
        parent = frontier.pop()
        kids = list_children(None if parent == me else parent)
        for kid in kids:
            if kid not in found and kid != me:
                found.add(kid)
                frontier.append(kid)
    return found


def is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (or is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True
    # The command name may hold spaces and parentheses: the state follows the last ')'.
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")


def leftovers() -> set[int]:
    """The live processes the init's shutdown must end.

    As PID 1 with its own ``/proc``, every process of the PID namespace,
    found by listing ``/proc`` (this includes processes that entered the
    namespace from outside, such as ``docker exec``, which are nobody's
    descendants here); otherwise every descendant, through the kernel's
    children lists, which find double-forked daemons too (they were
    re-parented to the init). Zombies are left out: they have nothing to
    end, and their reaping is the reaper's (or their own parent's) business.
    """
    found = namespace_processes() if own_namespace_proc() else descendants()
    return {pid for pid in found if not is_zombie(pid)}
