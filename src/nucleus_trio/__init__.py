"""nucleus-trio: an init for containers and process trees, built on trio.

Run it as ``nucleus-trio [OPTIONS] [--] PROGRAM [ARGS...]``, or use the pieces
from a trio program. This module imports nothing when it is imported: the
command's entry point must block signals before any other code runs, and
``import nucleus_trio`` happens before it. Public names are loaded on first
use.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nucleus_trio.audit import EventLog
    from nucleus_trio.command import run_command
    from nucleus_trio.config import Config, UsageError, parse_args
    from nucleus_trio.events import Event
    from nucleus_trio.forwarding import SignalRoute, route_signal
    from nucleus_trio.identity import Identity, resolve_identity
    from nucleus_trio.pidfd import PidFd, StatusLostError
    from nucleus_trio.process import Process
    from nucleus_trio.reaper import Reaper, reap_unclaimed
    from nucleus_trio.restart import RestartPolicy, Worker
    from nucleus_trio.sandbox import Sandbox, SandboxError, open_sandbox
    from nucleus_trio.shutdown import ShutdownReport, shutdown_leftovers
    from nucleus_trio.signals import parse_signal, signal_name
    from nucleus_trio.spawn import SpawnError, fork_exec
    from nucleus_trio.status import ExitStatus, init_exit_code
    from nucleus_trio.streams import FdStream
    from nucleus_trio.supervisor import CompletedProcess, Supervisor, open_supervisor, run_process

__all__ = [
    "CompletedProcess",
    "Config",
    "Event",
    "EventLog",
    "ExitStatus",
    "FdStream",
    "Identity",
    "PidFd",
    "Process",
    "Reaper",
    "RestartPolicy",
    "Sandbox",
    "SandboxError",
    "ShutdownReport",
    "SignalRoute",
    "SpawnError",
    "StatusLostError",
    "Supervisor",
    "UsageError",
    "Worker",
    "fork_exec",
    "init_exit_code",
    "open_sandbox",
    "open_supervisor",
    "parse_args",
    "parse_signal",
    "reap_unclaimed",
    "resolve_identity",
    "route_signal",
    "run_command",
    "run_process",
    "shutdown_leftovers",
    "signal_name",
]

_HOMES = {
    "Identity": "identity",
    "resolve_identity": "identity",
    "Process": "process",
    "Supervisor": "supervisor",
    "open_supervisor": "supervisor",
    "run_process": "supervisor",
    "CompletedProcess": "supervisor",
    "FdStream": "streams",
    "run_command": "command",
    "ShutdownReport": "shutdown",
    "shutdown_leftovers": "shutdown",
    "Config": "config",
    "UsageError": "config",
    "parse_args": "config",
    "Event": "events",
    "EventLog": "audit",
    "ExitStatus": "status",
    "init_exit_code": "status",
    "PidFd": "pidfd",
    "StatusLostError": "pidfd",
    "RestartPolicy": "restart",
    "Worker": "restart",
    "Sandbox": "sandbox",
    "SandboxError": "sandbox",
    "open_sandbox": "sandbox",
    "Reaper": "reaper",
    "reap_unclaimed": "reaper",
    "SignalRoute": "forwarding",
    "route_signal": "forwarding",
    "SpawnError": "spawn",
    "fork_exec": "spawn",
    "parse_signal": "signals",
    "signal_name": "signals",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        if name == "__version__":
            from nucleus_trio.cli import version

            return version()
        raise AttributeError(f"module 'nucleus_trio' has no attribute {name!r}")
    import importlib

    value: object = getattr(importlib.import_module(f"nucleus_trio.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
