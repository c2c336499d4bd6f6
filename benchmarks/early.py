"""The early-signal phase: SIGTERM at a random moment just after the exec of
the init, which runs as an ordinary child (not PID 1), so that "killed by the
signal" can be told apart."""

from __future__ import annotations

import concurrent.futures
import os
import random
import signal
import time
from collections.abc import Sequence

from benchmarks.harness import BUILD, Init, Session, rotated, sleep_until
from benchmarks.model import EarlyTrial, Params, Raw


def early_trial(init: Init, delay_ns: int, p: Params) -> EarlyTrial:
    """SIGTERM ``delay_ns`` after the exec of the init (an ordinary child here).

    The workload blocks SIGTERM on its first instruction and reports it;
    it exits 3 when nothing came within ``p.early_timeout``.
    """
    timeout_ms = str(int(p.early_timeout * 1000))
    with Session(
        [*init.command, str(BUILD / "sigwait"), timeout_ms], pid1=False, label=f"{init.name}-early"
    ) as session:
        t0 = session.start()
        sleep_until(t0 + delay_ns)
        t_kill = time.monotonic_ns()
        os.kill(session.pid, signal.SIGTERM)
        got = session.await_tag_or_exit("T", p.early_timeout + 3)
        code = session.returncode(5) if got is False else None
        if got:
            outcome = "delivered"
        elif code == 128 + signal.SIGTERM:
            outcome = "delivered_killed"  # the workload died of it, unhandled
        elif code == -signal.SIGTERM:
            outcome = "lost_init_killed"
        elif code == 3:
            outcome = "lost_alive"  # init and workload lived on, no receipt
        elif code is None:
            outcome = "lost_hung"
        else:
            outcome = "other"
        return EarlyTrial(offset_ms=(t_kill - t0) / 1e6, outcome=outcome, returncode=code)


def phase_early(inits: Sequence[Init], raw: Raw, p: Params) -> None:
    """``p.early`` trials per init, interleaved, ``p.early_workers`` at a time.

    A trial of nucleus-trio lasts about as long as importing trio (the
    signal is delivered once its receiver opens); two at a time keep a
    thousand per init within the benchmark's five minutes. Each trial's
    offset is measured from its own exec, so the overlap does not bias it.
    """
    rng = random.Random(8)
    jobs = [
        (init, int(rng.uniform(0, p.early_window) * 1e9))
        for number in range(p.early)
        for init in rotated(inits, number)
    ]
    results: dict[str, list[EarlyTrial]] = {init.name: [] for init in inits}

    def run(job: tuple[Init, int]) -> None:
        init, delay = job
        results[init.name].append(early_trial(init, delay, p))

    with concurrent.futures.ThreadPoolExecutor(max_workers=p.early_workers) as pool:
        for future in [pool.submit(run, job) for job in jobs]:
            future.result()
    raw.early.update(results)


# --------------------------------------------------------------------------- report
