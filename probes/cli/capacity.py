"""``probes capacity URL``: stepped Locust load until the SLO breaks; a capacity report.

Locust runs headless (as in ``probes load``) with the ``step`` shape: ``--start-users`` for
``--step-seconds``, then ``--step-users`` more every ``--step-seconds`` up to
``--max-users``. The plan goes into the manifest (``settings.capacity``) so the report cuts
the samples into steps from the run directory alone (``reports.capacity``).

While Locust runs, new sample shards are read as they land; once a step has ended and its
samples had time to arrive (``grace_s``: a shard flush, plus Locust's stats report interval
with ``--workers``), the step is judged against the SLO checks with the same pure functions
the report uses. The first step that breaks a check stops the load: Locust gets SIGINT and
quits the way it always does, flushing every sample (``stop_locust``). The run also ends at
``--max-users`` (the plan is over) or at ``--duration`` (a hard cap), and on Ctrl-C/SIGTERM.
The manifest's ``capacity`` block records when and why the load was stopped early.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from probes.cli.common import (
    finish_recording,
    option,
    recording_options,
    request_kwargs,
    request_options,
)
from probes.cli.load import (
    BUCKET_S,
    LOCUST_LOG,
    MAX_WORKERS,
    LoadSettings,
    ShardFollower,
    _log_tail,
    _platform,
    locust_command,
    locust_env,
    read_counts,
    stop_locust,
)
from probes.errors import ConfigError, ProbesError
from probes.run import Run
from probes.settings import RequestSpec, build_request, parse_run_id
from probes.shapes import Shape, validate
from probes.status import StatusLine, Tally
from reports.capacity import CAPACITY_SLOS, StepPlan, check_slos, judge_step, step_stats

#: Seconds after a step's end before it is judged: the shard flush interval (1 s) + margin.
GRACE_S = 1.5
#: Added with --workers: workers send their rows with Locust's stats report (every 3 s).
WORKER_GRACE_S = 3.5
MAX_USERS = 100_000


def parse_plan(params: dict[str, Any], duration_given: bool) -> StepPlan:
    """The step flags → StepPlan; ConfigError naming the flag. Without an explicit
    ``--duration`` the cap is the plan's own length."""
    start, step, maximum = params["start_users"], params["step_users"], params["max_users"]
    seconds, rate = params["step_seconds"], params["spawn_rate"]
    for flag, value in (("--start-users", start), ("--step-users", step)):
        if value is None or not 1 <= value <= MAX_USERS:
            raise ConfigError(f"{flag}: {value!r} must be a whole number from 1 to {MAX_USERS}")
    if maximum is None or not start <= maximum <= MAX_USERS:
        raise ConfigError(f"--max-users: {maximum!r} must be from --start-users to {MAX_USERS}")
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"--spawn-rate: {rate!r} must be a number of users per second > 0")
    plan = StepPlan(start, step, float(seconds), maximum, float(rate), 1.0)
    need = max(plan.skip_s(k) for k in range(min(plan.n_steps, 2))) + 1.0
    if not (math.isfinite(seconds) and seconds >= need):
        raise ConfigError(
            f"--step-seconds: {seconds!r} must be >= {need:g} (the ramp-up skipped at the start "
            f"of each step, max(1 s, users added / --spawn-rate), plus 1 s measured)"
        )
    duration = params["duration"]
    if not (math.isfinite(duration) and duration > 0):
        raise ConfigError(f"--duration: {duration!r} must be a finite number of seconds > 0")
    cap = min(duration, plan.planned_s) if duration_given else plan.planned_s
    return StepPlan(start, step, float(seconds), maximum, float(rate), cap)


def load_of(plan: StepPlan, workers: int) -> LoadSettings:
    """The ``step`` shape that runs the plan, as ``probes load`` settings."""
    if not 0 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: {workers!r} must be from 0 (one process) to {MAX_WORKERS}")
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
    return LoadSettings(shape=validate(shape), workers=workers)


class StepWatch(ShardFollower):
    """Follows Locust's shards (also feeding the status line) and judges each step once its
    samples are in: the first step that breaks a check is the limit."""

    def __init__(
        self, run_dir: Path, tally: Tally, plan: StepPlan, slos: list[str], grace_s: float
    ) -> None:
        super().__init__(run_dir, tally)
        self.plan, self.slos, self.grace_s = plan, slos, grace_s
        self.ts: list[np.ndarray] = []
        self.latency: list[np.ndarray] = []
        self.ok: list[np.ndarray] = []
        self.t0: float | None = None
        self.next_step = 0
        self.broken: dict[str, Any] | None = None

    columns = ("ts", "latency_ms", "version", "error")

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


def record_capacity(run: Run, load: LoadSettings, watch: StepWatch, params: dict[str, Any]) -> Any:
    """Run Locust into ``run`` until the plan ends, a step breaks the SLO, or a signal."""
    from probes.cli.observe import stop_on_signals

    stop = threading.Event()
    cmd = locust_command(params["locust_host"], params, load, run.path)
    env = locust_env(params)
    proc: subprocess.Popen[bytes] | None = None
    stopped_ts: float | None = None
    with stop_on_signals(stop) as signals, (run.path / LOCUST_LOG).open("wb") as log:
        try:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            with StatusLine(watch.tally, load.shape.duration, quiet=params["quiet"]):
                while proc.poll() is None and not stop.wait(0.25):
                    watch.poll()
                    if watch.judge(time.time()) is not None:
                        break
                if proc.poll() is None:
                    stopped_ts = time.time()
                stop_locust(proc)
                watch.poll()
        finally:
            if proc is not None and proc.poll() is None:
                stop_locust(proc, timeout=5.0)
    interrupted = signals[0] if signals else None
    broken = watch.broken
    run.update(
        capacity={
            "stopped_ts": stopped_ts,
            "stopped_at_users": broken["users"] if broken else None,
            "interrupted": interrupted,
        }
    )
    counts = read_counts(run.path)
    run.finish(locust=counts, interrupted=interrupted)
    return proc.returncode if proc else None, counts


def capacity_settings(
    spec: RequestSpec, plan: StepPlan, load: LoadSettings, slos: list[str]
) -> dict[str, Any]:
    """The manifest's ``settings`` of a capacity run (secrets already masked)."""
    return {
        "slos": slos,
        "bucket_s": BUCKET_S,
        "request": spec.describe(),
        "capacity": plan.describe(),
        "shape": load.shape.describe(),
        "users": plan.max_users,
        "spawn_rate": plan.spawn_rate,
        "duration_s": plan.duration_s,
        "workers": load.workers,
    }


def _int_option(name: str, default: int, text: str) -> Any:
    return option(name, type=int, default=default, show_default=True, metavar="N", help=text)


@click.command()
@click.argument("url", required=False)
@recording_options
@request_options
@_int_option("--start-users", 5, "Users of the first step.")
@_int_option("--step-users", 5, "Users added at every step.")
@option(
    "--step-seconds",
    type=float,
    default=20.0,
    show_default=True,
    metavar="S",
    help="Length of each step; its ramp-up (>= 1 s) is not measured.",
)
@_int_option("--max-users", 50, "Users of the last step.")
@option("--spawn-rate", "-r", type=float, default=10.0, show_default=True, help="Users/second.")
@_int_option("--workers", 0, "Locust worker processes (--processes N); 0 runs one process.")
@option("--api", default=None, metavar="BASE", help="Workload API base: load its invoke URL.")
@option("--workload", default=None, metavar="ID", help="Workload id (with --api).")
@click.pass_context
def command(ctx: click.Context, url: str | None, **params: Any) -> int:
    """Stepped Locust load on URL until a step breaks the SLO; a capacity report.

    Each step is judged on its own by every --slo (default error_rate<0.01 and p99_ms<1000);
    the load stops after the first step that breaks one, at --max-users, or at --duration
    (a hard cap; default: the plan's length). The verdict passes when a step passed.
    Exit 0 pass, 1 fail, 2 bad flags, 3 target unusable.
    """  # fmt: skip
    source = ctx.get_parameter_source("duration")
    duration_given = source is not None and source.name != "DEFAULT"
    plan = parse_plan(params, duration_given)
    load = load_of(plan, params["workers"])
    from probes.cli.observe import validate_slos

    slos = validate_slos(params["slos"])
    try:
        check_slos(slos)
    except ValueError as exc:
        raise ConfigError(f"--slo: {exc}") from None
    run_id = parse_run_id(params["run_id"])
    params["url"] = url
    params.setdefault("replace_with", None)
    client, target = _platform(params)
    try:
        invoke_url = target.invoke_url if target is not None else url
        assert invoke_url is not None
        spec = build_request(invoke_url, **request_kwargs(params))
        params["locust_host"] = invoke_url
        run = Run.create(
            params["runs_dir"], run_id, "capacity", target=spec.describe(),
            settings=capacity_settings(spec, plan, load, slos),
        )  # fmt: skip
        if target is not None:
            run.update(platform=target.manifest())
    finally:
        if client is not None:
            client.close()
    return _run(run, plan, load, slos, params)


def _run(run: Run, plan: StepPlan, load: LoadSettings, slos: list[str], params: Any) -> int:
    grace = GRACE_S + (WORKER_GRACE_S if load.workers else 0.0)
    watch = StepWatch(run.path, Tally(), plan, slos or list(CAPACITY_SLOS), grace)
    returncode, counts = record_capacity(run, load, watch, params)
    if counts is None:
        tail = _log_tail(run.path / LOCUST_LOG)
        raise ProbesError(
            f"Locust did not record (exit {returncode}); see {run.path / LOCUST_LOG}:\n{tail}"
        )
    sys.stderr.flush()
    code = finish_recording(Path(run.path))
    capacity = _summary_capacity(run.path)
    if capacity:
        click.echo(
            f"capacity: max {capacity.get('max_rps_within_slo')} req/s within SLO; "
            f"knee {capacity.get('knee_rps')} req/s; limit: {capacity.get('limit_reason')}"
        )
    return code


def _summary_capacity(run_dir: Path) -> dict[str, Any] | None:
    import json

    try:
        summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    block = summary.get("capacity")
    return block if isinstance(block, dict) else None
