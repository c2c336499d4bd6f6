"""The phases that run the inits over ``sigwait``: start and shutdown
latency, ``INIT -- true``, the inits side by side (RSS at rest, idle cost,
signal forwarding latency), and where the forwarding time goes.

Each phase adds its samples to a :class:`~benchmarks.model.Raw`; rounds
interleave (every round runs each init once, order rotated per round), so
load noise hits all alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import time
from collections.abc import Callable, Sequence

from benchmarks import signal_profile
from benchmarks.harness import (
    BUILD,
    HERE,
    VENV,
    BenchError,
    Init,
    Session,
    kill_quietly,
    note,
    rotated,
    settle,
    sleep_until,
)
from benchmarks.model import NUCLEUS, TINI, Params, Raw
from benchmarks.procfs import context_switches, cpu_ns, status_fields


def warm_up(session: Session, timeout: float = 20) -> None:
    """Send SIGUSR1 and wait for the workload's receipt: the init is fully up."""
    os.kill(session.pid, signal.SIGUSR1)
    session.expect("U", timeout)


def stop(session: Session) -> None:
    """SIGTERM to the init; bounded wait for its exit."""
    kill_quietly(session.pid, signal.SIGTERM)
    session.wait_exit(10)


def phase_lifecycle(inits: Sequence[Init], floor: Sequence[str], raw: Raw, p: Params) -> None:
    """Start latency (exec of the init to the workload's first instruction),
    with the bare interpreter's run as a floor, and shutdown latency
    (SIGTERM to the init's exit, with a workload that exits at once)."""
    sigwait = str(BUILD / "sigwait")
    for round_no in range(p.rounds):
        with Session(floor, pid1=True, label="floor") as session:
            t0 = session.start()
            t_end = session.wait_exit(10)
            if t_end is None or session.returncode() != 0:
                raise BenchError(f"the interpreter floor failed{session.tail()}")
            raw.floor_ms.append((t_end - t0) / 1e6)
        for init in rotated(inits, round_no):
            with Session([*init.command, sigwait], pid1=True, label=init.name) as session:
                t0 = session.start()
                (t_first,) = session.expect("R", 10)
                raw.start_ms.setdefault(init.name, []).append((t_first - t0) / 1e6)
                warm_up(session)
                settle(0.02)
                t_kill = time.monotonic_ns()
                os.kill(session.pid, signal.SIGTERM)
                t_exit = session.wait_exit(10)
                code = session.returncode()
                if t_exit is None or code != 0:
                    raise BenchError(f"{init.name}: shutdown failed (exit {code}){session.tail()}")
                raw.shutdown_ms.setdefault(init.name, []).append((t_exit - t_kill) / 1e6)
                # The workload's receipt splits it: forwarding, then the init's own exit.
                receipt = session.poll_line(1.0)
                if receipt is not None and receipt.startswith("T "):
                    t_got = int(receipt.split()[1])
                    raw.shutdown_tail_ms.setdefault(init.name, []).append((t_exit - t_got) / 1e6)


def phase_true(inits: Sequence[Init], raw: Raw, p: Params) -> None:
    """Wall time of ``INIT -- true``, from the exec of the init to its exit."""
    for round_no in range(p.true_rounds):
        for init in rotated(inits, round_no):
            with Session([*init.command, "true"], pid1=True, label=init.name) as session:
                t0 = session.start()
                t_end = session.wait_exit(10)
                code = session.returncode()
                if t_end is None or code != 0:
                    raise BenchError(f"{init.name} -- true failed (exit {code}){session.tail()}")
                raw.true_ms.setdefault(init.name, []).append((t_end - t0) / 1e6)


def phase_steady(inits: Sequence[Init], raw: Raw, p: Params) -> None:
    """The four inits side by side, each PID 1 with a sigwait workload: RSS at
    rest, idle cost over ``p.idle`` seconds, then signal forwarding latency
    with the signals alternating among them."""
    sessions: list[tuple[Init, Session]] = []
    try:
        start_sigwait_sessions(inits, "steady", sessions)
        settle(1.0)
        before = {init.name: (cpu_ns(s.pid), context_switches(s.pid)) for init, s in sessions}
        settle(p.idle)
        for init, s in sessions:
            cpu0, ctx0 = before[init.name]
            raw.idle_cpu_ms[init.name] = (cpu_ns(s.pid) - cpu0) / 1e6
            raw.idle_ctx[init.name] = context_switches(s.pid) - ctx0
            raw.rss_rest_kib[init.name] = status_fields(s.pid).get("VmRSS", 0)
        note(f"idle done; {p.signals} signals to each init")
        times, lost = send_signals(sessions, p.signals, random.Random(1))
        for name, pairs in times.items():
            raw.signal_us[name] = [(got - sent) / 1e3 for sent, got in pairs]
        raw.signal_lost.update(lost)
        for _, s in sessions:
            stop(s)
    finally:
        for _, s in sessions:
            s.close()


def start_sigwait_sessions(
    inits: Sequence[Init],
    label: str,
    sessions: list[tuple[Init, Session]],
    env: Callable[[Init], dict[str, str] | None] = lambda init: None,
) -> None:
    """Start each init as PID 1 over ``sigwait`` and wait until it forwards;
    ``sessions`` gets each one as soon as it exists (the caller closes them)."""
    sigwait = str(BUILD / "sigwait")
    for init in inits:
        session = Session(
            [*init.command, sigwait], pid1=True, label=f"{init.name}-{label}", env=env(init)
        )
        sessions.append((init, session))
        session.start()
        session.expect("R", 20)
        warm_up(session)


def send_signals(
    sessions: Sequence[tuple[Init, Session]], count: int, rng: random.Random
) -> tuple[dict[str, list[tuple[int, int]]], dict[str, int]]:
    """``count`` SIGUSR1s to each session's init, alternating among them and
    spaced 0.3-1 ms: for each init, the ``kill()`` and the workload's receipt
    (CLOCK_MONOTONIC ns) of every signal received, and how many never were."""
    lost = {init.name: 0 for init, _ in sessions}
    times: dict[str, list[tuple[int, int]]] = {init.name: [] for init, _ in sessions}
    for number in range(count):
        shift = number % len(sessions)
        for init, s in [*sessions[shift:], *sessions[:shift]]:
            t_send = time.monotonic_ns()
            os.kill(s.pid, signal.SIGUSR1)
            line = s.poll_line(2.0)
            if line is None or not line.startswith("U "):
                lost[init.name] += 1
                continue
            times[init.name].append((t_send, int(line.split()[1])))
            sleep_until(time.monotonic_ns() + rng.randrange(300_000, 1_000_000))
    return times, lost


def signal_round(
    inits: Sequence[Init],
    label: str,
    count: int,
    seed: int,
    env: Callable[[Init], dict[str, str] | None] = lambda init: None,
) -> dict[str, list[tuple[int, int]]]:
    """Start ``inits`` side by side, send each ``count`` SIGUSR1s as
    :func:`send_signals` does, stop them; a lost signal is an error."""
    sessions: list[tuple[Init, Session]] = []
    try:
        start_sigwait_sessions(inits, label, sessions, env)
        settle(0.5)
        times, lost = send_signals(sessions, count, random.Random(seed))
        if any(lost.values()):
            raise BenchError(f"signals lost in the {label} run: {lost}")
        for _, s in sessions:
            stop(s)
    finally:
        for _, s in sessions:
            s.close()
    return times


def phase_signal_path(
    inits: Sequence[Init], references: Sequence[Init], raw: Raw, p: Params
) -> None:
    """Where nucleus-trio's forwarding time goes, in two interleaved runs of
    four: tini, nucleus-trio and the two reference forwarders, plain, then
    with ``signal_profile`` loaded (through a ``sitecustomize``) into all
    but tini, whose marks are lined up with the harness's ``kill()`` and the
    workload's receipt. Four at a time, as in row 3: how many processes run
    between two signals to one forwarder changes its latency (caches)."""
    four = [init for init in inits if init.name in (TINI, NUCLEUS)] + list(references)
    times = signal_round(four, "reference", p.reference_signals, 2)
    for name, pairs in times.items():
        raw.reference_us[name] = [(got - sent) / 1e3 for sent, got in pairs]

    site = BUILD / "profile_site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(signal_profile.SITECUSTOMIZE)
    marks_paths = {
        init.name: BUILD / f"profile-{init.name.replace(' ', '-')}.json"
        for init in four
        if init.name != TINI
    }
    for path in marks_paths.values():
        path.unlink(missing_ok=True)

    def profiled(init: Init) -> dict[str, str] | None:
        if init.name not in marks_paths:
            return None
        return {
            **os.environ,
            "PYTHONPATH": f"{site}{os.pathsep}{HERE}",
            signal_profile.ENV: str(marks_paths[init.name]),
        }

    # The installed command's interpreter is isolated (-I): PYTHONPATH, and so
    # the profiler, reach the same code only through `python -m nucleus_trio`.
    unisolated = (str(VENV / "bin" / "python3"), "-m", "nucleus_trio", "--")
    four = [
        dataclasses.replace(init, command=unisolated) if init.name == NUCLEUS else init
        for init in four
    ]
    times = signal_round(four, "profile", p.profile_signals, 3, profiled)
    for name, path in marks_paths.items():
        try:
            marks = [(str(kind), int(at)) for kind, at in json.loads(path.read_text())]
        except (OSError, ValueError) as exc:
            raise BenchError(f"{name}: no profile marks ({exc})") from exc
        kills = [sent for sent, _ in times[name]]
        receipts = [got for _, got in times[name]]
        found = signal_profile.stages(marks, kills, receipts, signal.SIGUSR1)
        if not found:
            raise BenchError(f"{name}: its profile marks do not line up with the signals sent")
        raw.profile[name] = found
