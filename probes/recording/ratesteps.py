"""Open-model rate steps: a capacity run that offers an arrival rate per step, not users.

One ``ProbeSettings`` run of the canary probe per step, all into the run's one shard writer:
step ``k``'s probe starts at ``t0 + k*S`` (``S`` = ``step_seconds``) and schedules
``rate(k)`` requests per second until ``t0 + (k+1)*S``. One probe per step rather than one
probe whose rate changes, because the probe's pacer is a pure function of one rate
(``intended_time(i, rate, start)``): every row's ``intended_ts`` stays the time the open
model meant to send it, with no hand-made pacer beside the canary's, and a step's probe
that still drains its in-flight requests never delays the next step's schedule (they
overlap: the offered load is continuous, as it is for real callers).

``t0`` (the schedule's clock) goes into the manifest (``capacity.t0``) before the first
request, so ``reports.capacity`` cuts the steps by due time from the run directory alone.
Every step is judged live, once its window is over plus ``GRACE_S``, with the same pure
functions the report uses (``rate_step_stats``, ``judge_rate_step``); the first step that
breaks a check (the achieved rate below 99 % of the offered one is one) stops every probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probes.canary import INTERRUPTED, SATURATED, ProbeSettings, ProbeThread
from probes.recording.types import Progress
from probes.records import Sample
from probes.run import Run
from probes.settings import RequestSpec
from reports.capacity import RatePlan, judge_rate_step, rate_step_stats

__all__ = ["GRACE_S", "RateStepWatch", "RateStepsResult", "run_rate_steps"]

#: Seconds after a step's window before it is judged: rows reach the watch as they finish.
GRACE_S = 0.5
#: How often the loop judges steps and looks at its stop events.
TICK_S = 0.05


class RateStepWatch:
    """Collects the probes' rows (their ``on_sample``) and judges each step once its window
    is over: the first step that breaks a check is the limit. Thread-safe."""

    def __init__(
        self, plan: RatePlan, slos: Sequence[str], t0: float, progress: Progress, grace_s: float
    ) -> None:
        self.plan, self.slos, self.t0, self.grace_s = plan, list(slos), t0, grace_s
        self.progress = progress
        self.lock = threading.Lock()
        self.rows: list[tuple[float, float, float, bool, bool]] = []
        self.next_step = 0
        self.broken: dict[str, Any] | None = None
        self.count = 0

    def add(self, sample: Sample) -> None:
        """One row from a probe (on its event loop's thread)."""
        self.progress.add(sample.version, sample.error, sample.latency_ms)
        if sample.error == INTERRUPTED:  # stopped by the run, not answered: no outcome
            return
        row = (
            sample.intended_ts,
            sample.ts,
            sample.latency_ms,
            sample.error is None,
            sample.error != SATURATED,
        )
        with self.lock:
            self.rows.append(row)
            self.count += 1

    def judge(self, now: float) -> dict[str, Any] | None:
        """Judge every step whose window ended ``grace_s`` before ``now``; the first broken
        step, or None."""
        plan = self.plan
        while self.broken is None and self.next_step < plan.n_steps:
            k = self.next_step
            end = self.t0 + (k + 1) * plan.step_seconds
            if end - self.t0 > plan.duration_s + 1e-9 or now < end + self.grace_s:
                break
            with self.lock:
                n = len(self.rows)
                rows = np.array(self.rows[:n], dtype=np.float64).reshape(-1, 5)
            intended, ts, latency = rows[:, 0], rows[:, 1], rows[:, 2]
            ok, sent = rows[:, 3] > 0, rows[:, 4] > 0
            stats = rate_step_stats(intended, ts, latency, ok, sent, plan, self.t0, k)
            step = judge_rate_step(stats, self.slos)
            if not step["passed"] and any(c["passed"] is False for c in step["checks"]):
                self.broken = step
            self.next_step += 1
            # rows due and answered before this step's end are judged: bound the memory
            keep = (intended >= end) | (ts + latency / 1000.0 >= end)
            with self.lock:
                kept = [row for row, stay in zip(self.rows[:n], keep, strict=True) if stay]
                self.rows = kept + self.rows[n:]
        return self.broken


@dataclass
class RateStepsResult:
    """What the rate steps did: the schedule's clock, when they were stopped early (None:
    the plan ran out), the probes' counts, and warnings for the caller."""

    t0: float
    stopped_ts: float | None
    probes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    broken: dict[str, Any] | None = None
    recorded: int = 0


def run_rate_steps(
    spec: RequestSpec,
    run: Run,
    plan: RatePlan,
    slos: Sequence[str],
    *,
    stop: threading.Event,
    progress: Progress,
    max_body_bytes: int,
) -> RateStepsResult:
    """The plan's steps into ``run``'s shards; blocking. Every row is on disk on return."""
    writer = run.shard_writer("probe")
    t0 = time.time() + 0.2  # a moment to write the manifest before the first request is due
    run.update(capacity={"t0": t0})
    watch = RateStepWatch(plan, slos, t0, progress, GRACE_S)
    halt = threading.Event()  # every probe's stop: the caller's, or a broken step
    threads: list[ProbeThread] = []

    def stopping() -> bool:
        return stop.is_set() or watch.judge(time.time()) is not None

    stopped_ts = None
    try:
        for k in range(plan.n_steps):
            slot, end = t0 + k * plan.step_seconds, t0 + (k + 1) * plan.step_seconds
            if end - t0 > plan.duration_s + 1e-9:
                break
            while not stopping() and time.time() < slot:
                stop.wait(min(TICK_S, max(slot - time.time(), 0.0)))
            if stopping():
                break
            probe = ProbeSettings(
                rate=plan.rate(k),
                duration=max(end - time.time(), 0.001),
                max_in_flight=plan.max_in_flight,
                max_body_bytes=max_body_bytes,
            )
            thread = ProbeThread(spec, probe, writer, on_sample=watch.add, stop=halt)
            thread.start()
            threads.append(thread)
        while not stopping() and any(t.is_alive() for t in threads):
            stop.wait(TICK_S)
        if stop.is_set() or watch.broken is not None:
            stopped_ts = time.time()
    finally:
        halt.set()
        warnings = _join(threads)
        writer.close()
    stats = [t.stats.as_dict() for t in threads if t.stats is not None]
    return RateStepsResult(
        t0,
        stopped_ts,
        stats,
        warnings,
        watch.broken,
        recorded=sum(s["recorded"] for s in stats),
    )


def _join(threads: Sequence[ProbeThread]) -> list[str]:
    """Wait for every probe to drain (each ends within its drain bound); what went wrong."""
    warnings = []
    deadline = time.monotonic() + 30.0
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.1))
        if thread.is_alive():
            warnings.append("a rate step's probe did not stop in time; its last rows may be lost")
        elif thread.error is not None:
            warnings.append(f"a rate step's probe failed: {thread.error!r}")
    return warnings
