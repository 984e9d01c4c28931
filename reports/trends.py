"""Run over run: the series that matter, and the change points in them. Pure, no I/O.

**Series.** From a list of ``summary.json`` dicts (one schedule's or one target's runs, any
order) the functions below extract the numbers an on-call engineer tracks night after night,
each point carrying its run id and start time:

- ``capacity_series``: capacity runs' ``max_rps_within_slo`` and ``knee_rps``;
- ``step_p99_series``: the p99 of the capacity step at a fixed number of users (the same
  load every night, so the latency is comparable even when the SLO broke elsewhere);
- ``run_series``: every scheduled observe/load run's and every rollout capture's p99 and
  error rate, one point per run;
- ``daily_canary_series``: the continuous canary per UTC day — its error rate (errors over
  requests of the day's segments, exact) and its p99 (the request-weighted mean of the
  segments' p99: a summary holds percentiles, not samples, so a day's exact p99 would need
  its raw samples).

**Change points** (``change_points``): E-divisive means with a Student t-test, the method of
Apache Otava / Hunter (Fleming et al. 2023, arXiv 2301.03034; Matteson & James 2014 for
E-divisive):

1. *split*: the series is walked in overlapping windows of ``window`` points (a step of half a
   window; a window restarts at the last change point it found). Inside a window, the split
   ``tau`` (and an end ``kappa``) maximising the energy-distance divergence
   ``Q = m k / (m + k) * (2/(m k) sum|X-Y| - mean within-X distance - mean within-Y distance)``
   between ``X = Z[s:tau]`` and ``Y = Z[tau:kappa]`` is the candidate; a two-sided Student
   t-test between the two sides of the candidate's interval decides whether it is kept, at a
   *weak* threshold (10x ``p_value``); kept candidates split their interval and the search
   goes on until a candidate fails;
2. *merge*: the union of these weak change points is re-checked over the whole series at the
   strict ``p_value``: repeatedly the weakest point (highest p) is dropped and its neighbours
   re-tested against their new neighbours, until every remaining point passes.

A change point's ``index`` is the first point of the new regime (the run at which the numbers
changed). ``P_VALUE`` (1e-5) is the threshold; BENCHMARKS.md ("Change points") has the false
alarm and detection rates that chose it, and the comparison with ``ruptures``. ``MIN_SIZE``
points are needed on each side, so a single odd night is an outlier, not a change point: a
pinned-baseline comparison (``reports.compare``) is what judges one run on its own.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

P_VALUE = 1e-5
#: The split step's threshold is this many times ``P_VALUE`` (Otava: 10x).
WEAK_FACTOR = 10.0
WINDOW = 30
MIN_SIZE = 3


@dataclass(frozen=True)
class ChangePoint:
    """A change in the mean at ``index`` (the first point of the new regime)."""

    index: int
    p_value: float
    mean_before: float
    mean_after: float
    std_before: float
    std_after: float

    @property
    def change(self) -> float | None:
        """Relative change of the mean (``after / before - 1``), None when ``before`` is 0."""
        return self.mean_after / self.mean_before - 1.0 if self.mean_before else None

    @property
    def magnitude(self) -> float:
        """The larger of the forward and backward relative changes (Otava's magnitude)."""
        fwd = abs(self.mean_after / self.mean_before - 1.0) if self.mean_before else 0.0
        back = abs(self.mean_before / self.mean_after - 1.0) if self.mean_after else 0.0
        return max(fwd, back)


# -- E-divisive: the candidate split of an interval ---------------------------------------------


def _prefix(values: np.ndarray) -> np.ndarray:
    """2-D prefix sums of the distance matrix ``|z_i - z_j|`` (shape n+1 x n+1)."""
    dist = np.abs(values[:, None] - values[None, :])
    prefix = np.zeros((values.size + 1, values.size + 1))
    prefix[1:, 1:] = dist.cumsum(0).cumsum(1)
    return prefix


def _block(p: np.ndarray, a: Any, b: Any, c: Any, d: Any) -> Any:
    """Sum of ``|z_i - z_j|`` over ``a <= i < b``, ``c <= j < d`` (broadcasts)."""
    return p[b, d] - p[a, d] - p[b, c] + p[a, c]


def _best_split(p: np.ndarray, s: int, e: int, min_size: int) -> tuple[int, float] | None:
    """(tau, qhat) maximising the divergence of ``Z[s:tau]`` and ``Z[tau:kappa <= e]``."""
    taus = np.arange(s + min_size, e - min_size + 1)
    if taus.size == 0:
        return None
    tau, kappa = np.meshgrid(taus, np.arange(s + 1, e + 1), indexing="ij")
    valid = kappa - tau >= min_size
    kappa = np.where(valid, kappa, tau + min_size)  # placeholder, masked out below
    m, k = (tau - s).astype(float), (kappa - tau).astype(float)
    between = _block(p, s, tau, tau, kappa)
    within_x = _block(p, s, tau, s, tau) / 2.0
    within_y = _block(p, tau, kappa, tau, kappa) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_x = np.where(m > 1, within_x / (m * (m - 1) / 2.0), 0.0)
        mean_y = np.where(k > 1, within_y / (k * (k - 1) / 2.0), 0.0)
        q = m * k / (m + k) * (2.0 * between / (m * k) - mean_x - mean_y)
    q = np.where(valid, q, -np.inf)
    i, j = np.unravel_index(int(np.argmax(q)), q.shape)
    if not np.isfinite(q[i, j]):
        return None
    return int(tau[i, j]), float(q[i, j])


# -- the significance test -----------------------------------------------------------------------


def t_test(left: np.ndarray, right: np.ndarray) -> float:
    """Two-sided Student t-test (equal variances) p-value that two means are equal."""
    if left.size + right.size <= 2 or left.size == 0 or right.size == 0:
        return 1.0
    if np.ptp(left) == 0 and np.ptp(right) == 0:  # no noise at all: equal or not, certainly
        return 1.0 if left[0] == right[0] else 0.0
    from scipy.stats import ttest_ind

    p = float(ttest_ind(left, right, equal_var=True).pvalue)
    return 1.0 if math.isnan(p) else p


def _point(values: np.ndarray, lo: int, index: int, hi: int) -> ChangePoint:
    left, right = values[lo:index], values[index:hi]
    return ChangePoint(
        index=index,
        p_value=t_test(left, right),
        mean_before=float(left.mean()),
        mean_after=float(right.mean()),
        std_before=float(left.std(ddof=1)) if left.size > 1 else 0.0,
        std_after=float(right.std(ddof=1)) if right.size > 1 else 0.0,
    )


def _bounds(indices: Sequence[int], n: int) -> list[int]:
    return [0, *indices, n]


def _window_points(values: np.ndarray, start: int, end: int, p: float, min_size: int) -> list[int]:
    """Change points found inside ``values[start:end]`` at threshold ``p`` (indices absolute)."""
    window = values[start:end]
    prefix = _prefix(window)
    found: list[int] = []
    while True:
        best: tuple[float, int, int, int] | None = None  # (qhat, tau, lo, hi)
        bounds = _bounds(found, window.size)
        for lo, hi in itertools.pairwise(bounds):
            split = _best_split(prefix, lo, hi, min_size)
            if split is not None and (best is None or split[1] > best[0]):
                best = (split[1], split[0], lo, hi)
        if best is None:
            return [start + i for i in found]
        _, tau, lo, hi = best
        if _point(window, lo, tau, hi).p_value >= p:
            return [start + i for i in found]
        found = sorted([*found, tau])


def split(values: np.ndarray, window: int, p: float, min_size: int) -> list[int]:
    """The split step: weak change points over sliding windows (indices, sorted)."""
    step = max(1, window // 2)
    points: set[int] = set()
    start = 0
    while start < values.size:
        end = min(start + window, values.size)
        new = _window_points(values, start, end, p, min_size)
        points.update(new)
        start = max(max(new, default=0), start + step)
    return sorted(points)


def _stats(values: np.ndarray, indices: Sequence[int]) -> list[ChangePoint]:
    bounds = _bounds(indices, values.size)
    return [_point(values, bounds[i], bounds[i + 1], bounds[i + 2]) for i in range(len(indices))]


def merge(
    values: np.ndarray, indices: Sequence[int], p: float, min_magnitude: float = 0.0
) -> list[ChangePoint]:
    """The merge step: drop the weakest point until every one passes ``p`` (and magnitude)."""
    points = _stats(values, indices)
    while points:
        weakest = max(range(len(points)), key=lambda i: points[i].p_value)
        if points[weakest].p_value < p:
            weakest = min(range(len(points)), key=lambda i: points[i].magnitude)
            if points[weakest].magnitude >= min_magnitude:
                return points
        del points[weakest]
        bounds = _bounds([c.index for c in points], values.size)
        for i in (weakest - 1, weakest):  # the neighbours now see wider intervals
            if 0 <= i < len(points):
                points[i] = _point(values, bounds[i], bounds[i + 1], bounds[i + 2])
    return points


def change_points(
    values: Sequence[float] | np.ndarray,
    *,
    p_value: float = P_VALUE,
    window: int = WINDOW,
    min_size: int = MIN_SIZE,
    min_magnitude: float = 0.0,
) -> list[ChangePoint]:
    """Change points in the mean of ``values`` (E-divisive means + t-test, module docstring).

    Non-finite values must be dropped by the caller (a series point is a run that has the
    number). ``min_magnitude`` (relative) drops changes too small to matter even when
    significant. ValueError on a bad parameter.
    """
    if not 0 < p_value < 1:
        raise ValueError(f"p_value must be in (0, 1), got {p_value!r}")
    if window < 2 * min_size or min_size < 1:
        raise ValueError(f"window ({window}) must hold two sides of min_size ({min_size}) >= 1")
    z = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(z)):
        raise ValueError("values must be finite")
    if z.size < 2 * min_size:
        return []
    weak = split(z, window, min(p_value * WEAK_FACTOR, 0.5), min_size)
    return merge(z, weak, p_value, min_magnitude)


# -- the series that matter ----------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One run's value in a series."""

    run_id: str
    ts: float  # epoch seconds the run (or the day) started
    value: float


@dataclass(frozen=True)
class Series:
    """A run-over-run series; ``better`` says which way is good (``higher`` / ``lower``)."""

    name: str
    unit: str
    better: str
    points: tuple[Point, ...]

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points]


def _epoch(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        stamp = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _runs(summaries: Iterable[Mapping[str, Any]], kind: str) -> list[tuple[float, Mapping]]:
    """(start, summary) of the summaries of ``kind`` that have a start time, oldest first."""
    out = []
    for s in summaries:
        ts = _epoch(s.get("started_at"))
        if s.get("kind") == kind and ts is not None:
            out.append((ts, s))
    out.sort(key=lambda pair: (pair[0], str(pair[1].get("run_id"))))
    return out


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def capacity_series(summaries: Iterable[Mapping[str, Any]]) -> list[Series]:
    """``max_rps_within_slo`` and ``knee_rps`` of the capacity runs (runs without one skipped)."""
    runs = _runs(summaries, "capacity")
    out = []
    for key in ("max_rps_within_slo", "knee_rps"):
        points = []
        for ts, s in runs:
            value = _finite((s.get("capacity") or {}).get(key))
            if value is not None:
                points.append(Point(str(s.get("run_id")), ts, value))
        out.append(Series(key, "req/s", "higher", tuple(points)))
    return out


def step_p99_series(summaries: Iterable[Mapping[str, Any]], users: int) -> Series:
    """The p99 (ms) of the capacity step at ``users`` users, run over run."""
    points = []
    for ts, s in _runs(summaries, "capacity"):
        for step in (s.get("capacity") or {}).get("steps") or []:
            if step.get("users") == users:
                value = _finite((step.get("latency_ms") or {}).get("p99"))
                if value is not None:
                    points.append(Point(str(s.get("run_id")), ts, value))
                break
    return Series(f"p99_ms at {users} users", "ms", "lower", tuple(points))


def common_step_users(summaries: Iterable[Mapping[str, Any]]) -> int | None:
    """The users of the highest step that most capacity runs reached (the fixed step to track)."""
    counts: dict[int, int] = {}
    for _, s in _runs(summaries, "capacity"):
        for step in (s.get("capacity") or {}).get("steps") or []:
            if isinstance(step.get("users"), int):
                counts[step["users"]] = counts.get(step["users"], 0) + 1
    if not counts:
        return None
    most = max(counts.values())
    return max(u for u, c in counts.items() if c == most)


def daily_canary_series(
    summaries: Iterable[Mapping[str, Any]], kind: str = "canary"
) -> list[Series]:
    """Per UTC day of the canary's segments: ``error_rate`` (exact) and ``p99_ms`` (weighted).

    A day's point is named by the first run id of that day.
    """
    days: dict[str, dict[str, Any]] = {}
    for ts, s in _runs(summaries, kind):
        requests = s.get("requests")
        if not isinstance(requests, int) or requests <= 0:
            continue
        day = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
        acc = days.setdefault(day, {"run_id": str(s.get("run_id")), "requests": 0, "errors": 0})
        acc["requests"] += requests
        acc["errors"] += int(s.get("errors") or 0)
        p99 = _finite((s.get("latency_ms") or {}).get("p99"))
        ok = requests - int(s.get("errors") or 0)
        if p99 is not None and ok > 0:
            acc["p99_sum"] = acc.get("p99_sum", 0.0) + p99 * ok
            acc["p99_n"] = acc.get("p99_n", 0) + ok
    errors, p99s = [], []
    for day in sorted(days):
        acc = days[day]
        ts = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
        errors.append(Point(acc["run_id"], ts, acc["errors"] / acc["requests"]))
        if acc.get("p99_n"):
            p99s.append(Point(acc["run_id"], ts, acc["p99_sum"] / acc["p99_n"]))
    return [
        Series("error_rate per day", "fraction", "lower", tuple(errors)),
        Series("p99_ms per day", "ms", "lower", tuple(p99s)),
    ]


#: Kinds whose every run is one point of its own series (scheduled observe/load runs, and
#: rollout captures); canary segments are many per day and stay per day.
PER_RUN_KINDS = ("observe", "load", "rollout")


def run_series(summaries: Iterable[Mapping[str, Any]]) -> list[Series]:
    """``p99_ms`` and ``error_rate`` of every run of each of ``PER_RUN_KINDS``, one point per
    run (runs without requests skipped; a run without a successful answer has no p99)."""
    summaries = list(summaries)
    out = []
    for kind in PER_RUN_KINDS:
        p99s, errors = [], []
        for ts, s in _runs(summaries, kind):
            requests = s.get("requests")
            if not isinstance(requests, int) or requests <= 0:
                continue
            run_id = str(s.get("run_id"))
            errors.append(Point(run_id, ts, int(s.get("errors") or 0) / requests))
            p99 = _finite((s.get("latency_ms") or {}).get("p99"))
            if p99 is not None:
                p99s.append(Point(run_id, ts, p99))
        out.append(Series(f"p99_ms per {kind} run", "ms", "lower", tuple(p99s)))
        out.append(Series(f"error_rate per {kind} run", "fraction", "lower", tuple(errors)))
    return out


# -- series + change points: what the Trends page and the regression notification read -----------


def regression(series: Series, point: ChangePoint) -> bool:
    """Whether a change point moves the series the wrong way."""
    worse = point.mean_after < point.mean_before
    return worse if series.better == "higher" else not worse


def analyse_series(series: Series, *, p_value: float = P_VALUE) -> dict[str, Any]:
    """A series and its change points as JSON: each change names its run and direction."""
    found = change_points(series.values, p_value=p_value) if series.points else []
    changes = []
    for cp in found:
        at = series.points[cp.index]
        changes.append(
            {
                **asdict(cp),
                "run_id": at.run_id,
                "ts": at.ts,
                "change": cp.change,
                "regression": regression(series, cp),
            }
        )
    return {
        "name": series.name,
        "unit": series.unit,
        "better": series.better,
        "points": [asdict(p) for p in series.points],
        "change_points": changes,
    }


def trends(summaries: Sequence[Mapping[str, Any]], *, p_value: float = P_VALUE) -> list[dict]:
    """Every series that matters for one schedule's or one target's runs, with change points."""
    series = capacity_series(summaries)
    users = common_step_users(summaries)
    if users is not None:
        series.append(step_p99_series(summaries, users))
    series += run_series(summaries)
    series += daily_canary_series(summaries)
    return [analyse_series(s, p_value=p_value) for s in series if s.points]


def regressions(analysed: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The change points of analysed series that are regressions, each with its series' name."""
    out = []
    for s in analysed:
        for c in s["change_points"]:
            if c["regression"]:
                out.append({"series": s["name"], "unit": s["unit"], **c})
    return out
