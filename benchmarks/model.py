"""What a run is told (:class:`Params`) and what it records (:class:`Raw`).

``Raw`` holds every sample, as measured; it goes whole into ``latest.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NUCLEUS = "nucleus-trio"
#: The single-file build, measured in the start-up phases only.
NUCLEUS_PYZ = "nucleus-trio.pyz"
TINI = "tini"
TRIO_FLOOR = "trio-receiver floor"
SIGNALFD_FLOOR = "signalfd floor"


@dataclass
class Params:
    rounds: int = 40
    true_rounds: int = 30
    signals: int = 2000
    idle: float = 10.0
    storm: int = 20_000
    storm_rounds: int = 2
    burst: int = 10_000
    burst_rounds: int = 3
    early: int = 1000
    early_window: float = 0.050
    early_timeout: float = 2.0
    early_workers: int = 2
    reference_signals: int = 1000
    profile_signals: int = 400


@dataclass
class StormRun:
    seconds: float
    fork_seconds: float
    peak_zombies: int
    cpu_us_per_orphan: float
    left: int
    hwm_kib: int
    fork_failures: int


@dataclass
class BurstRun:
    zombies: int
    seconds: float
    reaps_per_s: float
    cpu_us_per_reap: float
    left: int


@dataclass
class EarlyTrial:
    offset_ms: float
    outcome: str
    returncode: int | None


@dataclass
class Raw:
    floor_ms: list[float] = field(default_factory=list)
    start_ms: dict[str, list[float]] = field(default_factory=dict)
    shutdown_ms: dict[str, list[float]] = field(default_factory=dict)
    shutdown_tail_ms: dict[str, list[float]] = field(default_factory=dict)
    true_ms: dict[str, list[float]] = field(default_factory=dict)
    signal_us: dict[str, list[float]] = field(default_factory=dict)
    signal_lost: dict[str, int] = field(default_factory=dict)
    rss_rest_kib: dict[str, int] = field(default_factory=dict)
    idle_ctx: dict[str, int] = field(default_factory=dict)
    idle_cpu_ms: dict[str, float] = field(default_factory=dict)
    storm: dict[str, list[StormRun]] = field(default_factory=dict)
    burst: dict[str, list[BurstRun]] = field(default_factory=dict)
    early: dict[str, list[EarlyTrial]] = field(default_factory=dict)
    reference_us: dict[str, list[float]] = field(default_factory=dict)
    profile: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
