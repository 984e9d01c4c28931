"""Exact statistics from raw samples: latency blocks and the baseline/candidate comparison.

Percentiles are computed from raw latencies with numpy (linear interpolation between order
statistics), never from histograms or Locust's rounded buckets.

Comparison rules (``judge``), documented here because CI gates act on them:

- **error rates** — Fisher's exact test on the 2x2 table (errors/ok per version) while the
  table holds fewer than ``FISHER_MAX_N`` requests; above that, the pooled two-proportion
  z-test (two-sided), which agrees with Fisher at such sizes and costs nothing.
- **latency** — two-sided Mann–Whitney U on successful responses. Beyond
  ``MWU_MAX_PER_SIDE`` latencies per side, a deterministic 1-in-k stride subsample (time
  ordered, so it spans the whole run) is tested instead; ``subsampled`` says so.
- **judgement** — ``inconclusive`` when neither test has ``MIN_SAMPLES`` on both sides;
  ``worse`` when the candidate's error rate is higher with p < ``ALPHA`` and by more than
  ``MIN_ERROR_DELTA``, or its latency differs with p < ``ALPHA`` and its p50 is higher by
  more than 5 ms and 10% of the baseline's, or its p99 by more than 20 ms and 25%
  (``MIN_DELTA``); ``better`` by the mirror rules when nothing is worse; else ``same``.
  With many samples any difference is "significant": the bounds are what makes a
  difference material. Stricter gates belong in ``--slo`` (e.g.
  ``candidate.p99_ms<1.1*baseline.p99_ms``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Keys of a latency block, in order, with the percentile each one is (None: not a percentile).
LATENCY_KEYS = ("p50", "p90", "p95", "p99", "p999", "max", "mean")
_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)

ALPHA = 0.01
MIN_SAMPLES = 30
#: A latency shift must exceed both bounds (absolute ms, fraction of the baseline's) to count.
#: The tail gets wider bounds: a p99 moves with every hiccup of the machine it was measured
#: from, and a default check that fails healthy rollouts would be ignored.
MIN_DELTA = {"p50": (5.0, 0.10), "p99": (20.0, 0.25)}
#: An error-rate difference smaller than this (0.1 percentage point) is not material.
MIN_ERROR_DELTA = 0.001
FISHER_MAX_N = 200_000
MWU_MAX_PER_SIDE = 200_000


def _num(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def latency_block(latencies_ms: np.ndarray) -> dict[str, float | None]:
    """``{"p50", "p90", "p95", "p99", "p999", "max", "mean"}`` in ms, exact; all None if empty."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return dict.fromkeys(LATENCY_KEYS)
    qs = np.percentile(values, _PERCENTILES)
    block: dict[str, float | None] = {k: _num(q) for k, q in zip(LATENCY_KEYS, qs, strict=False)}
    block["max"] = _num(values.max())
    block["mean"] = _num(values.mean())
    return block


def rate(part: int, whole: int) -> float | None:
    """``part / whole``, or None when ``whole`` is 0."""
    return part / whole if whole else None


def error_p_value(
    err_a: int, n_a: int, err_b: int, n_b: int, fisher_max_n: int = FISHER_MAX_N
) -> float | None:
    """Two-sided p-value that two error proportions are equal (None without requests):
    Fisher's exact test up to ``fisher_max_n`` requests, the z-test beyond."""
    if n_a <= 0 or n_b <= 0:
        return None
    if err_a + err_b == 0 or err_a + err_b == n_a + n_b:
        return 1.0  # no variation at all: nothing to tell apart
    if n_a + n_b <= fisher_max_n:
        from reports.ranktest import fisher_exact_p  # scipy.stats' value, not its import

        return fisher_exact_p([[err_a, n_a - err_a], [err_b, n_b - err_b]])
    pooled = (err_a + err_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = abs(err_a / n_a - err_b / n_b) / se
    return float(math.erfc(z / math.sqrt(2)))


def stride_subsample(values: np.ndarray, limit: int) -> np.ndarray:
    """Every k-th value so that at most ``limit`` remain: deterministic, spans the input."""
    if values.size <= limit:
        return values
    step = math.ceil(values.size / limit)
    return values[::step]


def latency_p_value(
    a: np.ndarray, b: np.ndarray, sizes: tuple[int, int] | None = None
) -> tuple[float | None, bool]:
    """Two-sided Mann–Whitney U p-value and whether a subsample was tested. ``sizes``: the
    sides' full sizes when ``a`` and ``b`` are already their ``stride_subsample``."""
    na, nb = sizes or (a.size, b.size)
    if na < MIN_SAMPLES or nb < MIN_SAMPLES:
        return None, False
    from reports.ranktest import mannwhitneyu_p  # scipy.stats' value, not its import

    sa, sb = stride_subsample(a, MWU_MAX_PER_SIDE), stride_subsample(b, MWU_MAX_PER_SIDE)
    p = mannwhitneyu_p(sa, sb)
    return (p if math.isfinite(p) else None), (sa.size < na or sb.size < nb)


@dataclass(frozen=True)
class Side:
    """What the comparison needs of one version."""

    requests: int
    errors: int
    p50: float | None
    p99: float | None
    ok_latencies: int


def _latency_shift(base: Side, cand: Side) -> int:
    """+1 if the candidate is materially slower, -1 if materially faster, 0 otherwise."""
    signs = set()
    for key, b, c in (("p50", base.p50, cand.p50), ("p99", base.p99, cand.p99)):
        if b is None or c is None:
            continue
        delta = c - b
        min_ms, min_fraction = MIN_DELTA[key]
        if abs(delta) > min_ms and abs(delta) > min_fraction * abs(b):
            signs.add(1 if delta > 0 else -1)
    return 1 if 1 in signs else (-1 if -1 in signs else 0)


def judge(base: Side, cand: Side, error_p: float | None, latency_p: float | None) -> str:
    """``better`` / ``same`` / ``worse`` / ``inconclusive`` per the module's rules."""
    errors_testable = (
        error_p is not None and base.requests >= MIN_SAMPLES and cand.requests >= MIN_SAMPLES
    )
    latency_testable = latency_p is not None and min(base.ok_latencies, cand.ok_latencies) >= (
        MIN_SAMPLES
    )
    if not errors_testable and not latency_testable:
        return "inconclusive"
    err_sign = 0
    if errors_testable and error_p is not None and error_p < ALPHA:
        delta = cand.errors / cand.requests - base.errors / base.requests
        if abs(delta) > MIN_ERROR_DELTA:
            err_sign = 1 if delta > 0 else -1
    lat_sign = 0
    if latency_testable and latency_p is not None and latency_p < ALPHA:
        lat_sign = _latency_shift(base, cand)
    if err_sign > 0 or lat_sign > 0:
        return "worse"
    if err_sign < 0 or lat_sign < 0:
        return "better"
    return "same"


def compare(
    baseline: str,
    candidate: str,
    base: Side,
    cand: Side,
    base_lat: np.ndarray,
    cand_lat: np.ndarray,
    sizes: tuple[int, int] | None = None,
    fisher_max_n: int = FISHER_MAX_N,
) -> dict[str, Any]:
    """The ``comparison`` block of summary.json (``sizes``: see ``latency_p_value``;
    ``fisher_max_n``: see ``error_p_value``)."""
    n = (base.requests, cand.requests)
    error_p = error_p_value(base.errors, n[0], cand.errors, n[1], fisher_max_n)
    latency_p, subsampled = latency_p_value(base_lat, cand_lat, sizes)
    base_rate, cand_rate = rate(base.errors, base.requests), rate(cand.errors, cand.requests)

    def delta(b: float | None, c: float | None) -> float | None:
        return None if b is None or c is None else _num(c - b, 6)

    return {
        "baseline": baseline,
        "candidate": candidate,
        "p50_delta_ms": delta(base.p50, cand.p50),
        "p99_delta_ms": delta(base.p99, cand.p99),
        "latency_p_value": latency_p,
        "error_rate_delta": delta(base_rate, cand_rate),
        "error_p_value": error_p,
        "judgement": judge(base, cand, error_p, latency_p),
        "latency_test": "mann-whitney-u (two-sided), successful responses"
        + (f", stride subsample of at most {MWU_MAX_PER_SIDE} per side" if subsampled else ""),
        "error_test": "fisher-exact" if sum(n) <= fisher_max_n else "two-proportion-z",
    }
