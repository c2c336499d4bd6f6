"""Run as PID 1 of a fresh PID namespace: does a stale pidfd signal a reused PID?

For each way the first process can be reaped (by someone else with
``waitpid``, or by ``PidFd.wait`` itself), a second process is made to get
the same PID (through ``/proc/sys/kernel/ns_last_pid``) and the stale PidFd
is asked to send SIGTERM. Prints one JSON object: per case, whether the PID
was really reused, what ``send_signal`` raised, and whether the new process
was still alive afterwards.
"""

import json
import os
import signal

import trio

from nucleus_trio import PidFd


def spawn_sleep() -> int:
    return os.posix_spawnp("sleep", ["sleep", "60"], dict(os.environ))


def spawn_at(pid: int) -> int:
    with open("/proc/sys/kernel/ns_last_pid", "w") as handle:
        handle.write(str(pid - 1))
    return spawn_sleep()


def alive(pid: int) -> bool:
    return os.waitpid(pid, os.WNOHANG) == (0, 0)


async def case(reaper: str) -> dict[str, object]:
    first = spawn_sleep()
    pidfd = PidFd.open(first)
    os.kill(first, signal.SIGKILL)
    if reaper == "waitpid":
        os.waitpid(first, 0)
    else:
        await pidfd.wait()
    second = spawn_at(first)
    result: dict[str, object] = {"reused": second == first}
    try:
        pidfd.send_signal(signal.SIGTERM)
        result["raised"] = None
    except ProcessLookupError:
        result["raised"] = "ProcessLookupError"
    result["second_alive"] = alive(second)
    os.kill(second, signal.SIGKILL)
    os.waitpid(second, 0)
    pidfd.close()
    return result


async def main() -> None:
    results = {name: await case(name) for name in ("waitpid", "pidfd")}
    print(json.dumps(results), flush=True)


trio.run(main)
