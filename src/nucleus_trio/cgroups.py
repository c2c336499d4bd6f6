"""The memory limit of the init's cgroup, and whether it leaves the init room.

A container runtime's ``--memory`` limit counts the init with its workload:
below what the init needs, the kernel's OOM killer ends the init (and with
it, as PID 1, the whole container: exit 137) and nothing says why (README,
"Containers": memory). The init reads the limit once, after the spawn, and
says so on stderr at once, before trio (the largest part of its memory) is
loaded. Standard library only.
"""

from __future__ import annotations

#: What the init holds after start-up, rounded up: its RSS at rest is about
#: 25 MiB (README, "Benchmarks", row 6), and the page cache of the modules it
#: read counts against the limit too.
INIT_MEMORY = 32 * 1024 * 1024

#: A limit below this leaves the workload less than 16 MiB beside the init.
TIGHT = INIT_MEMORY + 16 * 1024 * 1024

_ROOT = "/sys/fs/cgroup"


def parse_limit(text: str) -> int | None:
    """A limit file's value in bytes; ``None`` for none (``max``, or v1's
    "unlimited", a page-rounded 2**63-1)."""
    value = text.strip()
    if not value or value == "max":
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return None if number >= 1 << 62 else number


def limit_files(proc_cgroup: str) -> list[str]:
    """The files that may hold this process's memory limit, nearest first,
    from the text of ``/proc/self/cgroup``: the v2 ``memory.max`` and the v1
    ``memory.limit_in_bytes``, at the cgroup's own path and at the root of
    the mount (a container's cgroup namespace, or a v1 mount of its own)."""
    files: list[str] = []
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        path = path.rstrip("/")
        if number == "0" and controllers == "":
            files += [f"{_ROOT}{path}/memory.max", f"{_ROOT}/memory.max"]
        elif "memory" in controllers.split(","):
            files += [
                f"{_ROOT}/memory{path}/memory.limit_in_bytes",
                f"{_ROOT}/memory/memory.limit_in_bytes",
            ]
    return files


def memory_limit() -> int | None:
    """This process's cgroup memory limit in bytes, or ``None`` (no limit,
    or none that can be read)."""
    try:
        with open("/proc/self/cgroup") as handle:
            candidates = limit_files(handle.read())
    except OSError:
        return None
    for path in candidates:
        try:
            with open(path) as handle:
                return parse_limit(handle.read())
        except OSError:
            continue
    return None


def memory_warning(limit: int | None) -> str | None:
    """The warning for a limit that leaves the init too little room, or ``None``."""
    if limit is None or limit >= TIGHT:
        return None
    mib = 1024 * 1024
    return (
        f"warning: the memory limit is {limit / mib:.0f} MiB, and the init alone needs "
        f"about {INIT_MEMORY // mib} MiB of it: the kernel may kill the init, and the "
        f"container with it (exit 137); allow at least {TIGHT // mib} MiB"
    )
