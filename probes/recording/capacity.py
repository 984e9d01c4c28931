"""A capacity run: stepped load until a step breaks the SLO; a capacity report.

Two modes. ``users`` (the default) steps Locust users, below. ``rate`` steps the offered
arrival rate with the open-model canary probe on this machine (``ratesteps``): the plan
(``RatePlan``) goes into the manifest too, with ``mode: "rate"``; with ``workers`` or
``expect_workers`` Locust processes offer the plan instead (``ratelocust``).

Locust runs with the ``step`` shape: ``start_users`` for ``step_seconds``, then
``step_users`` more every ``step_seconds`` up to ``max_users``. The plan goes into the
manifest (``settings.capacity``) so the report cuts the samples into steps from the run
directory alone (``reports.capacity``).

While Locust runs, new sample shards are read as they land; once a step has ended and its
samples had time to arrive (``grace_s``: a shard flush, plus Locust's stats report interval
with workers), the step is judged against the SLO checks with the same pure functions the
report uses. The first step that breaks a check stops the load (``locustproc.stop_locust``:
SIGINT first, so every sample is flushed). The run also ends when the plan is over, at its
duration cap, and at the caller's stop. The manifest's ``capacity`` block records when and
why the load was stopped early.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probes.canary import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT
from probes.errors import ConfigError, ProbesError
from probes.recording.finish import finish_capacity, outcome, report
from probes.recording.load import BUCKET_S, MAX_SPAWN_RATE, MAX_USERS
from probes.recording.locustproc import (
    DEFAULT_MASTER_BIND,
    DEFAULT_WORKER_TIMEOUT_S,
    MAX_WORKERS,
    LocustSettings,
    MasterBind,
    ShardFollower,
    run_locust,
)
from probes.recording.observation import MAX_IN_FLIGHT_LIMIT, parse_max_body
from probes.recording.ratesteps import run_rate_steps
from probes.recording.types import NoProgress, Outcome, Platform, Progress, RunLocation, stop_reason
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
from probes.shapes import Shape, validate
from reports.capacity import (
    CAPACITY_SLOS,
    MIN_SKIP_S,
    RatePlan,
    StepPlan,
    check_slos,
    judge_step,
    step_stats,
)

__all__ = ["DEFAULTS", "GRACE_S", "WORKER_GRACE_S", "CapacitySettings", "StepWatch", "capacity"]

#: Seconds after a step's end before it is judged: the shard flush interval (1 s) + margin.
GRACE_S = 1.5
#: Added with workers: workers send their rows with Locust's stats report (every 3 s).
WORKER_GRACE_S = 3.5
#: Defaults of a capacity run's settings (the CLI's flag defaults too).
DEFAULTS: dict[str, Any] = {
    "start_users": 5,
    "step_users": 5,
    "step_seconds": 20.0,
    "max_users": 50,
    "spawn_rate": 10.0,
    "workers": 0,
    "mode": "users",
    "start_rate": 10.0,
    "step_rate": 10.0,
    "max_rate": 100.0,
}
MODES = ("users", "rate")


@dataclass(frozen=True)
class CapacitySettings:
    """The step plan, where Locust runs, and the checks each step is judged by.

    ``rates`` set: rate mode, the open-model probe offers ``rates`` and ``plan`` is unused.
    """

    plan: StepPlan
    workers: int = 0
    expect_workers: int = 0
    slos: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rates: RatePlan | None = None
    #: An earlier capacity run to compare with, step by step; the verdict then also needs
    #: the run not to be worse than it (the nightly regression gate).
    baseline: Path | None = None
    #: With ``expect_workers``: where the master listens and how long it waits for them.
    master: MasterBind = field(default_factory=MasterBind)

    @property
    def mode(self) -> str:
        return "users" if self.rates is None else "rate"

    @property
    def locust(self) -> LocustSettings:
        """The ``step`` shape that runs the plan."""
        plan = self.plan
        shape = Shape(
            name="step",
            users=plan.max_users,
            spawn_rate=plan.spawn_rate,
            duration=plan.duration_s,
            params=(
                ("every", plan.step_seconds),
                ("from", float(plan.start_users)),
                ("step", float(plan.step_users)),
            ),
        )
        return LocustSettings(
            validate(shape),
            self.workers,
            self.expect_workers,
            self.master,
            max_body_bytes=self.max_body_bytes,
        )

    @property
    def judged_by(self) -> tuple[str, ...]:
        """The checks each step is judged by: the run's, else the capacity defaults."""
        return self.slos or tuple(CAPACITY_SLOS)

    @classmethod
    def build(
        cls,
        *,
        start_users: Any = DEFAULTS["start_users"],
        step_users: Any = DEFAULTS["step_users"],
        step_seconds: Any = DEFAULTS["step_seconds"],
        max_users: Any = DEFAULTS["max_users"],
        spawn_rate: Any = DEFAULTS["spawn_rate"],
        duration: Any = None,
        workers: Any = DEFAULTS["workers"],
        expect_workers: Any = 0,
        master_bind: Any = DEFAULT_MASTER_BIND,
        worker_timeout: Any = DEFAULT_WORKER_TIMEOUT_S,
        slos: Sequence[str] = (),
        max_body_bytes: Any = DEFAULT_MAX_BODY_BYTES,
        mode: Any = DEFAULTS["mode"],
        start_rate: Any = DEFAULTS["start_rate"],
        step_rate: Any = DEFAULTS["step_rate"],
        max_rate: Any = DEFAULTS["max_rate"],
        max_in_flight: Any = DEFAULT_MAX_IN_FLIGHT,
        baseline: Any = None,
        place: Callable[[str], str] = KEYS,
    ) -> CapacitySettings:
        """From raw values; ConfigError naming ``place(setting)``. Without ``duration`` the
        cap is the plan's own length. ``mode`` ``rate`` reads the rate settings and ignores
        the users ones."""
        if mode not in MODES:
            raise ConfigError(f"{place('mode')}: {mode!r} must be one of {', '.join(MODES)}")
        if mode == "rate":
            rates = _rate_plan(start_rate, step_rate, max_rate, step_seconds, duration,
                               max_in_flight, place)  # fmt: skip
            workers = parse_count(workers, place("workers"), 0, MAX_WORKERS, "(0: one process)")
            expect = parse_count(expect_workers, place("expect_workers"), 0, MAX_WORKERS)
            if workers and expect:
                raise ConfigError(
                    f"{place('workers')} and {place('expect_workers')}: give one or the other"
                )
            checks = _checks(slos, place)
            body = parse_max_body(max_body_bytes, place("max_body_bytes"))
            users = StepPlan(1, 1, rates.step_seconds, 1, 1.0, rates.duration_s)
            master = MasterBind.build(master_bind, worker_timeout, place=place)
            return cls(
                users, workers, expect, checks, body, rates, parse_baseline(baseline, place),
                master,
            )  # fmt: skip
        start = parse_count(start_users, place("start_users"), 1, MAX_USERS)
        step = parse_count(step_users, place("step_users"), 1, MAX_USERS)
        if (
            isinstance(max_users, bool)
            or not isinstance(max_users, int)
            or not (start <= max_users <= MAX_USERS)
        ):
            raise ConfigError(
                f"{place('max_users')}: {max_users!r} must be from"
                f" {place('start_users')} to {MAX_USERS}"
            )
        rate = parse_number(
            spawn_rate, place("spawn_rate"), maximum=MAX_SPAWN_RATE, unit="users per second"
        )
        seconds = parse_duration(step_seconds, place("step_seconds"))
        plan = StepPlan(start, step, seconds, max_users, rate, 1.0)
        need = max(plan.skip_s(k) for k in range(min(plan.n_steps, 2))) + 1.0
        if seconds < need:
            raise ConfigError(
                f"{place('step_seconds')}: {step_seconds!r} must be >= {need:g} (the ramp-up "
                f"skipped at the start of each step, max(1 s, users added / "
                f"{place('spawn_rate')}), plus 1 s measured)"
            )
        cap = plan.planned_s
        if duration is not None:
            cap = min(parse_duration(duration, place("duration")), plan.planned_s)
        workers = parse_count(workers, place("workers"), 0, MAX_WORKERS, "(0: one process)")
        expect = parse_count(expect_workers, place("expect_workers"), 0, MAX_WORKERS)
        if workers and expect:
            raise ConfigError(
                f"{place('workers')} and {place('expect_workers')}: give one or the other"
            )
        checks = _checks(slos, place)
        plan = StepPlan(start, step, seconds, max_users, rate, cap)
        body = parse_max_body(max_body_bytes, place("max_body_bytes"))
        master = MasterBind.build(master_bind, worker_timeout, place=place)
        return cls(
            plan, workers, expect, checks, body, None, parse_baseline(baseline, place), master
        )

    def manifest(self, spec: RequestSpec) -> dict[str, Any]:
        """The manifest's ``settings`` of a capacity run (secrets already masked)."""
        block = self._manifest(spec)
        if self.baseline is not None:
            block["baseline"] = {"run_id": self.baseline.name, "path": str(self.baseline)}
        return block

    def _distributed(self) -> dict[str, Any]:
        """Rate steps on Locust processes (``probes.locustglue.ratepace``): the rows to read
        are Locust's (``rate_source``), the master's bind with workers from elsewhere."""
        if not (self.workers or self.expect_workers):
            return {}
        block: dict[str, Any] = {"rate_source": "locust"}
        if self.expect_workers:
            block["expect_workers"] = self.expect_workers
            block.update(self.master.manifest())
        return block

    def _manifest(self, spec: RequestSpec) -> dict[str, Any]:
        if self.rates is not None:
            return {
                "slos": list(self.slos),
                "bucket_s": BUCKET_S,
                "request": spec.describe(),
                "capacity": self.rates.describe(),
                "mode": "rate",
                "rate": self.rates.max_rate,
                "duration_s": self.rates.duration_s,
                "max_in_flight": self.rates.max_in_flight,
                "workers": self.workers,
                "max_body_bytes": self.max_body_bytes,
                **self._distributed(),
            }
        plan, locust = self.plan, self.locust
        block = {
            "slos": list(self.slos),
            "bucket_s": BUCKET_S,
            "request": spec.describe(),
            "capacity": plan.describe(),
            "shape": locust.shape.describe(),
            "users": plan.max_users,
            "spawn_rate": plan.spawn_rate,
            "duration_s": plan.duration_s,
            "workers": self.workers,
            "max_body_bytes": self.max_body_bytes,
        }
        if self.expect_workers:
            block["expect_workers"] = self.expect_workers
            block.update(self.master.manifest())
        return block


def _checks(slos: Sequence[str], place: Callable[[str], str]) -> tuple[str, ...]:
    checks = parse_slos(slos, place("slos"))
    try:
        check_slos(list(checks))
    except ValueError as exc:
        raise ConfigError(f"{place('slos')}: {exc}") from None
    return checks


def _rate_plan(
    start_rate: Any,
    step_rate: Any,
    max_rate: Any,
    step_seconds: Any,
    duration: Any,
    max_in_flight: Any,
    place: Callable[[str], str],
) -> RatePlan:
    """The rate plan from raw values; ConfigError naming the setting at fault."""
    start = parse_rate(start_rate, place("start_rate"))
    step = parse_rate(step_rate, place("step_rate"))
    top = parse_rate(max_rate, place("max_rate"))
    if top < start:
        raise ConfigError(
            f"{place('max_rate')}: {max_rate!r} must be >= {place('start_rate')} ({start:g})"
        )
    seconds = parse_duration(step_seconds, place("step_seconds"))
    need = MIN_SKIP_S + 1.0
    if seconds < need:
        raise ConfigError(
            f"{place('step_seconds')}: {step_seconds!r} must be >= {need:g} (the first "
            f"{MIN_SKIP_S:g} s of each step is not measured, plus 1 s measured)"
        )
    in_flight = parse_count(max_in_flight, place("max_in_flight"), 1, MAX_IN_FLIGHT_LIMIT)
    plan = RatePlan(start, step, seconds, top, seconds, in_flight)
    cap = plan.planned_s
    if duration is not None:
        cap = min(parse_duration(duration, place("duration")), plan.planned_s)
    return RatePlan(start, step, seconds, top, cap, in_flight)


class StepWatch(ShardFollower):
    """Follows Locust's shards (also feeding the live view) and judges each step once its
    samples are in: the first step that breaks a check is the limit."""

    columns = ("ts", "latency_ms", "version", "error")

    def __init__(
        self,
        run_dir: Path,
        progress: Progress,
        plan: StepPlan,
        slos: Sequence[str],
        grace_s: float,
    ) -> None:
        super().__init__(run_dir, progress)
        self.plan, self.slos, self.grace_s = plan, list(slos), grace_s
        self.ts: list[np.ndarray] = []
        self.latency: list[np.ndarray] = []
        self.ok: list[np.ndarray] = []
        self.t0: float | None = None
        self.next_step = 0
        self.broken: dict[str, Any] | None = None

    def on_table(self, table: Any) -> None:
        super().on_table(table)
        ts = table.column("ts").to_numpy()
        if ts.size:
            self.ts.append(ts)
            self.latency.append(table.column("latency_ms").to_numpy())
            self.ok.append(table.column("error").is_null().to_numpy(zero_copy_only=False))
            self.t0 = min(float(ts.min()), self.t0 if self.t0 is not None else math.inf)

    def judge(self, now: float) -> dict[str, Any] | None:
        """Judge every step whose samples are in by ``now``; the first broken step, or None."""
        plan, t0 = self.plan, self.t0
        while self.broken is None and t0 is not None and self.next_step < plan.n_steps:
            k = self.next_step
            end = t0 + (k + 1) * plan.step_seconds
            if end - t0 > plan.duration_s or now < end + self.grace_s:
                break
            ts, lat, ok = (np.concatenate(a) for a in (self.ts, self.latency, self.ok))
            step = judge_step(step_stats(ts, lat, ok, plan, t0, k), self.slos)
            if not step["passed"] and any(c["passed"] is False for c in step["checks"]):
                self.broken = step
            self.next_step += 1
            keep = ts >= end  # earlier rows are judged; bound the memory
            self.ts, self.latency, self.ok = [ts[keep]], [lat[keep]], [ok[keep]]
        return self.broken


def parse_baseline(value: Any, place: Callable[[str], str]) -> Path | None:
    """``--baseline RUN_DIR``: an existing capacity run's directory (or None)."""
    if value is None or value == "":
        return None
    from probes.records import read_manifest

    path = Path(str(value))
    try:
        kind = read_manifest(path).get("kind")
    except ProbesError as exc:
        raise ConfigError(
            f"{place('baseline')}: {value!r} is not a run directory ({exc})"
        ) from None
    if kind != "capacity":
        raise ConfigError(f"{place('baseline')}: {value!r} is a {kind} run, not a capacity run")
    return path.resolve()


def capacity(
    spec: RequestSpec,
    where: RunLocation,
    settings: CapacitySettings,
    *,
    stop: threading.Event,
    progress: Progress | None = None,
    platform: Platform | None = None,
) -> Outcome:
    """The stepped load into a new run at ``where``; the capacity report; the outcome.
    Blocking; ``stop`` is the caller's (see ``observe``). ``platform`` names the Workload
    measured (its manifest block); capacity runs ask for no replacement. With a baseline the
    run is compared with it step by step (``reports.compare``, ``compare-<baseline>.*`` in the
    run) and the report's verdict gains ``baseline_comparison != worse``."""
    result = _capacity(spec, where, settings, stop=stop, progress=progress, platform=platform)
    if settings.baseline is None or result.summary is None or result.failure is not None:
        return result
    return _against_baseline(result, settings.baseline)


def _against_baseline(result: Outcome, baseline: Path) -> Outcome:
    from reports.compare import compare_runs, judgement_line, write_comparison

    try:
        comparison = compare_runs(baseline, result.run_dir)
    except ProbesError as exc:
        return replace(result, warnings=(*result.warnings, f"not compared with {baseline}: {exc}"))
    write_comparison(comparison, result.run_dir)
    summary = report(result.run_dir)  # again: the verdict reads the comparison
    details = {**result.details, "capacity": summary.get("capacity"),
               "baseline": judgement_line(comparison)}  # fmt: skip
    return replace(result, summary=summary, details=details)


def _capacity(
    spec: RequestSpec,
    where: RunLocation,
    settings: CapacitySettings,
    *,
    stop: threading.Event,
    progress: Progress | None = None,
    platform: Platform | None = None,
) -> Outcome:
    progress = progress or NoProgress()
    run = Run.create(
        where.runs_dir,
        where.run_id,
        "capacity",
        target=spec.describe(),
        settings=settings.manifest(spec),
        trigger=where.trigger,
        schedule=where.schedule,
        place=where.place,
        target_name=where.target_name,
    )
    if platform is not None:
        run.update(platform=platform.target.manifest())
    if settings.rates is not None and (settings.workers or settings.expect_workers):
        from probes.recording.ratelocust import rate_capacity_locust

        return rate_capacity_locust(spec, run, settings, settings.rates, stop, progress)
    if settings.rates is not None:
        return _rate_capacity(spec, run, settings, settings.rates, stop, progress)
    grace = GRACE_S + (WORKER_GRACE_S if settings.workers or settings.expect_workers else 0.0)
    watch = StepWatch(run.path, progress, settings.plan, settings.judged_by, grace)

    def start() -> None:  # with workers from elsewhere: once they are there
        progress.started(settings.plan.duration_s, None)

    if not settings.expect_workers:
        start()
    try:
        result = run_locust(
            spec,
            settings.locust,
            run.path,
            stop=stop,
            follower=watch,
            until=lambda: watch.judge(time.time()) is not None,
            on_start=start if settings.expect_workers else None,
        )
    finally:
        progress.finished()
    interrupted = stop_reason(stop)
    broken = watch.broken
    block = {"stopped_at_users": broken["users"] if broken else None}
    return finish_capacity(run, result, interrupted, block, watch.rows)


def _rate_capacity(
    spec: RequestSpec,
    run: Run,
    settings: CapacitySettings,
    plan: RatePlan,
    stop: threading.Event,
    progress: Progress,
) -> Outcome:
    """Rate mode: the open-model probe steps (``ratesteps``), then the report."""
    progress.started(plan.duration_s, None)
    try:
        result = run_rate_steps(
            spec,
            run,
            plan,
            settings.judged_by,
            stop=stop,
            progress=progress,
            max_body_bytes=settings.max_body_bytes,
        )
    finally:
        progress.finished()
    interrupted = stop_reason(stop)
    broken = result.broken
    run.update(
        capacity={
            "t0": result.t0,
            "stopped_ts": result.stopped_ts,
            "stopped_at_offered_rps": broken["offered_rps"] if broken else None,
            "interrupted": interrupted,
        }
    )
    run.finish(probes=result.probes, interrupted=interrupted)
    return outcome(
        run.path, interrupted=interrupted, warnings=tuple(result.warnings), recorded=result.recorded
    )
