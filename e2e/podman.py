"""podman, driven for the end-to-end tests: the inits, containers, timings.

Every podman call gets ``CONTAINERS_CONF=e2e/containers.conf`` (runc,
cgroupfs, ulimits this machine can grant, no network, k8s-file logs).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "e2e"
IMAGE = os.environ.get("E2E_IMAGE", "localhost/nucleus-e2e") + ":latest"
NAME_PREFIX = "nucleus-e2e-"
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "e2e" / "containers.conf")}

# podman's own share of a stop or a run (runc, conmon, the cgroup's removal):
# about 0.3 s here. A stop that takes no longer than this is "fast".
FAST = 1.5


@dataclass(frozen=True)
class Init:
    """An init as PID 1 of the container: the podman run options that put it
    there, and its words between the image and the workload's command."""

    name: str
    options: tuple[str, ...]
    argv: tuple[str, ...] = ()


NUCLEUS = Init(
    "nucleus-trio", ("--entrypoint", "/opt/nucleus-trio/bin/nucleus-trio"), ("--",)
)
# The peers, as podman's --init runs them: bind-mounted at /run/podman-init,
# started as `/run/podman-init -- COMMAND`.
TINI = Init("tini", ("--init", "--init-path", "/usr/bin/tini-static"))
CATATONIT = Init("catatonit", ("--init", "--init-path", "/usr/bin/catatonit"))
# The single-file build (make zipapp), as podman's --init runs it: bind-mounted
# at /run/podman-init; its preamble finds the image's python3.
PYZ = Init("nucleus-trio.pyz", ("--init", "--init-path", str(ROOT / "dist" / "nucleus-trio.pyz")))
INITS = (NUCLEUS, PYZ, TINI, CATATONIT)


class PodmanError(AssertionError):
    pass


def podman(
    *args: str, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run podman; on failure (with check) raise with its stderr."""
    done = subprocess.run(
        ["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise PodmanError(
            f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr.strip()}"
        )
    return done


def sh(script: str, *args: str) -> list[str]:
    return ["sh", "-c", script, *args]


def unique_name(label: str) -> str:
    """A container name: the prefix, LABEL in the characters podman allows."""
    label = re.sub(r"[^a-zA-Z0-9_.-]+", "-", label).strip("-")
    return f"{NAME_PREFIX}{label}-{uuid.uuid4().hex[:8]}"


def remove_leftover_containers() -> None:
    names = podman(
        "ps", "-a", "--filter", f"name=^{NAME_PREFIX}", "--format", "{{.Names}}", check=False
    ).stdout.split()
    if names:
        podman("rm", "-f", "-t", "0", *names, check=False)


@dataclass
class Ran:
    """A container run to its end with podman run --rm."""

    code: int
    output: str  # stdout and stderr
    seconds: float


def run(
    init: Init, command: Sequence[str], *options: str, timeout: float = 60
) -> Ran:
    """podman run --rm: the container's exit code, output and run time."""
    start = time.monotonic()
    done = podman(
        "run", "--rm", "--name", unique_name(init.name), *options, *init.options,
        IMAGE, *init.argv, *command,
        timeout=timeout, check=False,
    )
    return Ran(done.returncode, done.stdout + done.stderr, time.monotonic() - start)


@dataclass
class Container:
    """A detached container (podman run -d), removed by the test's fixture."""

    name: str
    init: Init

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.logs():
            state = self.state()
            if state not in ("created", "running") and text not in self.logs():
                raise PodmanError(
                    f"{self.name} ({self.init.name}) {state} (exit code {self.exit_code()}) "
                    f"before {text!r}; its output:\n{self.logs()}"
                )
            if time.monotonic() > deadline:
                raise PodmanError(
                    f"{self.name} ({self.init.name}): no {text!r} in {timeout} s; "
                    f"state {state}; its output:\n{self.logs()}"
                )
            time.sleep(0.05)

    def state(self) -> str:
        return podman("inspect", "-f", "{{.State.Status}}", self.name).stdout.strip()

    def exit_code(self) -> int:
        return int(podman("inspect", "-f", "{{.State.ExitCode}}", self.name).stdout)

    def stop(self, timeout: int) -> float:
        """podman stop -t TIMEOUT: its wall time, in seconds."""
        start = time.monotonic()
        podman("stop", "-t", str(timeout), self.name, timeout=timeout + 60)
        return time.monotonic() - start

    def kill(self, signal: str) -> None:
        podman("kill", "-s", signal, self.name)

    def wait(self, timeout: float = 30) -> int:
        """podman wait: the exit code, once the container has exited."""
        return int(podman("wait", self.name, timeout=timeout).stdout.strip())

    def exec_detached(self, command: Sequence[str]) -> None:
        podman("exec", "-d", self.name, *command)


@dataclass
class Containers:
    """Starts containers for one test; remove() removes them all."""

    started: list[str] = field(default_factory=list)

    def start(
        self, init: Init, command: Sequence[str], *options: str, ready: str | None = "ready"
    ) -> Container:
        """podman run -d; waits for READY in its output unless None."""
        name = unique_name(init.name)
        self.started.append(name)
        podman("run", "-d", "--name", name, *options, *init.options, IMAGE, *init.argv, *command)
        container = Container(name, init)
        if ready is not None:
            container.wait_for(ready)
        return container

    def remove(self) -> None:
        if self.started:
            podman("rm", "-f", "-t", "0", *self.started, check=False)
            self.started.clear()


def host_processes_with(token: str) -> list[int]:
    """PIDs of the host's processes whose command line holds TOKEN."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class StopTime:
    """One measured podman stop, for the closing table."""

    case: str
    stop_timeout: int
    init: str
    code: int
    seconds: float


STOP_TIMES: list[StopTime] = []


def stop_table() -> str:
    """The stop times as a Markdown table: a row per case, a column per init."""
    inits = list(dict.fromkeys(t.init for t in STOP_TIMES))
    rows: dict[tuple[str, int], dict[str, str]] = {}
    for t in STOP_TIMES:
        rows.setdefault((t.case, t.stop_timeout), {})[t.init] = (
            f"exit {t.code} in {t.seconds:.2f} s"
        )
    lines = [
        "| case | podman stop -t | " + " | ".join(inits) + " |",
        "|---|---|" + "---|" * len(inits),
    ]
    for (case, stop_timeout), cells in rows.items():
        lines.append(
            f"| {case} | {stop_timeout} | "
            + " | ".join(cells.get(init, "") for init in inits)
            + " |"
        )
    return "\n".join(lines)
