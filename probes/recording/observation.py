"""An observation: the canary probe against an invoke URL for a while, recorded as a run.

``observe`` creates the run directory, runs the open-model probe (``probes.canary``) in the
calling thread for ``probe.duration`` seconds — or until the caller's ``stop`` is set, or,
with a watched Workload, until its replacement is over plus ``tail_s`` — then finishes the
manifest, makes the report and returns the outcome. Every recorded row is on disk when it
returns, however it ended: requests in flight get a short drain, the writer is closed, the
manifest says whether (and why) the run was interrupted.

With a ``Platform``, the rollout driver runs beside the probe in its own thread: it records
the control plane's lifecycle into ``events.jsonl`` and, when asked, requests the
replacement at ``replace_at_s``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from probes.canary import (
    CONNECTIONS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_DRAIN_BYTES,
    DEFAULT_MAX_IN_FLIGHT,
    ProbeSettings,
    ProbeStats,
    run_probe_blocking,
)
from probes.errors import ConfigError
from probes.recording.finish import outcome
from probes.recording.types import (
    AnyEvent,
    NoProgress,
    Outcome,
    Platform,
    Progress,
    RunLocation,
    stop_reason,
)
from probes.rollout import RolloutDriver
from probes.run import Run
from probes.settings import (
    KEYS,
    RequestSpec,
    parse_count,
    parse_duration,
    parse_rate,
    parse_slos,
)

__all__ = [
    "BUCKET_S",
    "DEFAULT_RATE",
    "MAX_IN_FLIGHT_LIMIT",
    "ObserveSettings",
    "observe",
    "observe_settings",
    "platform_problem",
]

DEFAULT_RATE = 10.0
MAX_IN_FLIGHT_LIMIT = 10_000
BUCKET_S = 1.0
#: Failed polls in a row at the end of a run that make the platform "unusable".
UNREADABLE_POLLS = 3


@dataclass(frozen=True)
class ObserveSettings:
    """How an observation probes, and the verdict's checks."""

    probe: ProbeSettings
    slos: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        rate: Any = DEFAULT_RATE,
        duration: Any,
        max_in_flight: Any = DEFAULT_MAX_IN_FLIGHT,
        max_body_bytes: Any = DEFAULT_MAX_BODY_BYTES,
        slos: Sequence[str] = (),
        connections: Any = "reused",
        place: Callable[[str], str] = KEYS,
    ) -> ObserveSettings:
        """From raw values; ConfigError naming ``place(setting)``."""
        probe = ProbeSettings(
            rate=parse_rate(rate, place("rate")),
            duration=parse_duration(duration, place("duration")),
            max_in_flight=parse_count(
                max_in_flight, place("max_in_flight"), 1, MAX_IN_FLIGHT_LIMIT
            ),
            max_body_bytes=parse_max_body(max_body_bytes, place("max_body_bytes")),
            connections=parse_connections(connections, place("connections")),
        )
        return cls(probe=probe, slos=parse_slos(slos, place("slos")))


def parse_max_body(value: Any, name: str) -> int:
    """Bytes of a body kept for tagging: 0 up to the drain limit (64 MiB)."""
    return parse_count(value, name, 0, DEFAULT_MAX_DRAIN_BYTES, "of bytes")


def parse_connections(value: Any, name: str) -> str:
    """A connection mode: ``reused``, ``new`` or ``both``."""
    text = str(value).strip().lower() if isinstance(value, str) else value
    if text not in CONNECTIONS:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(CONNECTIONS)}")
    return str(text)


def observe_settings(
    spec: RequestSpec, settings: ObserveSettings, platform: Platform | None = None
) -> dict[str, Any]:
    """The manifest's ``settings`` block of an observe run (secrets already masked)."""
    probe = settings.probe
    block: dict[str, Any] = {
        "slos": list(settings.slos),
        "bucket_s": BUCKET_S,
        "rate": probe.rate,
        "duration_s": probe.duration,
        "max_in_flight": probe.max_in_flight,
        "max_body_bytes": probe.max_body_bytes,
        "transport": probe.transport,
        "connections": probe.connections,
        "request": spec.describe(),
    }
    if platform is not None:
        block.update(
            warmup_minutes=platform.warmup_minutes,
            keep_old_minutes=platform.keep_old_minutes,
            tail_s=platform.tail_s,
        )
    return block


def platform_problem(driver: RolloutDriver) -> str | None:
    """Why the control plane could not be used during the run, or None."""
    if driver.failure is not None:
        return f"replacement not started: {driver.failure}"
    watcher = driver.watcher
    if watcher is None or not watcher.polls:
        return None
    api = driver.target.api
    if watcher.errors >= watcher.polls:
        return (
            f"control plane {api} could not be read during the run: {watcher.timeline.last_error}"
        )
    if watcher.error_streak >= UNREADABLE_POLLS:
        return (
            f"control plane {api} stopped answering during the run "
            f"({watcher.error_streak} failed polls at the end): {watcher.timeline.last_error}"
        )
    return None


def make_driver(platform: Platform, run: Run, start: float, *, watch_s: float) -> RolloutDriver:
    """The rollout driver of ``platform`` recording into ``run``: it watches for ``watch_s``
    seconds and requests the replacement ``platform.replace_at_s`` after ``start``."""
    target = platform.target
    run.update(platform=target.manifest())
    request_at = None
    if target.replace_with and platform.replace_at_s is not None:
        request_at = start + platform.replace_at_s
    driver = RolloutDriver(
        platform.client,
        target,
        run.events,
        warmup_minutes=platform.warmup_minutes,
        keep_old_minutes=platform.keep_old_minutes,
        tail_s=platform.tail_s,
        request_at=request_at,
    )
    return driver.start(deadline=start + watch_s)


def observe(
    spec: RequestSpec,
    where: RunLocation,
    settings: ObserveSettings,
    *,
    stop: threading.Event,
    progress: Progress | None = None,
    platform: Platform | None = None,
    kind: str = "observe",
) -> Outcome:
    """Probe ``spec`` into a new run at ``where``; report it; the outcome.

    Blocking (the probe's event loop runs in the calling thread). ``stop`` is the caller's:
    set it from any thread to end the run early (it is then ``interrupted``, with the
    ``Stop``'s reason). ConfigError before any traffic if the run directory cannot be made.
    """
    progress = progress or NoProgress()
    probe = settings.probe
    run = Run.create(
        where.runs_dir,
        where.run_id,
        kind,
        target=spec.describe(),
        settings=observe_settings(spec, settings, platform),
        trigger=where.trigger,
        schedule=where.schedule,
        place=where.place,
        target_name=where.target_name,
    )
    driver = None
    if platform is not None:
        driver = make_driver(platform, run, run.started_ts, watch_s=probe.duration + 5.0)
    stats = _record(spec, run, probe, stop, progress, driver)
    interrupted = stop_reason(stop)
    run.finish(probe=stats.as_dict(), interrupted=interrupted)
    problem = None
    if driver is not None and platform is not None:
        run.update(platform={**platform.target.manifest(), "outcome": driver.outcome})
        problem = platform_problem(driver)
    return outcome(
        run.path, interrupted=interrupted, platform_problem=problem, recorded=stats.recorded
    )


def _record(
    spec: RequestSpec,
    run: Run,
    probe: ProbeSettings,
    stop: threading.Event,
    progress: Progress,
    driver: RolloutDriver | None,
) -> ProbeStats:
    """The probe into the run's shards; every row is on disk when this returns."""
    writer = run.shard_writer("probe")
    ended = driver.finished if driver is not None else threading.Event()
    stats = ProbeStats()
    progress.started(probe.duration, driver.status_line if driver is not None else None)
    try:
        stats = run_probe_blocking(
            spec,
            probe,
            writer,
            # The probe only asks ``is_set``: the caller's stop, or the rollout's end.
            stop=cast(threading.Event, AnyEvent(stop, ended)),
            on_sample=lambda s: progress.add(s.version, s.error, s.latency_ms),
        )
    finally:
        if driver is not None:
            driver.stop()
        writer.close()
        progress.finished()
    return stats
