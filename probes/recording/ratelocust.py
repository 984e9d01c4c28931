"""Open-model rate steps beyond one machine: the rate plan offered by Locust processes.

``probes capacity --mode rate --expect-workers W`` (or ``--workers W`` on this machine) runs
Locust with ``max_in_flight`` users in all and the plan in ``--probes-rate-plan``: the master
sets the plan's clock (``t0``, a ``rate t0`` marker) at its test start, and each of the W
workers offers every W-th slot of the plan (``probes.locustglue.ratepace``), so together they
offer exactly ``r(k)`` requests per second in step ``k``. Each row's ``intended_ts`` is its
slot's due time; a slot due while every user of a worker was in flight is a
``client_saturated`` row. The steps are judged live from the master's shards with the same
functions as the probe's rate steps (``RateStepWatch``), and the report reads Locust's rows
(``settings.rate_source``). A worker lost mid-run takes its share of the slots with it: the
steps after that offer less than planned, and fail the achieved-rate check.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from probes.locustglue.ratepace import RATE_LEAD_S
from probes.locustglue.workers import RATE_T0
from probes.recording.finish import finish_capacity
from probes.recording.locustproc import LocustSettings, ShardFollower, run_locust
from probes.recording.ratesteps import GRACE_S, RateStepWatch
from probes.recording.types import Outcome, Progress, stop_reason
from probes.records import read_events
from probes.run import Run
from probes.settings import RequestSpec
from probes.shapes import Shape, validate
from reports.capacity import RatePlan

__all__ = ["RateShardWatch", "rate_capacity_locust"]

#: Added to the grace before a step is judged: workers send their rows every second.
WORKER_GRACE_S = 1.5
SATURATED = "client_saturated"
INTERRUPTED = "interrupted"


class RateShardWatch(ShardFollower):
    """Reads the master's shards into a ``RateStepWatch`` once the master's ``rate t0``
    marker is known (rows are buffered until then)."""

    columns = ("ts", "intended_ts", "latency_ms", "error", "version")

    def __init__(self, run: Run, plan: RatePlan, slos: Any, progress: Progress) -> None:
        super().__init__(run.path, progress)
        self.run, self.plan, self.slos = run, plan, slos
        self.watch: RateStepWatch | None = None
        self.pending: list[tuple[float, float, float, bool, bool]] = []

    @property
    def t0(self) -> float | None:
        return self.watch.t0 if self.watch is not None else None

    def on_table(self, table: Any) -> None:
        add = self.progress.add
        rows = []
        for ts, intended, latency, error, version in zip(
            *(table.column(c).to_pylist() for c in self.columns), strict=True
        ):
            add(version, error, latency)
            if error != INTERRUPTED:
                rows.append((intended, ts, latency, error is None, error != SATURATED))
        self.rows += table.num_rows
        if self.watch is None:
            self.pending += rows
            return
        with self.watch.lock:
            self.watch.rows += rows
            self.watch.count += len(rows)

    def judge(self, now: float) -> dict[str, Any] | None:
        """The first broken step once the clock is known; None before."""
        if self.watch is None:
            t0 = marked_t0(self.run)
            if t0 is None:
                return None
            grace = GRACE_S + WORKER_GRACE_S
            self.watch = RateStepWatch(self.plan, self.slos, t0, self.progress, grace)
            self.watch.rows, self.pending = self.pending, []
        return self.watch.judge(now)


def marked_t0(run: Run) -> float | None:
    """The plan's clock, from the master's ``rate t0`` marker."""
    try:
        events = read_events(run.path)
    except Exception:  # a torn or unreadable line: not yet
        return None
    for event in events:
        if event.get("kind") == "marker" and event.get("status") == RATE_T0:
            return float((event.get("detail") or {})["t0"])
    return None


def rate_locust_settings(settings: Any, plan: RatePlan) -> LocustSettings:
    """Locust for the plan: ``max_in_flight`` users, spawned at once, for the lead and the
    plan; the plan and how many workers share it."""
    users = plan.max_in_flight
    shape = Shape(
        name="steady",
        users=users,
        spawn_rate=float(users),
        duration=RATE_LEAD_S + plan.duration_s + 1.0,
    )
    workers = settings.expect_workers or settings.workers
    extra = ("--probes-rate-plan", json.dumps(plan.describe()),
             "--probes-rate-workers", str(workers))  # fmt: skip
    return LocustSettings(
        validate(shape),
        settings.workers,
        settings.expect_workers,
        settings.master,
        max_body_bytes=settings.max_body_bytes,
        extra_args=extra,
    )


def rate_capacity_locust(
    spec: RequestSpec,
    run: Run,
    settings: Any,
    plan: RatePlan,
    stop: threading.Event,
    progress: Progress,
) -> Outcome:
    """The plan on Locust processes into ``run``; the report; the outcome."""
    follower = RateShardWatch(run, plan, settings.judged_by, progress)

    def start() -> None:
        progress.started(RATE_LEAD_S + plan.duration_s, None)

    try:
        result = run_locust(
            spec,
            rate_locust_settings(settings, plan),
            run.path,
            stop=stop,
            follower=follower,
            until=lambda: follower.judge(time.time()) is not None,
            on_start=start,
        )
    finally:
        progress.finished()
    interrupted = stop_reason(stop)
    broken = follower.watch.broken if follower.watch is not None else None
    block = {
        "t0": follower.t0 if follower.t0 is not None else marked_t0(run),
        "stopped_at_offered_rps": broken["offered_rps"] if broken else None,
    }
    return finish_capacity(run, result, interrupted, block, follower.rows)
