"""The capacity report: stepped load cut into steps, each judged against the SLO. Pure.

A capacity run (``probes capacity``) holds ``start_users`` for ``step_seconds``, then adds
``step_users`` every ``step_seconds`` up to ``max_users`` (the ``step`` load shape). The
manifest records that plan (``settings.capacity``), so the steps are cut from the run
directory alone:

- **the clock**: step ``k`` spans ``[t0 + k*S, t0 + (k+1)*S)`` where ``t0`` is the send time
  of the first sample and ``S`` is ``step_seconds`` (Locust's shape clock starts a little
  before it, and its shape ticks once a second, so users change up to about a second after
  a step's start: the ramp-up skip covers it);
- **ramp-up skipped**: the first ``skip_s(k) = max(1 s, users added by step k / spawn_rate)``
  seconds of every step are left out, so each step is measured only once its users are all
  running and the previous step's in-flight requests are answered. A sample belongs to the
  step in whose measured window it was *sent*;
- **complete steps only**: a step whose end lies past the ``--duration`` cap, or past the
  moment the run was stopped (``stopped_ts``: the SLO broke, or a signal), is left out;
- **the load's own end**: Locust's ``--run-time`` clock starts before the first request is
  sent, so the load ends up to about a second before the plan's last step does. A step whose
  load ended inside its measured window is measured up to the last send (plus one send
  interval), and left out when that is less than ``MIN_MEASURED_SHARE`` (half) of it;
- per step: ``users``, ``rps`` (requests sent in the measured window / its length, errors
  included), ``error_rate``, ``latency_ms`` (exact percentiles over successful responses, as
  everywhere in the summary), plus ``start_s``/``end_s`` (from ``t0``), ``requests``,
  ``errors``, ``checks`` and ``passed``.

Each SLO check is evaluated **per step** (``reports.verdict.evaluate`` on the step's numbers);
without ``--slo`` the checks are ``CAPACITY_SLOS`` (``error_rate<0.01``, ``p99_ms<1000``).
A step *passes* when every check passed.

- ``max_rps_within_slo``: the highest ``rps`` among passing steps (null if none passed);
- ``model``: the Universal Scalability Law (Gunther) fitted to the steps' throughput against
  their load, ``X(N) = λN / (1 + σ(N−1) + κN(N−1))``, by bounded least squares
  (``scipy.optimize.least_squares``; λ > 0, 0 ≤ σ ≤ 1, 0 ≤ κ ≤ 1; soft-L1 loss beyond
  ``ROBUST_SHARE`` (5%) of the best step, so one step stalled by a busy machine does not bend
  the curve): ``lambda`` (throughput of one user), ``sigma`` (contention), ``kappa``
  (coherency, the cause of a retrograde curve), ``r2`` (coefficient of determination of the
  fit), ``peak_users`` (N* = √((1−σ)/κ), null when κ = 0) and ``peak_rps`` (X(N*), or the
  ceiling λ/σ when κ = 0; null when neither is finite). Null with fewer than
  ``USL_MIN_STEPS`` (3) steps;
- ``knee_rps``/``knee_users``: the step beyond which added users no longer buy throughput in
  proportion, and ``knee_case``, which of these it was (``find_knee``):

  - ``slo``: a step broke a check at or before saturation: the knee is the last step before
    the first failing one (null when the very first step failed);
  - ``retrograde``: throughput falls past a peak (the model's N* lies inside the steps, a
    later step is more than ``RETROGRADE_DROP`` (10%) below the best one and the fitted curve
    at the last step more than half that below its peak, so one stalled step is not a fall):
    the knee is the step of the fitted peak (of the best measured step when ``r2`` <
    ``MIN_R2``, 0.9);
  - ``plateau``: saturated without falling: the knee is the first step within
    ``1 − KNEE_SHARE`` (10%) of the best step's throughput;
  - ``scaling``: not saturated yet: the fitted curve's slope at the last step is still at
    least ``SCALING_SLOPE`` (20%) of λ (with fewer than 3 steps: the last two steps' measured
    slope against the first step's throughput per user). No knee;
  - ``undetermined``: a single step, or none, and no check broke. No knee.

  Saturation is read from the model and the knee's position from the measured steps: a
  smooth curve rounds off a hard concurrency limit's sharp corner (it places N* past it and
  a retrograde that is not there), while the measured steps are noisy (±5% per step in
  practice); Kneedle (``kneed``) on the same step tables is right less often
  (``bench/capacity.py``, BENCHMARKS.md);
- ``limit_reason``: the first failing check of the first failing step
  (``"p99_ms 1234 >= 1000 at 40 users"``), else ``"interrupted (SIGINT)"`` when a signal
  stopped the run, ``"max users reached"`` when the last complete step ran ``max_users``,
  ``"duration reached"`` when ``--duration`` cut the plan short, ``"no complete step"``.

The verdict of a capacity run is ``pass`` when at least one step passed, ``fail`` when steps
ran and none passed, ``inconclusive`` without any complete step. ``version`` names the version
measured: the Workload's active version (manifest ``platform.baseline``), else null.

**Rate mode** (``settings.capacity.mode == "rate"``, a ``RatePlan``): step ``k`` offers
``rate(k)`` requests/s with the open-model probe over ``[t0 + k*S, t0 + (k+1)*S)``, ``t0`` the
schedule's clock (manifest ``capacity.t0``, else the first due time). A request belongs to the
step in whose measured window (the first ``MIN_SKIP_S`` left out) it was *due*
(``intended_ts``). Per step (``rate_step_stats``): ``offered_rps`` (the plan's), ``achieved_rps``
(successful responses that *arrived* in the window, per second; also ``rps``), ``lateness_ms``
(``(ts − intended_ts)·1000`` of the sent requests), ``co_latency_ms`` (coordinated-omission
corrected, ``(ts − intended_ts)·1000 + latency_ms``), ``latency_ms`` (raw), ``not_sent`` (the
probe's in-flight bound was full), ``users`` null. A step passes when ``achieved_share`` =
achieved / offered ≥ ``ACHIEVED_SHARE`` (99 %) and every SLO passes, latency SLOs read on
``co_latency_ms`` (``judge_rate_step``). ``max_rps_within_slo`` is the highest offered rate that
passed; ``model`` and the knee are ``fit_usl``/``find_knee`` with the offered rate as the load
and the achieved rate as throughput (``peak_offered_rps``, ``knee_offered_rps``; ``knee_rps``
is that step's achieved rate). ``limit_reason`` names steps by offered rate (``"achieved_share
0.8 < 0.99 at 50 req/s offered"``, ``"max rate reached"``). Rate steps need ``intended_ts``,
which ``reports.analysis`` does not hand over: ``make_report`` calls
``rate_capacity_from_frame`` with the run's frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reports.rows import INTERRUPTED_ERROR, UNSENT_ERROR, run_complete_check
from reports.stats import latency_block, rate
from reports.verdict import RUN_METRICS, SCOPED_METRICS, checks_of, evaluate, parse_slo

CAPACITY_SLOS = ("error_rate<0.01", "p99_ms<1000")
USL_MIN_STEPS = 3
KNEE_SHARE = 0.90
RETROGRADE_DROP = 0.10
SCALING_SLOPE = 0.20
MIN_R2 = 0.90
ROBUST_SHARE = 0.05
KNEE_CASES = ("slo", "retrograde", "plateau", "scaling", "undetermined")
MIN_SKIP_S = 1.0
MIN_MEASURED_SHARE = 0.5
NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!="}
#: A rate step keeps up when its achieved rate is at least this share of the offered one.
ACHIEVED_SHARE = 0.99


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
    slos = checks_of(slos)  # comparison settings: no comparison within a step
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
    ts: np.ndarray,
    latency_ms: np.ndarray,
    ok: np.ndarray,
    plan: StepPlan,
    t0: float,
    k: int,
    *,
    load_end: float | None = None,
) -> dict[str, Any]:
    """The numbers of step ``k`` from raw samples (any order). ``load_end``: the send time of
    the run's last sample; a step whose load ended inside its window is measured up to it."""
    start, measured, end = step_window(plan, t0, k)
    mask = (ts >= measured) & (ts < end)
    n = int(np.count_nonzero(mask))
    if load_end is not None and load_end < end and n >= 2:
        sent = ts[mask]
        gap = (float(sent.max()) - float(sent.min())) / (n - 1)  # one send interval
        end = min(end, load_end + gap)
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
    checks = [evaluate(parse_slo(s), view) for s in checks_of(slos)]
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
        step = step_stats(ts, latency_ms, ok, plan, t0, k, load_end=last)
        if step["measured_s"] < MIN_MEASURED_SHARE * (end - measured):
            break  # the load ended early in this step's window
        steps.append(step)
    return steps


def usl(x: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    """The Universal Scalability Law: throughput at load ``x``."""
    x = np.asarray(x, dtype=np.float64)
    return lam * x / (1.0 + sigma * (x - 1.0) + kappa * x * (x - 1.0))


@dataclass(frozen=True)
class UslFit:
    """A fitted Universal Scalability Law (see the module docstring)."""

    lam: float
    sigma: float
    kappa: float
    r2: float | None

    @property
    def peak_x(self) -> float | None:
        """N* = √((1−σ)/κ), the load of the highest throughput; None when κ = 0."""
        return math.sqrt((1.0 - self.sigma) / self.kappa) if self.kappa > 0 else None

    @property
    def peak_rps(self) -> float | None:
        """X(N*), or the ceiling λ/σ the curve approaches when κ = 0 (None if neither)."""
        if self.peak_x is not None:
            return float(self.predict(np.array([max(self.peak_x, 1.0)]))[0])
        return self.lam / self.sigma if self.sigma > 0 else None

    def predict(self, x: np.ndarray) -> np.ndarray:
        return usl(x, self.lam, self.sigma, self.kappa)

    def slope_share(self, x: float) -> float:
        """dX/dx at ``x`` as a share of λ: (1 − σ − κx²) / (1 + σ(x−1) + κx(x−1))²."""
        denominator = 1.0 + self.sigma * (x - 1.0) + self.kappa * x * (x - 1.0)
        return (1.0 - self.sigma - self.kappa * x * x) / denominator**2

    def describe(self, x_name: str = "users") -> dict[str, Any]:
        """The summary's ``model`` block; ``x_name`` names the load axis (``peak_users``)."""
        peak_x, peak_rps = self.peak_x, self.peak_rps
        return {
            "law": "usl",
            "lambda": round(self.lam, 6),
            "sigma": round(self.sigma, 6),
            "kappa": round(self.kappa, 8),
            "r2": None if self.r2 is None else round(self.r2, 4),
            f"peak_{x_name}": None if peak_x is None else round(peak_x, 3),
            "peak_rps": None if peak_rps is None else round(peak_rps, 3),
        }


def fit_usl(x: Sequence[float] | np.ndarray, rps: Sequence[float] | np.ndarray) -> UslFit | None:
    """The Universal Scalability Law fitted to throughput ``rps`` at load ``x`` (bounded least
    squares from a few starting points, the best kept); None with fewer than
    ``USL_MIN_STEPS`` points of positive load or without any throughput."""
    from scipy.optimize import least_squares  # ~0.7 s to import: only where a fit is made

    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(rps, dtype=np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0)
    xs, ys = xs[keep], ys[keep]
    if xs.size < USL_MIN_STEPS or not (ys > 0).any():
        return None
    lam0 = float(np.max(ys / xs))
    top = float(xs.max())
    # residuals past ROBUST_SHARE of the best step count less and less (soft L1): one step
    # stalled by a busy machine must not bend the curve
    scale = ROBUST_SHARE * float(ys.max())
    best = None
    for sigma0, kappa0 in ((0.01, 1e-6), (0.3, 1.0 / top**2), (0.01, 10.0 / top**2)):
        try:
            found = least_squares(
                lambda p: usl(xs, *p) - ys,
                x0=[lam0, sigma0, min(kappa0, 0.5)],
                bounds=([1e-12, 0.0, 0.0], [np.inf, 1.0, 1.0]),
                x_scale="jac",
                loss="soft_l1",
                f_scale=scale,
            )
        except ValueError:  # residuals not finite (a load below 1 can zero the denominator)
            continue
        if found.success and (best is None or found.cost < best.cost):
            best = found
    if best is None:
        return None
    lam, sigma, kappa = (float(v) for v in best.x)
    ss_res = float(np.sum((usl(xs, lam, sigma, kappa) - ys) ** 2))
    ss_tot = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else None
    return UslFit(lam, sigma, kappa, r2)


@dataclass(frozen=True)
class Knee:
    """Where a step table stops scaling: the step's index (or None) and which case it was."""

    index: int | None
    case: str


def _saturated(xs: np.ndarray, ys: np.ndarray, model: UslFit | None) -> bool | None:
    """Has the load stopped buying throughput in proportion by the last step? None: unknown."""
    if model is not None:
        return model.slope_share(float(xs[-1])) < SCALING_SLOPE
    if xs.size < 2 or xs[0] <= 0 or ys[0] <= 0 or xs[-1] <= xs[-2]:
        return None
    per_user = ys[0] / xs[0]
    return bool((ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) < SCALING_SLOPE * per_user)


def find_knee(
    x: Sequence[float] | np.ndarray,
    rps: Sequence[float] | np.ndarray,
    within_slo: Sequence[bool] | np.ndarray,
    model: UslFit | None = None,
) -> Knee:
    """The knee of a step table: load ``x`` (users, or an offered rate), throughput ``rps``
    and whether each step met every check, in step order (see the module docstring)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(rps, dtype=np.float64)
    ok = np.asarray(within_slo, dtype=bool)
    first_fail = int(np.argmin(ok)) if ys.size and not ok.all() else None
    saturation = None
    case = "undetermined"
    saturated = _saturated(xs, ys, model) if ys.size else None
    if saturated is False:
        case = "scaling"
    elif saturated:
        best = int(np.argmax(ys))
        falls = bool((ys[best:] < (1.0 - RETROGRADE_DROP) * ys[best]).any())
        peak = model.peak_x if model is not None else None
        if model is not None and peak is not None and peak < xs[-1]:
            # the fitted curve falls too (by half as much): not one stalled step
            top = model.peak_rps or 0.0
            falls = falls and float(model.predict(xs[-1:])[0]) < (1 - RETROGRADE_DROP / 2) * top
        if falls and peak is not None and peak < xs[-1]:
            case = "retrograde"
            good = model is not None and model.r2 is not None and model.r2 >= MIN_R2
            saturation = int(np.argmax(model.predict(xs))) if good and model else best
        else:
            case = "plateau"
            saturation = int(np.argmax(ys >= KNEE_SHARE * ys[best]))
    if first_fail is not None and (saturation is None or first_fail <= saturation):
        return Knee(first_fail - 1 if first_fail > 0 else None, "slo")
    return Knee(saturation, case)


def step_label(step: Mapping[str, Any]) -> str:
    """``40 users``, or ``120 req/s offered`` for a rate step."""
    if step.get("offered_rps") is not None:
        return f"{step['offered_rps']:g} req/s offered"
    return f"{step['users']} users"


def _failure(step: Mapping[str, Any]) -> str | None:
    for c in step["checks"]:
        if c["passed"] is False:
            value, threshold = c["value"], c["threshold"]
            op = NEGATED[c["op"]]
            return f"{c['name']} {value:.4g} {op} {threshold:g} at {step_label(step)}"
    return None


def limit_reason(
    steps: Sequence[Mapping[str, Any]], plan: StepPlan | RatePlan, interrupted: str | None = None
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
    if isinstance(plan, RatePlan):
        if steps[-1]["offered_rps"] >= plan.max_rate:
            return "max rate reached"
    elif steps[-1]["users"] >= plan.max_users:
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
    x = [s["users"] for s in steps]
    rps = [s["rps"] for s in steps]
    model = fit_usl(x, rps)
    k = find_knee(x, rps, [s["passed"] for s in steps], model)
    return {
        "steps": steps,
        "max_rps_within_slo": max(passing) if passing else None,
        "knee_rps": steps[k.index]["rps"] if k.index is not None else None,
        "knee_users": steps[k.index]["users"] if k.index is not None else None,
        "knee_case": k.case,
        "model": model.describe("users") if model is not None else None,
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
        label = step_label(shown)
        checks += [{**c, "name": f"{c['name']} at {label}"} for c in shown["checks"]]
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
    if not isinstance(raw, Mapping) or raw.get("mode", "users") != "users":
        return None  # rate steps need intended_ts: rate_capacity_from_frame
    plan = StepPlan.from_dict(raw)
    stop = manifest.get("capacity") or {}
    stopped_ts = stop.get("stopped_ts") if isinstance(stop, Mapping) else None
    interrupted = stop.get("interrupted") if isinstance(stop, Mapping) else None
    steps = cut_steps(ts, latency_ms, ok, plan, stopped_ts=stopped_ts)
    checks = list(checks_of(slos) or CAPACITY_SLOS)
    block = capacity_block(steps, plan, checks, interrupted=interrupted)
    block["version"] = measured_version(manifest)
    return block, capacity_verdict(block)


# --------------------------------------------------------------------------- open-model rate steps


@dataclass(frozen=True)
class RatePlan:
    """The rate plan of a capacity run in rate mode (manifest ``settings.capacity``, ``mode``
    ``"rate"``): ``start_rate`` requests/s for ``step_seconds``, then ``step_rate`` more every
    ``step_seconds`` up to ``max_rate``, each step offered by the open-model probe."""

    start_rate: float
    step_rate: float
    step_seconds: float
    max_rate: float
    duration_s: float  # the hard cap (the plan is cut short when it is below planned_s)
    max_in_flight: int = 256

    mode = "rate"

    @property
    def n_steps(self) -> int:
        """Steps up to and including the one at ``max_rate``."""
        return max(1, math.ceil((self.max_rate - self.start_rate) / self.step_rate - 1e-9) + 1)

    @property
    def planned_s(self) -> float:
        return self.n_steps * self.step_seconds

    def rate(self, k: int) -> float:
        """The offered rate of step ``k`` (requests per second)."""
        return min(self.max_rate, self.start_rate + k * self.step_rate)

    def skip_s(self, k: int) -> float:
        """Seconds at the start of a step left out: the previous step's queue drains."""
        return MIN_SKIP_S

    def describe(self) -> dict[str, Any]:
        steps = {"n_steps": self.n_steps, "planned_s": self.planned_s}
        return {"mode": "rate", **asdict(self), **steps}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RatePlan:
        return cls(
            start_rate=float(data["start_rate"]),
            step_rate=float(data["step_rate"]),
            step_seconds=float(data["step_seconds"]),
            max_rate=float(data["max_rate"]),
            duration_s=float(data["duration_s"]),
            max_in_flight=int(data.get("max_in_flight", 256)),
        )


def plan_from_dict(data: Mapping[str, Any]) -> StepPlan | RatePlan:
    """The plan in a manifest's ``settings.capacity``: users steps, or rate steps (``mode``)."""
    if data.get("mode", "users") == "rate":
        return RatePlan.from_dict(data)
    return StepPlan.from_dict(data)


def rate_step_stats(
    intended: np.ndarray,
    ts: np.ndarray,
    latency_ms: np.ndarray,
    ok: np.ndarray,
    sent: np.ndarray,
    plan: RatePlan,
    t0: float,
    k: int,
) -> dict[str, Any]:
    """The numbers of rate step ``k`` from raw probe samples (any order).

    A request belongs to the step in whose measured window it was *due* (``intended``);
    ``sent`` is False for rows the probe never sent (``client_saturated``: its in-flight bound
    was full), which count in no rate but the offered one. ``achieved_rps`` is the successful
    responses that *arrived* inside the window per second; ``co_latency_ms`` is latency
    corrected for coordinated omission (``(ts − intended)·1000 + latency_ms``) and
    ``lateness_ms`` the send's delay behind its schedule (``(ts − intended)·1000``).
    """
    start = t0 + k * plan.step_seconds
    measured, end = start + plan.skip_s(k), start + plan.step_seconds
    due = (intended >= measured) & (intended < end)
    mask = due & sent
    n = int(np.count_nonzero(mask))
    good = mask & ok
    errors = n - int(np.count_nonzero(good))
    arrived = ts + latency_ms / 1000.0
    done = int(np.count_nonzero(ok & sent & (arrived >= measured) & (arrived < end)))
    length = end - measured
    late = (ts - intended) * 1000.0
    offered = plan.rate(k)
    achieved = round(done / length, 3)
    return {
        "users": None,
        "offered_rps": offered,
        "achieved_rps": achieved,
        "rps": achieved,
        "error_rate": rate(errors, n),
        "latency_ms": latency_block(latency_ms[good]),
        "co_latency_ms": latency_block(late[good] + latency_ms[good]),
        "lateness_ms": latency_block(late[mask]),
        "requests": n,
        "errors": errors,
        "not_sent": int(np.count_nonzero(due & ~sent)),
        "start_s": round(start - t0, 3),
        "end_s": round(end - t0, 3),
        "measured_s": round(length, 3),
    }


def achieved_check(step: Mapping[str, Any]) -> dict[str, Any]:
    """The rate step's own check: achieved ≥ ``ACHIEVED_SHARE`` (99 %) of the offered rate."""
    offered, achieved = step["offered_rps"], step["achieved_rps"]
    share = round(achieved / offered, 4) if offered else None
    return {
        "name": "achieved_share",
        "value": share,
        "op": ">=",
        "threshold": ACHIEVED_SHARE,
        "passed": None if share is None else share >= ACHIEVED_SHARE,
        "expr": f"achieved_rps>={ACHIEVED_SHARE:g}*offered_rps",
    }


def judge_rate_step(step: dict[str, Any], slos: Sequence[str]) -> dict[str, Any]:
    """Add ``checks`` and ``passed`` to a rate step: the achieved-rate check, then every SLO,
    its latency metrics read from the coordinated-omission-corrected latency (what a caller
    arriving at the offered rate waits)."""
    view = {**step, "throughput_rps": step["rps"], "latency_ms": step["co_latency_ms"]}
    checks = [achieved_check(step), *(evaluate(parse_slo(s), view) for s in checks_of(slos))]
    step["checks"] = checks
    step["passed"] = all(c["passed"] is True for c in checks)
    return step


def cut_rate_steps(
    intended: np.ndarray,
    ts: np.ndarray,
    latency_ms: np.ndarray,
    ok: np.ndarray,
    sent: np.ndarray,
    plan: RatePlan,
    *,
    t0: float | None = None,
    stopped_ts: float | None = None,
) -> list[dict[str, Any]]:
    """The complete rate steps of a run (unjudged), in order. ``t0``: the schedule's start
    (manifest ``capacity.t0``; default the first due time)."""
    if intended.size == 0:
        return []
    start = float(intended.min()) if t0 is None else t0
    last = float(intended.max())
    steps = []
    for k in range(plan.n_steps):
        measured = start + k * plan.step_seconds + plan.skip_s(k)
        end = start + (k + 1) * plan.step_seconds
        if end - start > plan.duration_s + 1e-9:
            break  # cut by --duration
        if stopped_ts is not None and end > stopped_ts:
            break  # the run was stopped inside this step
        if measured > last or last < end - MIN_MEASURED_SHARE * (end - measured):
            break  # the schedule ended early in this step
        steps.append(rate_step_stats(intended, ts, latency_ms, ok, sent, plan, start, k))
    return steps


def rate_capacity_block(
    steps: list[dict[str, Any]],
    plan: RatePlan,
    slos: Sequence[str],
    *,
    interrupted: str | None = None,
) -> dict[str, Any]:
    """The summary's ``capacity`` block of rate steps: judged; the capacity is the highest
    offered rate that passed (achieved ≥ 99 % of it, every check); the model and the knee are
    ``fit_usl``/``find_knee`` with the offered rate as the load and the achieved as throughput."""
    for step in steps:
        judge_rate_step(step, slos)
    passing = [s["offered_rps"] for s in steps if s["passed"]]
    x = [s["offered_rps"] for s in steps]
    rps = [s["achieved_rps"] for s in steps]
    model = fit_usl(x, rps)
    k = find_knee(x, rps, [s["passed"] for s in steps], model)
    return {
        "mode": "rate",
        "steps": steps,
        "max_rps_within_slo": max(passing) if passing else None,
        "knee_rps": steps[k.index]["achieved_rps"] if k.index is not None else None,
        "knee_users": None,
        "knee_offered_rps": steps[k.index]["offered_rps"] if k.index is not None else None,
        "knee_case": k.case,
        "model": model.describe("offered_rps") if model is not None else None,
        "limit_reason": limit_reason(steps, plan, interrupted),
        "slos": list(slos),
        "plan": plan.describe(),
    }


def analyse_rate_capacity(
    intended: np.ndarray,
    ts: np.ndarray,
    latency_ms: np.ndarray,
    ok: np.ndarray,
    sent: np.ndarray,
    manifest: Mapping[str, Any],
    slos: Sequence[str] | None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(capacity block, verdict) of a rate-mode capacity run's probe samples, or None when
    the manifest holds no rate plan."""
    settings = manifest.get("settings") or {}
    raw = settings.get("capacity") if isinstance(settings, Mapping) else None
    if not isinstance(raw, Mapping) or raw.get("mode") != "rate":
        return None
    plan = RatePlan.from_dict(raw)
    stop = manifest.get("capacity") or {}
    stop = stop if isinstance(stop, Mapping) else {}
    t0 = stop.get("t0")
    steps = cut_rate_steps(
        intended, ts, latency_ms, ok, sent, plan,
        t0=float(t0) if isinstance(t0, int | float) else None,
        stopped_ts=stop.get("stopped_ts"),
    )  # fmt: skip
    block = rate_capacity_block(
        steps, plan, list(checks_of(slos) or CAPACITY_SLOS), interrupted=stop.get("interrupted")
    )
    block["version"] = measured_version(manifest)
    return block, capacity_verdict(block)


def rate_capacity_from_frame(
    summary: dict[str, Any], frame: Any, manifest: Mapping[str, Any], slos: Sequence[str] | None
) -> None:
    """Replace ``summary``'s capacity block and verdict with the rate-mode analysis of
    ``frame`` (the run's samples, with ``intended_ts``); nothing for other runs.

    Requests stopped by the run's own end (``interrupted``) are left out, as everywhere in
    the summary; a run that never finished still fails (``run_complete``)."""
    settings = manifest.get("settings") or {}
    raw = settings.get("capacity") if isinstance(settings, Mapping) else None
    if not isinstance(raw, Mapping) or raw.get("mode") != "rate" or not len(frame):
        return

    def is_(column: str, value: str) -> np.ndarray:
        return (frame[column] == value).to_numpy(dtype=bool, na_value=False)

    keep = ~is_("error", INTERRUPTED_ERROR)
    if "source" in frame.columns:  # Locust's rows when Locust workers offered the steps
        keep &= is_("source", str(settings.get("rate_source") or "probe"))
    part = frame[keep]
    unsent = (part["error"] == UNSENT_ERROR).to_numpy(dtype=bool, na_value=False)
    ts = part["ts"].to_numpy(dtype=np.float64)
    intended = part["intended_ts"].to_numpy(dtype=np.float64)
    intended = np.where(np.isfinite(intended), intended, ts)
    found = analyse_rate_capacity(
        intended,
        ts,
        part["latency_ms"].to_numpy(dtype=np.float64),
        part["error"].isna().to_numpy(),
        ~unsent,
        manifest,
        slos,
    )
    if found is None:
        return
    summary["capacity"], summary["verdict"] = found
    if summary.get("incomplete_reason"):
        block = summary["verdict"]
        block["checks"] = [*block["checks"], run_complete_check(summary["incomplete_reason"])]
        block["result"] = "fail"


def measured_version(manifest: Mapping[str, Any]) -> str | None:
    """The version a capacity run measured: the Workload's active version when the control
    plane was watched (manifest ``platform.baseline``), else None."""
    platform = manifest.get("platform")
    if isinstance(platform, Mapping) and isinstance(platform.get("baseline"), str):
        return str(platform["baseline"])
    return None
