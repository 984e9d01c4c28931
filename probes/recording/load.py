"""A load run: Locust users on the invoke URL, every request tagged and recorded, as one run.

Beside Locust, optionally, the canary probe (``probe_rate``) writes its own shards, and with
a watched Workload the rollout driver records the control plane (and requests a replacement
at ``replace_at_s``). One run directory holds every source; then the report.

A stop (the caller's event) ends the probe's schedule and stops Locust SIGINT-first, so it
quits the way it always does (its master first collects every worker's final report, see
the glue) and flushes its shards; the report is made from what was recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from probes.canary import DEFAULT_MAX_BODY_BYTES, ProbeSettings, ProbeStats, ProbeThread
from probes.errors import ConfigError
from probes.recording.finish import outcome
from probes.recording.locustproc import (
    DEFAULT_MASTER_BIND,
    DEFAULT_WORKER_TIMEOUT_S,
    MAX_WORKERS,
    LocustSettings,
    MasterBind,
    ShardFollower,
    run_locust,
)
from probes.recording.observation import make_driver, parse_max_body
from probes.recording.types import NoProgress, Outcome, Platform, Progress, RunLocation, stop_reason
from probes.records import ShardWriter
from probes.run import Run
from probes.settings import (
    KEYS,
    RequestSpec,
    parse_count,
    parse_duration,
    parse_number,
    parse_rate,
    parse_slos,
)
from probes.shapes import Shape, parse_shape

__all__ = ["BUCKET_S", "DEFAULTS", "MAX_USERS", "LoadSettings", "load", "load_manifest_settings"]

BUCKET_S = 1.0
MAX_USERS = 100_000
MAX_SPAWN_RATE = 10_000.0
#: Defaults of a load run's settings (the CLI's flag defaults too).
DEFAULTS: dict[str, Any] = {
    "users": 10,
    "spawn_rate": 10.0,
    "shape": None,
    "workers": 0,
    "probe_rate": 0.0,
}
#: How long the canary probe beside Locust may take to stop before its rows are given up.
PROBE_STOP_S = 30.0


@dataclass(frozen=True)
class LoadSettings:
    """What a load run asks of Locust (and of the probe beside it), validated."""

    shape: Shape
    workers: int = 0
    expect_workers: int = 0
    probe_rate: float = 0.0
    slos: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: With ``expect_workers``: where the master listens and how long it waits for them.
    master: MasterBind = field(default_factory=MasterBind)

    @property
    def run_time_s(self) -> int:
        return self.locust.run_time_s

    @property
    def locust(self) -> LocustSettings:
        return LocustSettings(
            self.shape,
            self.workers,
            self.expect_workers,
            self.master,
            max_body_bytes=self.max_body_bytes,
        )

    @classmethod
    def build(
        cls,
        *,
        duration: Any,
        users: Any = DEFAULTS["users"],
        spawn_rate: Any = DEFAULTS["spawn_rate"],
        shape: str | None = DEFAULTS["shape"],
        workers: Any = DEFAULTS["workers"],
        expect_workers: Any = 0,
        master_bind: Any = DEFAULT_MASTER_BIND,
        worker_timeout: Any = DEFAULT_WORKER_TIMEOUT_S,
        probe_rate: Any = DEFAULTS["probe_rate"],
        max_body_bytes: Any = DEFAULT_MAX_BODY_BYTES,
        slos: Sequence[str] = (),
        place: Callable[[str], str] = KEYS,
    ) -> LoadSettings:
        """From raw values; ConfigError naming ``place(setting)``."""
        users = parse_count(users, place("users"), 1, MAX_USERS)
        rate = parse_number(
            spawn_rate, place("spawn_rate"), maximum=MAX_SPAWN_RATE, unit="users per second"
        )
        duration = parse_duration(duration, place("duration"))
        workers = parse_count(workers, place("workers"), 0, MAX_WORKERS, "(0: one process)")
        expect = parse_count(expect_workers, place("expect_workers"), 0, MAX_WORKERS)
        if workers and expect:
            raise ConfigError(
                f"{place('workers')} and {place('expect_workers')}: give one or the other"
            )
        probe_rate = probe_rate or 0.0
        if probe_rate:
            probe_rate = parse_rate(probe_rate, place("probe_rate"))
        parsed = parse_shape(
            shape, users=users, spawn_rate=rate, duration=duration, flag=place("shape")
        )
        return cls(
            parsed,
            workers,
            expect,
            float(probe_rate),
            parse_slos(slos, place("slos")),
            parse_max_body(max_body_bytes, place("max_body_bytes")),
            MasterBind.build(master_bind, worker_timeout, place=place),
        )


def load_manifest_settings(
    spec: RequestSpec, settings: LoadSettings, platform: Platform | None
) -> dict[str, Any]:
    """The manifest's ``settings`` block of a load run (secrets already masked)."""
    block = {
        "slos": list(settings.slos),
        "bucket_s": BUCKET_S,
        "request": spec.describe(),
        "users": settings.shape.users,
        "spawn_rate": settings.shape.spawn_rate,
        "duration_s": settings.shape.duration,
        "shape": settings.shape.describe(),
        "workers": settings.workers,
        "probe_rate": settings.probe_rate or None,
        "max_body_bytes": settings.max_body_bytes,
    }
    if settings.expect_workers:
        block["expect_workers"] = settings.expect_workers
        block.update(settings.master.manifest())
    if platform is not None and platform.replace_at_s is not None:
        block["replace_at_s"] = platform.replace_at_s
    return block


def load(
    spec: RequestSpec,
    where: RunLocation,
    settings: LoadSettings,
    *,
    stop: threading.Event,
    progress: Progress | None = None,
    platform: Platform | None = None,
) -> Outcome:
    """Locust (and the probe, and the rollout driver) into a new run at ``where``; the
    report; the outcome. Blocking; ``stop`` is the caller's (see ``observe``)."""
    progress = progress or NoProgress()
    run = Run.create(
        where.runs_dir,
        where.run_id,
        "load",
        target=spec.describe(),
        settings=load_manifest_settings(spec, settings, platform),
        trigger=where.trigger,
        schedule=where.schedule,
        place=where.place,
        target_name=where.target_name,
    )
    drivers: list[Any] = []
    probes: list[_Probe] = []
    status = (lambda: drivers[0].status_line() if drivers else "") if platform else None

    def start_driver() -> None:  # as Locust starts
        if platform is not None:
            watch_s = settings.shape.duration + 5.0
            start = time.time() if settings.expect_workers else run.started_ts
            drivers.append(make_driver(platform, run, start, watch_s=watch_s))

    def start_beside() -> None:
        """The status line and the probe beside Locust's load. With workers from elsewhere,
        they and the rollout driver start once the workers are there, so the probe's
        schedule and ``--replace-at`` count from the load, not from the wait."""
        progress.started(settings.shape.duration, status)
        probes.append(_Probe.start(spec, run, settings, progress))

    def start_all() -> None:
        start_beside()
        start_driver()

    if not settings.expect_workers:
        start_beside()
    warnings: list[str] = []
    try:
        follower = ShardFollower(run.path, progress)
        on_start = start_all if settings.expect_workers else start_driver
        result = run_locust(
            spec, settings.locust, run.path, stop=stop, follower=follower, on_start=on_start
        )
        warnings += result.warnings
    finally:
        probe_stats = probes[0].stop(warnings) if probes else None
        for driver in drivers:
            driver.stop()
        progress.finished()
    interrupted = stop_reason(stop)
    run.finish(locust=result.counts, probe=probe_stats, interrupted=interrupted)
    problem = None
    if platform is not None and drivers:
        run.update(platform={**platform.target.manifest(), "outcome": drivers[0].outcome})
        if drivers[0].failure is not None:
            problem = f"replacement not started: {drivers[0].failure}"
    locust_rows = (result.counts or {}).get("samples", follower.rows)
    return outcome(
        run.path,
        interrupted=interrupted,
        warnings=warnings,
        platform_problem=problem,
        failure=result.failure(run.path),
        recorded=int(locust_rows) + int((probe_stats or {}).get("recorded", 0)),
    )


@dataclass
class _Probe:
    """The canary probe beside Locust, in its own thread (or nothing, at rate 0)."""

    thread: ProbeThread | None = None
    writer: ShardWriter | None = None

    @classmethod
    def start(
        cls, spec: RequestSpec, run: Run, settings: LoadSettings, progress: Progress
    ) -> _Probe:
        if not settings.probe_rate:
            return cls()
        writer = run.shard_writer("probe")
        probe = ProbeSettings(
            rate=settings.probe_rate,
            duration=settings.shape.duration,
            max_body_bytes=settings.max_body_bytes,
        )
        thread = ProbeThread(
            spec, probe, writer, on_sample=lambda s: progress.add(s.version, s.error, s.latency_ms)
        )
        thread.start()
        return cls(thread, writer)

    def stop(self, warnings: list[str]) -> dict[str, Any] | None:
        """Stop and join it, close its writer; its counts for the manifest."""
        thread, writer = self.thread, self.writer
        if thread is None or writer is None:
            return None
        thread.stop()
        thread.join(timeout=PROBE_STOP_S)
        if thread.is_alive():
            # Never close the writer under a live sender: what it still adds would be lost.
            warnings.append(
                f"the canary probe did not stop in {PROBE_STOP_S:g} s; its last rows may be missing"
            )
        writer.close()
        stats: dict[str, Any] = (thread.stats or ProbeStats()).as_dict()
        if thread.error is not None:
            warnings.append(f"the canary probe failed: {thread.error}")
            stats["error"] = str(thread.error)
        return stats
