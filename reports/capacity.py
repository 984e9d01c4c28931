"""The capacity report: stepped load cut into steps, each judged against the SLO. Pure.

A capacity run (``probes capacity``) holds ``start_users`` for ``step_seconds``, then adds
``step_users`` every ``step_seconds`` up to ``max_users`` (the ``step`` load shape). The
manifest records that plan (``settings.capacity``), so the steps are cut from the run
directory alone:

- **the clock**: step ``k`` spans ``[t0 + k*S, t0 + (k+1)*S)`` where ``t0`` is the send time
  of the first sample (Locust's shape clock starts a few milliseconds before it) and ``S`` is
  ``step_seconds``;
- **ramp-up skipped**: the first ``skip_s(k) = max(1 s, users added by step k / spawn_rate)``
  seconds of every step are left out, so each step is measured only once its users are all
  running and the previous step's in-flight requests are answered. A sample belongs to the
  step in whose measured window it was *sent*;
- **complete steps only**: a step whose end lies past the ``--duration`` cap, or past the
  moment the run was stopped (``stopped_ts``: the SLO broke, or a signal), is left out;
- per step: ``users``, ``rps`` (requests sent in the measured window / its length, errors
  included), ``error_rate``, ``latency_ms`` (exact percentiles over successful responses, as
  everywhere in the summary), plus ``start_s``/``end_s`` (from ``t0``), ``requests``,
  ``errors``, ``checks`` and ``passed``.

Each SLO check is evaluated **per step** (``reports.verdict.evaluate`` on the step's numbers);
without ``--slo`` the checks are ``CAPACITY_SLOS`` (``error_rate<0.01``, ``p99_ms<1000``).
A step *passes* when every check passed.

- ``max_rps_within_slo``: the highest ``rps`` among passing steps (null if none passed);
- ``knee_rps``: where added users stop adding throughput while latency bends. The knee is at
  the first step ``i`` (after the first) whose throughput growth over step ``i-1`` is less
  than ``KNEE_RPS_FRACTION`` (10%) of its user growth, ``rps_i/rps_{i-1} - 1 <
  0.1 * (users_i/users_{i-1} - 1)``, while its p99 grew by more than ``KNEE_P99_GROWTH``
  (50%), ``p99_i > 1.5 * p99_{i-1}``. ``knee_rps`` is the rps of step ``i-1`` — the last step
  that still scaled — and ``knee_users`` its users; null when no step qualifies;
- ``limit_reason``: the first failing check of the first failing step
  (``"p99_ms 1234 >= 1000 at 40 users"``), else ``"interrupted (SIGINT)"`` when a signal
  stopped the run, ``"max users reached"`` when the last complete step ran ``max_users``,
  ``"duration reached"`` when ``--duration`` cut the plan short, ``"no complete step"``.

The verdict of a capacity run is ``pass`` when at least one step passed, ``fail`` when steps
ran and none passed, ``inconclusive`` without any complete step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reports.stats import latency_block, rate
from reports.verdict import RUN_METRICS, SCOPED_METRICS, evaluate, parse_slo

CAPACITY_SLOS = ("error_rate<0.01", "p99_ms<1000")
KNEE_RPS_FRACTION = 0.10
KNEE_P99_GROWTH = 0.50
MIN_SKIP_S = 1.0
NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!="}


@dataclass(frozen=True)
class StepPlan:
    """The step plan of a capacity run (manifest ``settings.capacity``)."""

    start_users: int
    step_users: int
    step_seconds: float
    max_users: int
    spawn_rate: float
    duration_s: float  # the hard cap (the plan is cut short when it is below planned_s)

    @property
    def n_steps(self) -> int:
        """Steps up to and including the one at ``max_users``."""
        return max(1, math.ceil((self.max_users - self.start_users) / self.step_users) + 1)

    @property
    def planned_s(self) -> float:
        return self.n_steps * self.step_seconds

    def users(self, k: int) -> int:
        return min(self.max_users, self.start_users + k * self.step_users)

    def skip_s(self, k: int) -> float:
        """Seconds at the start of step ``k`` left out: its users are still being spawned."""
        added = self.users(k) - (self.users(k - 1) if k else 0)
        return max(MIN_SKIP_S, added / self.spawn_rate)

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "n_steps": self.n_steps, "planned_s": self.planned_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepPlan:
        return cls(
            start_users=int(data["start_users"]),
            step_users=int(data["step_users"]),
            step_seconds=float(data["step_seconds"]),
            max_users=int(data["max_users"]),
            spawn_rate=float(data["spawn_rate"]),
            duration_s=float(data["duration_s"]),
        )


def check_slos(slos: Sequence[str]) -> list[str]:
    """The SLOs a step can be judged by: unscoped run metrics against a number.

    ValueError naming the expression otherwise (a step has no versions and no rollout).
    """
    for expr in slos:
        slo = parse_slo(expr)
        ok = slo.left.scope is None and slo.ref is None and slo.left.metric in SCOPED_METRICS
        if not ok or slo.left.metric in RUN_METRICS:
            raise ValueError(
                f"{expr!r} cannot be judged per step; use METRIC OP NUMBER with METRIC one of "
                f"{', '.join(sorted(SCOPED_METRICS))} (e.g. p99_ms<500)"
            )
    return list(slos)


def step_window(plan: StepPlan, t0: float, k: int) -> tuple[float, float, float]:
    """(start, measured start, end) of step ``k`` in the clock of ``t0``."""
    start = t0 + k * plan.step_seconds
    return start, start + plan.skip_s(k), start + plan.step_seconds


def step_stats(
    ts: np.ndarray, latency_ms: np.ndarray, ok: np.ndarray, plan: StepPlan, t0: float, k: int
) -> dict[str, Any]:
    """The numbers of step ``k`` from raw samples (any order)."""
    start, measured, end = step_window(plan, t0, k)
    mask = (ts >= measured) & (ts < end)
    n = int(np.count_nonzero(mask))
    errors = n - int(np.count_nonzero(ok[mask]))
    length = end - measured
    return {
        "users": plan.users(k),
        "rps": round(n / length, 3),
        "error_rate": rate(errors, n),
        "latency_ms": latency_block(latency_ms[mask & ok]),
        "requests": n,
        "errors": errors,
        "start_s": round(start - t0, 3),
        "end_s": round(end - t0, 3),
        "measured_s": round(length, 3),
    }


def judge_step(step: dict[str, Any], slos: Sequence[str]) -> dict[str, Any]:
    """Add ``checks`` and ``passed`` (True only when every check passed) to a step."""
    view = {**step, "throughput_rps": step["rps"]}
    checks = [evaluate(parse_slo(s), view) for s in slos]
    step["checks"] = checks
    step["passed"] = all(c["passed"] is True for c in checks)
    return step


def cut_steps(
    ts: np.ndarray,
    latency_ms: np.ndarray,
    ok: np.ndarray,
    plan: StepPlan,
    *,
    stopped_ts: float | None = None,
) -> list[dict[str, Any]]:
    """The complete steps of a run (unjudged), in order; ``ts`` are epoch send times."""
    if ts.size == 0:
        return []
    t0 = float(ts.min())
    last = float(ts.max())
    steps = []
    for k in range(plan.n_steps):
        _, measured, end = step_window(plan, t0, k)
        if end - t0 > plan.duration_s + 1e-9:
            break  # cut by --duration
        if stopped_ts is not None and end > stopped_ts:
            break  # the run was stopped inside this step
        if measured > last:
            break  # no sample from here on: the load ended early
        steps.append(step_stats(ts, latency_ms, ok, plan, t0, k))
    return steps


def knee(steps: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the last step that still scaled (see the module docstring), or None."""
    for i in range(1, len(steps)):
        a, b = steps[i - 1], steps[i]
        p99a, p99b = (a["latency_ms"] or {}).get("p99"), (b["latency_ms"] or {}).get("p99")
        if not (a["rps"] > 0 and a["users"] > 0 and p99a and p99b is not None):
            continue
        user_growth = b["users"] / a["users"] - 1.0
        rps_growth = b["rps"] / a["rps"] - 1.0
        if rps_growth < KNEE_RPS_FRACTION * user_growth and p99b > (1 + KNEE_P99_GROWTH) * p99a:
            return i - 1
    return None


def _failure(step: Mapping[str, Any]) -> str | None:
    for c in step["checks"]:
        if c["passed"] is False:
            value, threshold = c["value"], c["threshold"]
            return (
                f"{c['name']} {value:.4g} {NEGATED[c['op']]} {threshold:g} at {step['users']} users"
            )
    return None


def limit_reason(
    steps: Sequence[Mapping[str, Any]], plan: StepPlan, interrupted: str | None = None
) -> str:
    """Why the capacity run ended (see the module docstring)."""
    for step in steps:
        reason = _failure(step)
        if reason:
            return reason
    if interrupted:
        return f"interrupted ({interrupted})"
    if not steps:
        return "no complete step"
    if steps[-1]["users"] >= plan.max_users:
        return "max users reached"
    if plan.duration_s < plan.planned_s:
        return "duration reached"
    return "load ended early"


def capacity_block(
    steps: list[dict[str, Any]],
    plan: StepPlan,
    slos: Sequence[str],
    *,
    interrupted: str | None = None,
) -> dict[str, Any]:
    """The summary's ``capacity`` block from cut steps: judged, with the derived numbers."""
    for step in steps:
        judge_step(step, slos)
    passing = [s["rps"] for s in steps if s["passed"]]
    k = knee(steps)
    return {
        "steps": steps,
        "max_rps_within_slo": max(passing) if passing else None,
        "knee_rps": steps[k]["rps"] if k is not None else None,
        "knee_users": steps[k]["users"] if k is not None else None,
        "limit_reason": limit_reason(steps, plan, interrupted),
        "slos": list(slos),
        "plan": plan.describe(),
    }


def capacity_verdict(block: Mapping[str, Any]) -> dict[str, Any]:
    """``pass`` if a step passed, ``fail`` if none did, ``inconclusive`` without steps.

    The checks shown: how many steps passed, then the checks of the best passing step (or of
    the first step when none passed), each named with its step's users.
    """
    steps = block["steps"]
    passed = [s for s in steps if s["passed"]]
    result = "inconclusive" if not steps else ("pass" if passed else "fail")
    count = {
        "name": "steps_within_slo",
        "value": len(passed),
        "op": ">=",
        "threshold": 1,
        "passed": bool(passed) if steps else None,
        "expr": "at least one step within every SLO",
    }
    shown = max(passed, key=lambda s: s["rps"]) if passed else (steps[0] if steps else None)
    checks = [count]
    if shown is not None:
        checks += [{**c, "name": f"{c['name']} at {shown['users']} users"} for c in shown["checks"]]
    return {"result": result, "checks": checks, "defaults": False}


def analyse_capacity(
    ts: np.ndarray,
    latency_ms: np.ndarray,
    ok: np.ndarray,
    manifest: Mapping[str, Any],
    slos: Sequence[str] | None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(capacity block, verdict) of a capacity run's samples, or None without a step plan."""
    settings = manifest.get("settings") or {}
    raw = settings.get("capacity") if isinstance(settings, Mapping) else None
    if not isinstance(raw, Mapping):
        return None
    plan = StepPlan.from_dict(raw)
    stop = manifest.get("capacity") or {}
    stopped_ts = stop.get("stopped_ts") if isinstance(stop, Mapping) else None
    interrupted = stop.get("interrupted") if isinstance(stop, Mapping) else None
    steps = cut_steps(ts, latency_ms, ok, plan, stopped_ts=stopped_ts)
    block = capacity_block(steps, plan, list(slos or CAPACITY_SLOS), interrupted=interrupted)
    return block, capacity_verdict(block)
