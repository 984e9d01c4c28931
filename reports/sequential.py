"""The sequential comparison: one decision over guardrails with margins, valid at every look.

A fixed-horizon test (``reports.stats.compare``) re-run at every poll spends its α again at
every look: polled every 30 s over a 20-minute rollout, identical versions were judged worse in
~4 % of rollouts at α = 0.01. Here each guardrail is a *time-uniform confidence sequence* (Howard,
Ramdas, McAuliffe, Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Ann. Statist. 2021; Howard & Ramdas, "Sequential estimation of quantiles with applications to
A/B-testing and best-arm identification", Bernoulli 2022): bounds that hold simultaneously at
every sample size with probability ≥ 1 - α, so they can be read after every sample.

Guardrails (``metric``: what "not worse" allows by default, ``MARGINS``):

- ``latency_p50_ratio`` (candidate p50 / baseline p50 ≤ 1.10, or at most 5 ms more),
  ``latency_p99_ratio`` (≤ 1.25, or at most 20 ms more), on successful answers, and
  ``ttft_p50_ratio`` (≤ 1.10, or 5 ms) when both versions have streamed answers (a non-null
  ``ttft_ms``). The floors (``MARGINS_MS``) are today's materiality rule (``reports.stats``:
  material is the ratio *and* the difference): a 2 ms service's p99 is scheduling noise whose
  ratio's bounds stay around [0.3, 3.5] for thousands of samples, and without a floor a healthy
  candidate never passes. ``beyond`` needs both the ratio's and the difference's lower bounds
  past their limits, ``within`` either upper bound under its own;
- ``error_rate_delta`` (candidate error rate - baseline's ≤ +0.005, i.e. +0.5 percentage
  point), on requests. An absolute margin because at the 0.1-1 % rates healthy services run,
  +0.5 pp is material (×1.5 at 1 %, ×6 at 0.1 %) yet decidable in a rollout: proving a
  relative margin such as ×1.5 at 0.1 % takes ~10⁶ requests, so a healthy rollout would never
  pass. Stricter gates belong in an SLO (``candidate.error_rate<0.002``).

How a bound is made. For one version and the p-quantile q, the indicators 1{X_i ≤ q} are
Bernoulli(p); the beta-binomial mixture of likelihood ratios
``M_n(k) = B(a + k, b + n - k) / B(a, b) / (p^k (1-p)^(n-k))`` (k of n samples ≤ q) is a
nonnegative martingale, so by Ville's inequality ``{q : M_n(k_n(q)) < 1/α'}`` covers the true
quantile at every n at once with probability ≥ 1 - α'. That set is the order statistics between
two ranks ``[k_lo, k_hi + 1]`` that depend on n only (``rank_bounds``). An error rate's sequence
is the same martingale read the other way: the set of rates r with ``M_n(r) < 1/α'`` given k
errors in n requests (``rate_bounds``; a Beta(1/2, 20) prior: a candidate answering only
errors is bounded above 8 % after 10 requests, above 18 % after 20). A ratio's bounds are
the quotient of the two versions' bounds, a difference's their difference; α is split evenly
over every version of every guardrail (``α' = α / (2 × guardrails)``), so all sequences hold
together with probability ≥ 1 - α, which bounds both the false-fail and the false-pass rate by
α however often the decision is read.

The decision: ``fail`` at the first look where one guardrail lies wholly beyond its margin
(lower bound > margin), ``pass`` at the first where every one lies wholly within (upper bound ≤
margin), else ``pending``; the first decision in arrival order is kept. Looks are every
``look_s`` seconds of send time in which some side grew by ``LOOK_GROWTH`` (2 %) or more, so a
replay over 100k samples takes a few hundred looks; a bound holds at every sample, so looking
on a grid only delays a decision by at most one look.

Stratification: where both versions answer within the same ``bucket_s`` bucket (a mixed window,
a weighted canary), each bucket keeps as many samples of each version as the other has there
(the first ones, in arrival order), so a moving split over a drifting load is compared bucket
for bucket and not read as a version difference. Buckets with one version only are kept whole:
an atomic switch compares the baseline before with the candidate after, and drift between the
two is what the margins allow for.

Warm-up: the candidate's answers sent within ``warmup_s`` (``WARMUP_S``, 5 s) of its first
request are not compared for latency (a new process answers its first requests slowly: cold
caches, new connections); they count in its error guardrail, so a candidate failing from its
first request still fails at once. The rollout block (errors and disruption during the switch)
and the SLOs see every answer.

Fail-closed: a candidate with requests but no successful answer has open latency bounds and is
decided by its error guardrail (it fails); a candidate with no request at all once
``NO_EVIDENCE_REQUESTS`` requests were sent more than ``NO_EVIDENCE_GRACE_S`` after the
platform reported the switch fails with reason ``no evidence``.

Settings ride on the SLO list, so a run (``--slo``) and a service target (``slo = [...]``) set
them the same way: ``comparison=off`` drops the comparison check from the verdict;
``comparison.alpha=0.05``, ``comparison.latency_p99_ratio=1.5``, ``comparison.error_rate_delta=
0.01`` (any guardrail's margin), ``comparison.latency_p99_ms=0`` (a latency guardrail's floor,
``latency_p50_ms``, ``latency_p99_ms``, ``ttft_p50_ms``; 0: the ratio alone),
``comparison.warmup_s=0``, ``comparison.bucket_s=5``, ``comparison.look_s=1``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, Unpack

import numpy as np

METHOD = "confidence-sequence"
ALPHA = 0.01
#: What "not worse" allows per guardrail: a ratio's upper limit, a difference's.
MARGINS: dict[str, float] = {
    "latency_p50_ratio": 1.10,
    "latency_p99_ratio": 1.25,
    "error_rate_delta": 0.005,
    "ttft_p50_ratio": 1.10,
}
#: The absolute floor of each latency guardrail, ms: a difference this small is within whatever
#: the ratio (today's materiality rule, ``reports.stats.MIN_DELTA``: material is 10 % *and* 5 ms
#: at p50, 25 % *and* 20 ms at p99). Without it, a fast service's p99 (a few ms of scheduling
#: noise, or a slow tail's knee) keeps its ratio's bounds around [0.3, 3.5] for thousands of
#: samples and a healthy candidate never passes.
MARGINS_MS: dict[str, float] = {
    "latency_p50_ratio": 5.0,
    "latency_p99_ratio": 20.0,
    "ttft_p50_ratio": 5.0,
}
#: The setting key of each floor (``comparison.latency_p99_ms=50``).
FLOOR_KEYS = {"latency_p50_ms": "latency_p50_ratio", "latency_p99_ms": "latency_p99_ratio",
              "ttft_p50_ms": "ttft_p50_ratio"}  # fmt: skip
#: The quantile each ratio guardrail compares.
QUANTILES = {"latency_p50_ratio": 0.5, "latency_p99_ratio": 0.99, "ttft_p50_ratio": 0.5}
LOOK_S = 5.0
BUCKET_S = 10.0
#: The candidate's warm-up, seconds from its first request: its latencies then are not judged
#: (a new process's first answers: cold caches, new connections, a JIT). Measured through the
#: service on a loaded 2-core machine: a healthy proton's first 2.5 s after the switch had a
#: p99 of 181 ms against ~15 ms after, and failed the p99 guardrail at its first looks. Twice
#: that, and no more: a short run (the 12 s demo) keeps most of its candidate's evidence.
WARMUP_S = 5.0
#: A look is taken when a side's sample count grew by this fraction since the last one.
LOOK_GROWTH = 0.02
#: Requests sent later than NO_EVIDENCE_GRACE_S after the platform's switch with no candidate
#: answer among them: no evidence. The grace covers routing that lags the platform's report
#: (connection pinning, a gateway's refresh): 20 requests alone are 0.4 s at 50 req/s.
NO_EVIDENCE_REQUESTS = 20
NO_EVIDENCE_GRACE_S = 60.0
#: Looks kept for the figure of the bounds over time.
HISTORY_MAX = 5000
#: Prior weight of the quantile mixtures (Beta(p r, (1 - p) r)); 10-100 differ by < 1 % in width.
_QUANTILE_PRIOR = 20.0
#: Prior of the error-rate mixtures: Beta(1/2, 20), mean 2.4 %, most of its mass under 5 % where
#: healthy and failing services' error rates are, with a tail up to 1 for a candidate answering
#: only errors. Measured in the bench against Jeffreys' Beta(1/2, 1/2): "errors x4" (0.5 -> 2 %,
#: 20 req/s, 5 min of baseline) 45 % -> 78 % failed (median 960 -> 720 s); against Beta(1, 100)
#: (mean 1 %), as good there and 3x tighter on an only-errors candidate (lower bound 0.08 vs
#: 0.02 after 10 requests). Any fixed prior keeps the sequence valid; it only moves the width.
_RATE_PRIOR = (0.5, 20.0)
_SETTING_RE = re.compile(r"^comparison(?:\.(?P<key>[a-z0-9_]+))?=(?P<value>[^=<>]+)$")
_NUMERIC_KEYS = ("alpha", "look_s", "bucket_s", "warmup_s", *MARGINS, *FLOOR_KEYS)
SETTING_EXAMPLES = (
    "comparison=off, comparison.alpha=0.05, comparison.latency_p99_ratio=1.5, "
    "comparison.error_rate_delta=0.01, comparison.latency_p99_ms=0, comparison.bucket_s=5"
)


@dataclass(frozen=True)
class SeqSettings:
    """How the sequential comparison runs (defaults: the module's constants)."""

    alpha: float = ALPHA
    margins: Mapping[str, float] = field(default_factory=lambda: dict(MARGINS))
    margins_ms: Mapping[str, float] = field(default_factory=lambda: dict(MARGINS_MS))
    look_s: float = LOOK_S
    bucket_s: float = BUCKET_S
    warmup_s: float = WARMUP_S
    enabled: bool = True


def is_setting(expr: str) -> bool:
    """Whether an SLO-list entry is a comparison setting (``comparison=off``,
    ``comparison.KEY=VALUE``) rather than a check."""
    return (
        "".join(str(expr).split()).startswith("comparison")
        and "=" in str(expr)
        and not any(op in str(expr) for op in ("<", ">", "=="))
    )


def _bad(expr: str, why: str) -> ValueError:
    return ValueError(f"bad comparison setting {expr!r}: {why}; expected e.g. {SETTING_EXAMPLES}")


def parse_setting(expr: str) -> tuple[str, float | bool]:
    """``(key, value)`` of one setting; ValueError showing the expected form."""
    text = "".join(str(expr).split())
    found = _SETTING_RE.match(text)
    if not found:
        raise _bad(expr, "not comparison=on|off or comparison.KEY=NUMBER")
    key, value = found.group("key"), found.group("value")
    if key is None:
        if value not in ("on", "off"):
            raise _bad(expr, f"comparison takes on or off, not {value!r}")
        return "enabled", value == "on"
    if key not in _NUMERIC_KEYS:
        raise _bad(expr, f"unknown key {key!r} (known: {', '.join(_NUMERIC_KEYS)})")
    try:
        number = float(value)
    except ValueError:
        raise _bad(expr, f"{value!r} is not a number") from None
    if key in FLOOR_KEYS or key == "warmup_s":  # may be 0: the ratio alone, no warm-up
        if not math.isfinite(number) or number < 0:
            raise _bad(expr, f"{key} must be a finite number >= 0")
        return key, number
    if not math.isfinite(number) or number <= 0 or (key == "alpha" and number >= 1):
        raise _bad(expr, f"{key} must be a finite number > 0" + (" and < 1" * (key == "alpha")))
    return key, number


def settings_from_slos(slos: Sequence[str] | None) -> SeqSettings:
    """The comparison's settings from an SLO list (later entries win)."""
    settings = SeqSettings()
    margins, floors = dict(MARGINS), dict(MARGINS_MS)
    for expr in slos or ():
        if not is_setting(expr):
            continue
        key, value = parse_setting(expr)
        if key in MARGINS:
            margins[key] = float(value)
        elif key in FLOOR_KEYS:
            floors[FLOOR_KEYS[key]] = float(value)
        else:
            settings = replace(settings, **{key: value})  # type: ignore[arg-type]
    return replace(settings, margins=margins, margins_ms=floors)


# -- the confidence sequences ------------------------------------------------------------------


def _log_mixture(k: Any, n: Any, p: Any, a: float, b: float) -> Any:
    """log of the beta-binomial mixture martingale: k successes of n against rate p."""
    from scipy.special import betaln  # ~0.25 s of import, paid only when a comparison runs

    return betaln(a + k, b + n - k) - betaln(a, b) - k * np.log(p) - (n - k) * np.log1p(-p)


def _bisect(f: Any, lo: np.ndarray, hi: np.ndarray, iterations: int) -> tuple[Any, Any]:
    """Shrink ``[lo, hi]`` (where ``f(lo)`` is false and ``f(hi)`` true) ``iterations`` times."""
    for _ in range(iterations):
        mid = (lo + hi) / 2
        inside = f(mid)
        hi = np.where(inside, mid, hi)
        lo = np.where(inside, lo, mid)
    return lo, hi


#: Sample sizes per cached block of rank bounds (a poll's n grows by a few samples).
_RANK_BLOCK = 512


@functools.lru_cache(maxsize=4096)
def _rank_block(p: float, alpha: float, block: int) -> tuple[np.ndarray, np.ndarray]:
    return _rank_bounds(np.arange(block * _RANK_BLOCK, (block + 1) * _RANK_BLOCK), p, alpha)


def rank_bounds(n: np.ndarray, p: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks ``(lo, hi)``: the p-quantile lies in ``[X_(lo), X_(hi)]`` of n samples at
    every n with probability ≥ 1 - alpha (``lo`` 0: no lower bound; ``hi`` n + 1: no upper).
    A few sizes (a poll) come from cached blocks of ``_RANK_BLOCK`` sizes; many (a replay)
    are computed at once."""
    n = np.asarray(n, dtype=np.int64)
    if n.size > 8:
        return _rank_bounds(n, p, alpha)
    lo, hi = np.zeros(n.size, np.int64), np.zeros(n.size, np.int64)
    for i, size in enumerate(n.tolist()):
        block_lo, block_hi = _rank_block(p, alpha, size // _RANK_BLOCK)
        lo[i], hi[i] = block_lo[size % _RANK_BLOCK], block_hi[size % _RANK_BLOCK]
    return lo, hi


def _rank_bounds(n: np.ndarray, p: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``rank_bounds`` computed: one bisection for every size and both ends at once."""
    n = np.asarray(n, dtype=np.float64)
    a, b, c = p * _QUANTILE_PRIOR, (1 - p) * _QUANTILE_PRIOR, math.log(1 / alpha)
    # log M is convex in k with its minimum near p n: the accepted ks are one interval, whose
    # two ends are found together (stacked), to integer precision
    nn = np.r_[n, n]
    centre = p * nn
    steps = int(math.log2(max(float(n.max(initial=1.0)), 1.0) + 1)) + 3
    _, inner = _bisect(
        lambda k: _log_mixture(k, nn, p, a, b) < c, np.r_[np.zeros_like(n), n], centre, steps
    )
    m = n.size
    lo = np.where(_log_mixture(0.0, n, p, a, b) < c, 0, np.ceil(inner[:m] - 1e-9))
    hi = np.where(_log_mixture(n, n, p, a, b) < c, n, np.floor(inner[m:] + 1e-9))
    # the integer ends found from the inside may sit one step inside: widen to the last
    # accepted integer (the sets are intervals, so checking the neighbours is enough)
    lo = np.where((lo >= 1) & (_log_mixture(lo - 1, n, p, a, b) < c), lo - 1, lo)
    hi = np.where((hi < n) & (_log_mixture(hi + 1, n, p, a, b) < c), hi + 1, hi)
    return lo.astype(np.int64), (hi + 1).astype(np.int64)


def rate_bounds(k: np.ndarray, n: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on a Bernoulli rate from k of n, valid at every n with probability ≥ 1 - alpha
    (n 0: ``(0, 1)``). Both ends in one bisection on the logit scale (precision ~1e-6)."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    a, b = _RATE_PRIOR
    c = math.log(1 / alpha)
    centre = np.clip(np.divide(k, n, out=np.full_like(n, 0.5), where=n > 0), 1e-12, 1 - 1e-12)
    kk, nn = np.r_[k, k], np.r_[n, n]
    edge = 34.5  # logit of 1e-15

    def inside(x: Any) -> Any:
        return _log_mixture(kk, nn, 1 / (1 + np.exp(-x)), a, b) < c

    mid = np.log(centre / (1 - centre))
    _, inner = _bisect(inside, np.r_[np.full_like(n, -edge), np.full_like(n, edge)],
                       np.r_[mid, mid], 40)  # fmt: skip
    m = n.size
    ends = inside(np.r_[np.full_like(n, -edge), np.full_like(n, edge)])
    lo = np.where(ends[:m], 0.0, 1 / (1 + np.exp(-inner[:m])))
    hi = np.where(ends[m:], 1.0, 1 / (1 + np.exp(-inner[m:])))
    return np.where(n > 0, lo, 0.0), np.where(n > 0, hi, 1.0)


# -- the samples --------------------------------------------------------------------------------


def kept_rows(t: np.ndarray, code: np.ndarray, bucket_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The row numbers of the baseline (code 0) and candidate (code 1) that are compared: in a
    bucket of ``bucket_s`` where both versions answered, each keeps as many rows (its first
    ones) as the other has there; other buckets are kept whole. ``t`` sorted."""
    idx = [np.flatnonzero(code == v) for v in (0, 1)]
    if not t.size or not idx[0].size or not idx[1].size:
        return idx[0], idx[1]
    edges = t[0] + bucket_s * np.arange(int((t[-1] - t[0]) // bucket_s) + 2)
    cuts = [np.searchsorted(t[i], edges) for i in idx]  # each bucket's first row of v
    counts = [np.diff(c) for c in cuts]
    shared = (counts[0] > 0) & (counts[1] > 0)
    if not shared.any():
        return idx[0], idx[1]  # no mixed bucket (an atomic switch): nothing to balance
    out = []
    for v, other in ((0, 1), (1, 0)):
        start = (cuts[v][:-1] + np.minimum(counts[v], counts[other]))[shared]
        end = cuts[v][1:][shared]
        lengths = end - start
        # the rows beyond the other's count in each mixed bucket: concatenated ranges
        drop = np.repeat(start - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(
            lengths.sum()
        )
        keep = np.ones(idx[v].size, bool)
        keep[drop] = False
        out.append(idx[v][keep])
    return out[0], out[1]


def stratify(t: np.ndarray, code: np.ndarray, bucket_s: float) -> np.ndarray:
    """``kept_rows`` as a mask over the rows."""
    keep = np.zeros(t.size, bool)
    for rows in kept_rows(t, code, bucket_s):
        keep[rows] = True
    return keep


@dataclass
class Side:
    """One version's kept samples in send-time order."""

    t_req: np.ndarray  # send times of its requests
    errors: np.ndarray  # cumulative error count after each request
    t_ok: np.ndarray  # send times of its successful answers
    latency: np.ndarray  # their latencies
    t_ttft: np.ndarray  # send times of its streamed answers
    ttft: np.ndarray  # their times to first token

    def requests(self, at: float) -> tuple[int, int]:
        """(requests, errors) sent up to ``at``."""
        n = int(np.searchsorted(self.t_req, at, side="right"))
        return n, int(self.errors[n - 1]) if n else 0

    def values(self, metric: str, at: float) -> np.ndarray:
        """The values a ratio guardrail reads, sent up to ``at``."""
        t, v = (self.t_ttft, self.ttft) if metric.startswith("ttft") else (self.t_ok, self.latency)
        return v[: int(np.searchsorted(t, at, side="right"))]


def sides(
    t: np.ndarray,
    code: np.ndarray,
    latency: np.ndarray,
    ok: np.ndarray,
    ttft: np.ndarray | None,
    bucket_s: float,
    warmup_s: float = 0.0,
) -> tuple[Side, Side]:
    """The baseline's and candidate's kept samples (``kept_rows``), ``t`` sorted. The
    candidate's answers sent within ``warmup_s`` of its first request are its warm-up: left out
    of its latency and TTFT values, kept in its requests and errors."""
    out = []
    for v, rows in enumerate(kept_rows(t, code, bucket_s)):
        t_v, good = t[rows], ok[rows]
        judged = good & (t_v >= t_v[0] + warmup_s) if v == 1 and t_v.size else good
        streamed = judged & np.isfinite(ttft[rows]) if ttft is not None else None
        out.append(
            Side(
                t_req=t_v,
                errors=np.cumsum(~good),
                t_ok=t_v[judged],
                latency=latency[rows][judged],
                t_ttft=t_v[streamed] if streamed is not None else np.zeros(0),
                ttft=ttft[rows][streamed] if ttft is not None else np.zeros(0),
            )
        )
    return out[0], out[1]


# -- the guardrails -----------------------------------------------------------------------------


def metrics_of(base: Side, cand: Side) -> list[str]:
    """The guardrails these samples have: TTFT only when both versions streamed."""
    names = ["latency_p50_ratio", "latency_p99_ratio", "error_rate_delta"]
    if base.ttft.size and cand.ttft.size:
        names.append("ttft_p50_ratio")
    return names


def _state(lower: float, upper: float, margin: float) -> str:
    if lower > margin:
        return "beyond"
    return "within" if upper <= margin else "open"


def _latency_state(ratio: Sequence[float], delta: Sequence[float], margin: float,
                   floor_ms: float) -> str:  # fmt: skip
    """A latency guardrail's state: material is the ratio beyond ``margin`` *and* the
    difference beyond ``floor_ms`` (today's rule), so ``beyond`` needs both lower bounds past
    their limits and ``within`` either upper bound under its own. Valid as the bounds are: the
    candidate's quantile is at most ``max(margin × q_b, q_b + floor)`` when either upper bound
    holds, at least that when both lower bounds do."""
    if ratio[1] > margin and delta[1] > floor_ms:
        return "beyond"
    return "within" if ratio[2] <= margin or delta[2] <= floor_ms else "open"


Bounds = tuple[float, float, float]  # (estimate, lower, upper)


def _ratio(b: Bounds, c: Bounds) -> Bounds:
    """(estimate, lower, upper) of the candidate's quantile over the baseline's."""
    (eb, lb, ub), (ec, lc, uc) = b, c
    est = ec / eb if eb > 0 and math.isfinite(eb) and math.isfinite(ec) else math.nan
    lower = lc / ub if ub > 0 and math.isfinite(ub) else 0.0
    upper = uc / lb if lb > 0 else math.inf
    return est, lower, upper


def _difference(b: Bounds, c: Bounds) -> Bounds:
    """(estimate, lower, upper) of the candidate's quantile minus the baseline's, ms."""
    (eb, lb, ub), (ec, lc, uc) = b, c
    return ec - eb, lc - ub, uc - lb


class _Ordered:
    """One version's values of one kind (latency, TTFT) sorted, for the first ``n`` of them: a
    poll's order statistics are read by index, the samples since the last poll merged in (O(n)
    copies) instead of a partition of all of them per look (a few ms at 100k). The first ``n``
    are recognised again by their count, sum and last value (as ``probes.serve.verdict`` does
    for its version codes), so only the sorted copy is kept (8 bytes a sample)."""

    def __init__(self) -> None:
        self.ordered = np.zeros(0)
        self.print: tuple[int, float, float] = (0, 0.0, 0.0)

    @staticmethod
    def _print(values: np.ndarray, n: int) -> tuple[int, float, float]:
        return (n, float(np.sum(values[:n])), float(values[n - 1]) if n else 0.0)

    def first(self, values: np.ndarray, n: int) -> np.ndarray:
        """``values[:n]`` sorted; extended when ``values`` starts with what was seen."""
        m = self.print[0]
        if m <= n and self._print(values, m) == self.print:
            new = np.sort(values[m:n])
            if new.size:
                self.ordered = np.insert(self.ordered, np.searchsorted(self.ordered, new), new)
        else:  # the samples changed under it (a row kept or dropped before the end): again
            self.ordered = np.sort(values[:n])
        self.print = self._print(values, n)
        return self.ordered


class Looks:
    """Every guardrail at a set of looks (send times, ascending): the sequences' ranks and rate
    bounds computed for all looks at once (one vectorised bisection each), the order
    statistics per look on demand."""

    def __init__(
        self, base: Side, cand: Side, times: np.ndarray, settings: SeqSettings,
        metrics: Sequence[str], ordered: dict[tuple[str, int], _Ordered] | None = None,
    ) -> None:  # fmt: skip
        self.base, self.cand, self.times, self.metrics = base, cand, times, list(metrics)
        self.settings = settings
        #: each version's sorted values per kind, kept by the caller between looks and polls
        self.ordered = ordered if ordered is not None else {}
        alpha = settings.alpha / (2 * len(self.metrics))
        self.n: dict[tuple[str, int], np.ndarray] = {}
        self.ranks: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        for metric in self.metrics:
            if metric == "error_rate_delta":
                continue
            for v, side in enumerate((base, cand)):
                t = side.t_ttft if metric.startswith("ttft") else side.t_ok
                n = np.searchsorted(t, times, side="right")
                self.n[metric, v] = n
                self.ranks[metric, v] = rank_bounds(n, QUANTILES[metric], alpha)
        n_req = [np.searchsorted(s.t_req, times, side="right") for s in (base, cand)]
        errs = [
            np.where(n > 0, s.errors[np.maximum(n - 1, 0)], 0) if s.errors.size else 0 * n
            for s, n in zip((base, cand), n_req, strict=True)
        ]
        self.requests = n_req
        self.errors = errs
        lo, hi = rate_bounds(np.r_[errs[0], errs[1]], np.r_[n_req[0], n_req[1]], alpha)
        m = times.size
        self.rates = (lo[:m], hi[:m]), (lo[m:], hi[m:])

    def _quantiles(self, i: int) -> dict[str, tuple[Bounds, Bounds]]:
        """Per ratio guardrail at look ``i``: (baseline, candidate) quantile (estimate,
        lower, upper), read from each version's sorted values."""
        out: dict[str, tuple[Bounds, Bounds]] = {}
        for m in self.metrics:
            if m not in QUANTILES:
                continue
            kind = "ttft" if m.startswith("ttft") else "latency"
            found = []
            for v, side in enumerate((self.base, self.cand)):
                n = int(self.n[m, v][i])
                if n == 0:
                    found.append((math.nan, 0.0, math.inf))
                    continue
                values = self.ordered.setdefault((kind, v), _Ordered()).first(
                    side.ttft if kind == "ttft" else side.latency, n
                )
                lo, hi = (int(r[i]) for r in self.ranks[m, v])
                est = min(n, max(1, math.ceil(QUANTILES[m] * n)))
                found.append((
                    float(values[est - 1]),
                    float(values[lo - 1]) if lo >= 1 else 0.0,
                    float(values[hi - 1]) if hi <= n else math.inf,
                ))  # fmt: skip
            out[m] = (found[0], found[1])
        return out

    def _delta(self, i: int) -> tuple[float, ...]:
        (nb, nc), (eb, ec) = (int(n[i]) for n in self.requests), (int(e[i]) for e in self.errors)
        (lob, hib), (loc, hic) = ((float(lo[i]), float(hi[i])) for lo, hi in self.rates)
        est = ec / nc - eb / nb if nb and nc else math.nan
        return est, loc - hib, hic - lob

    def counts(self, i: int) -> tuple[int, int]:
        """(baseline, candidate) requests at look ``i``."""
        return int(self.requests[0][i]), int(self.requests[1][i])

    def rows(self, i: int) -> list[dict[str, Any]]:
        """Every guardrail's ``{metric, estimate, lower, upper, margin, state}`` at look ``i``
        (unrounded; infinite bounds where a sequence is still open); a latency guardrail adds
        its floor ``margin_ms`` and the difference's ``delta_ms``, ``delta_lower_ms``,
        ``delta_upper_ms``."""
        rows = []
        quantiles = self._quantiles(i)
        for metric in self.metrics:
            margin = float(self.settings.margins.get(metric, MARGINS[metric]))
            if metric == "error_rate_delta":
                est, lower, upper = self._delta(i)
                rows.append({"metric": metric, "estimate": est, "lower": lower, "upper": upper,
                             "margin": margin, "state": _state(lower, upper, margin)})  # fmt: skip
                continue
            ratio, delta = _ratio(*quantiles[metric]), _difference(*quantiles[metric])
            floor = float(self.settings.margins_ms.get(metric, MARGINS_MS[metric]))
            rows.append(
                {"metric": metric, "estimate": ratio[0], "lower": ratio[1], "upper": ratio[2],
                 "margin": margin, "state": _latency_state(ratio, delta, margin, floor),
                 "margin_ms": floor, "delta_ms": delta[0], "delta_lower_ms": delta[1],
                 "delta_upper_ms": delta[2]}
            )  # fmt: skip
        return rows


def decision_of(rows: Sequence[Mapping[str, Any]]) -> str:
    """``fail`` if a guardrail lies beyond its margin, ``pass`` if all lie within, else pending."""
    states = [r["state"] for r in rows]
    if "beyond" in states:
        return "fail"
    return "pass" if states and all(s == "within" for s in states) else "pending"


# -- the decision over time ---------------------------------------------------------------------


@dataclass
class Decider:
    """The first decision in arrival order, advanced look by look as samples come; the service
    keeps one per rollout so each poll evaluates only the looks since the last one."""

    settings: SeqSettings = field(default_factory=SeqSettings)
    decision: str = "pending"
    decided_at_s: float | None = None
    samples_at_decision: dict[str, int] | None = None
    at_decision: list[dict[str, Any]] | None = None
    reason: str | None = None
    next_look: float | None = None
    counts: tuple[int, int] = (0, 0)
    #: (time, guardrail rows) of every look taken, for the figure of the bounds over time.
    history: list[tuple[float, list[dict[str, Any]]]] = field(default_factory=list)
    #: each version's sorted values, merged poll to poll (``_Ordered``)
    ordered: dict[tuple[str, int], _Ordered] = field(default_factory=dict, repr=False)

    def _decide(self, decision: str, at: float, counts: tuple[int, int], rows: Any) -> None:
        self.decision, self.decided_at_s = decision, at
        self.samples_at_decision = {"baseline": counts[0], "candidate": counts[1]}
        self.at_decision = rows

    def _looks(self, base: Side, cand: Side, start: float, end: float) -> np.ndarray:
        """The look times from the last one up to ``end``: grid times at which a side grew by
        LOOK_GROWTH since the last look taken, and ``end`` itself."""
        step = self.settings.look_s
        first = self.next_look if self.next_look is not None else start + step
        grid = np.arange(first, end, step) if end > first else np.zeros(0)
        nb = np.searchsorted(base.t_req, grid, side="right")
        nc = np.searchsorted(cand.t_req, grid, side="right")
        taken = []
        old_b, old_c = self.counts
        i = 0
        while i < grid.size:  # the growth rule depends on the last look: jump look to look
            want_b = max(old_b + 1, math.ceil(old_b * (1 + LOOK_GROWTH)))
            want_c = max(old_c + 1, math.ceil(old_c * (1 + LOOK_GROWTH)))
            j = min(int(np.searchsorted(nb[i:], want_b)), int(np.searchsorted(nc[i:], want_c)))
            if i + j >= grid.size:
                break
            i += j
            taken.append(grid[i])
            old_b, old_c = int(nb[i]), int(nc[i])
            i += 1
        self.next_look = float(grid[-1] + step) if grid.size else first
        return np.array([*taken, end], dtype=np.float64)

    def advance(
        self, base: Side, cand: Side, start: float, end: float, metrics: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Take every look from the last one up to ``end`` (send-time seconds) until decided;
        return the guardrails at ``end`` (the current bounds)."""
        times = self._looks(base, cand, start, end)
        looks = Looks(base, cand, times, self.settings, metrics, self.ordered)
        last, current = times.size - 1, None
        for i in range(times.size if self.decision == "pending" else 0):
            rows = looks.rows(i)
            self.counts = looks.counts(i)
            if len(self.history) < HISTORY_MAX:
                self.history.append((float(times[i]), rows))
            current = rows if i == last else None
            decision = decision_of(rows)
            if decision != "pending":
                self._decide(decision, float(times[i]), self.counts, rows)
                break
        return current if current is not None else looks.rows(last)

    def no_evidence(self, at: float) -> None:
        """Fail: the platform switched and no candidate request came."""
        if self.decision == "pending":
            self._decide("fail", at, (0, 0), None)
            self.reason = "no evidence: no candidate request after the platform's switch"


def _num(value: float) -> float | None:
    """JSON-safe and stable: 6 significant digits, None for an infinite or missing bound."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


#: A guardrail's numbers rounded by ``_num`` (the ``delta_*`` ones: latency guardrails only).
_BOUND_KEYS = ("estimate", "lower", "upper", "delta_ms", "delta_lower_ms", "delta_upper_ms")


def _rounded(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, **{k: _num(r[k]) for k in _BOUND_KEYS if k in r}} for r in rows]


def block(decider: Decider, current: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``comparison.sequential`` block of summary.json (CONTRACT.md)."""
    at = {r["metric"]: r for r in _rounded(decider.at_decision or [])}
    guardrails = []
    for row in _rounded(current):
        found = at.get(row["metric"])
        decided = (
            None if found is None else {k: found[k] for k in (*_BOUND_KEYS, "state") if k in found}
        )
        guardrails.append({**row, "at_decision": decided})
    return {
        "method": METHOD,
        "alpha": decider.settings.alpha,
        "decision": decider.decision,
        "decided_at_s": None if decider.decided_at_s is None else round(decider.decided_at_s, 3),
        "samples_at_decision": decider.samples_at_decision,
        "guardrails": guardrails,
        "reason": decider.reason,
        "look_s": decider.settings.look_s,
        "bucket_s": decider.settings.bucket_s,
        "warmup_s": decider.settings.warmup_s,
    }


def no_evidence_at(t: np.ndarray, code: np.ndarray, switched_at_s: float | None) -> float | None:
    """When the NO_EVIDENCE_REQUESTS-th request sent NO_EVIDENCE_GRACE_S after the switch was
    sent while the candidate had none at all; None if the candidate answered or the evidence
    is not there yet."""
    if switched_at_s is None or np.any(code == 1):
        return None
    after = t[t > switched_at_s + NO_EVIDENCE_GRACE_S]
    return float(after[NO_EVIDENCE_REQUESTS - 1]) if after.size >= NO_EVIDENCE_REQUESTS else None


class Span(TypedDict, total=False):
    """What ``evaluate`` and ``decide`` read beside the samples: ``ttft`` (ms per row, NaN when
    the answer did not stream), the first look's base ``start`` and the last look ``end``
    (send-time seconds; default the first and the newest send time), and when the platform
    reported the switch (``switched_at_s``, for the no-evidence rule)."""

    ttft: np.ndarray | None
    start: float
    end: float | None
    switched_at_s: float | None


def evaluate(
    decider: Decider,
    t: np.ndarray,
    code: np.ndarray,
    latency: np.ndarray,
    ok: np.ndarray,
    **span: Unpack[Span],
) -> dict[str, Any]:
    """Advance ``decider`` over the samples (send times ``t`` sorted, seconds; ``code`` 0
    baseline, 1 candidate, other values ignored) up to ``end`` and return its block."""
    start, end = span.get("start", 0.0), span.get("end")
    end = float(t[-1]) if end is None and t.size else (start if end is None else end)
    settings = decider.settings
    base, cand = sides(t, code, latency, ok, span.get("ttft"), settings.bucket_s, settings.warmup_s)
    metrics = metrics_of(base, cand)
    missing = no_evidence_at(t, code, span.get("switched_at_s"))
    if missing is not None:
        decider.no_evidence(missing)
    return block(decider, decider.advance(base, cand, start, end, metrics))


def decide(
    t: np.ndarray,
    code: np.ndarray,
    latency: np.ndarray,
    ok: np.ndarray,
    *,
    settings: SeqSettings | None = None,
    history: list[tuple[float, list[dict[str, Any]]]] | None = None,
    **span: Unpack[Span],
) -> dict[str, Any]:
    """The ``comparison.sequential`` block of a whole run, replayed look by look; ``history``
    (a list) receives ``(look time, guardrail rows)`` of every look taken, for a figure."""
    decider = Decider(settings or SeqSettings())
    found = evaluate(decider, t, code, latency, ok, **span)
    if history is not None:
        history.extend(decider.history)
    return found
