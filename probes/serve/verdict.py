"""The verdict endpoint's body (CONTRACT.md ``GET /api/v1/verdict``), from a rollout's raw samples.

The numbers are the report's: the comparison block comes from ``reports.stats.compare`` and the
checks from ``reports.verdict.verdict``, run on a summary-shaped dict built here from the raw
arrays, so the endpoint and the run's ``summary.json`` judge a rollout by the same rules.

Fields beyond the contract's: ``requests`` (all requests per side; ``samples`` counts the
successful ones, which is what the minimum applies to), ``error_p_value``, ``judgement``,
``latency_test``, ``error_test`` (as in summary.json's comparison) and ``min_samples``.

``verdict`` is ``pass`` or ``fail`` as the checks say, and ``pending`` while the evidence is thin:
no rollout known, either version with fewer than ``MIN_SAMPLES`` successful samples, or a check
that cannot be decided yet (the report's ``inconclusive``). Argo Rollouts turns any non-2xx into
an Error measurement and aborts after a few, so "not yet" is a 200 with ``pending``.

Speed: the endpoint answers on the event loop for every poll, so the work is bounded. Latency
blocks are exact over every successful sample; the Mann-Whitney test runs on a deterministic
stride subsample of at most ``MWU_MAX_PER_SIDE`` latencies per side (``reports.stats``' own
subsampling, with a lower bound; ``latency_test`` says so); run-wide and other-version blocks
are computed only when an SLO refers to them; the per-version masks of a rollout whose samples
only grew since the last call are extended, not recomputed (comparing 100k Python strings is
the largest single cost); and a body is memoised on a fingerprint of its inputs, so polls
between two new samples cost nothing. Measured (``bench/serve_verdict.py``, 100 live rollouts
of 1k to 100k samples): 7 ms CPU per poll at p50, 17 ms at p99, about 10 ms at 100k samples,
the largest parts being the exact percentiles, Fisher's test and the Mann-Whitney test.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probes.run import iso
from reports.stats import Side, compare, latency_block, rate, stride_subsample
from reports.verdict import LATENCY_METRICS, RUN_METRICS, checks_of, parse_slo
from reports.verdict import verdict as run_verdict

__all__ = [
    "MIN_SAMPLES",
    "MWU_MAX_PER_SIDE",
    "no_rollout_body",
    "pending_body",
    "verdict_body",
]

#: Successful samples each version needs before the endpoint says anything but pending.
MIN_SAMPLES = 50
#: Latencies per side the endpoint's Mann-Whitney test uses (the report's cap is higher).
MWU_MAX_PER_SIDE = 5_000
_MEMO_SIZE = 1024
_memo: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_memo_lock = threading.Lock()
#: Rollouts whose version codes are kept between calls (1 byte per sample each).
_PREFIX_SIZE = 1024
_prefixes: OrderedDict[tuple[Any, ...], _Prefix] = OrderedDict()


@dataclass
class _Prefix:
    """Version codes of the first ``n`` samples (0 baseline, 1 candidate, 2 other) and how to
    recognise those samples again."""

    n: int
    latency_sum: float
    last: tuple[float, str]
    codes: np.ndarray


def _codes(versions: np.ndarray, labels: tuple[str, str]) -> np.ndarray:
    codes = np.full(versions.size, 2, dtype=np.int8)
    codes[versions == labels[0]] = 0
    codes[versions == labels[1]] = 1
    return codes


def _masks(
    key: tuple[Any, ...], versions: np.ndarray, latency: np.ndarray, labels: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """``versions == baseline`` and ``versions == candidate``, extending the last call's codes
    when the samples start with the ones it saw (same length prefix, sum and last sample)."""
    n = int(versions.size)
    with _memo_lock:
        prefix = _prefixes.get(key)
    m = prefix.n if prefix is not None else 0
    if (
        prefix is not None
        and 0 < m <= n
        and (float(latency[m - 1]), str(versions[m - 1])) == prefix.last
        and float(np.sum(latency[:m])) == prefix.latency_sum
    ):
        codes = np.concatenate((prefix.codes, _codes(versions[m:], labels)))
    else:
        codes = _codes(versions, labels)
    if n:
        entry = _Prefix(n, float(np.sum(latency)), (float(latency[-1]), str(versions[-1])), codes)
        with _memo_lock:
            _prefixes[key] = entry
            _prefixes.move_to_end(key)
            while len(_prefixes) > _PREFIX_SIZE:
                _prefixes.popitem(last=False)
    return codes == 0, codes == 1


def _empty_body(target: str, run_id: str | None, updated_at: float) -> dict[str, Any]:
    return {
        "verdict": "pending",
        "reason": "",
        "target": target,
        "run_id": run_id,
        "baseline": None,
        "candidate": None,
        "samples": {"baseline": 0, "candidate": 0},
        "requests": {"baseline": 0, "candidate": 0},
        "candidate_error_rate": None,
        "error_rate_delta": None,
        "p50_delta_ms": None,
        "p99_delta_ms": None,
        "latency_p_value": None,
        "error_p_value": None,
        "judgement": None,
        "checks": [],
        "min_samples": MIN_SAMPLES,
        "updated_at": iso(updated_at),
    }


def pending_body(
    target: str, reason: str, updated_at: float, *, run_id: str | None = None
) -> dict[str, Any]:
    """A full ``pending`` body with nothing judged (no rollout, or judging failed)."""
    body = _empty_body(target, run_id, updated_at)
    body["reason"] = reason
    return body


def no_rollout_body(target: str, updated_at: float) -> dict[str, Any]:
    """``pending`` with reason ``no rollout known``: nothing to judge yet."""
    return pending_body(target, "no rollout known", updated_at)


def _referenced_scopes(slos: Sequence[str]) -> tuple[bool, set[str]]:
    """(whether a run-wide latency is referenced, the version labels SLOs name)."""
    run_latency, labels = False, set()
    for expr in checks_of(slos):
        slo = parse_slo(expr)
        for operand in (slo.left, slo.ref):
            if operand is None or operand.metric in RUN_METRICS:
                continue
            if operand.scope is None:
                run_latency = run_latency or operand.metric in LATENCY_METRICS
            elif operand.scope not in ("baseline", "candidate"):
                labels.add(operand.scope)
    return run_latency, labels


def _version_block(
    role: str, mask: np.ndarray, latency: np.ndarray, ok: np.ndarray
) -> tuple[dict[str, Any], np.ndarray]:
    """A summary ``versions`` entry (the fields SLOs read) and its successful latencies."""
    n = int(np.count_nonzero(mask))
    good = mask & ok
    lat = latency[good]
    errors = n - int(lat.size)
    return {
        "role": role,
        "requests": n,
        "errors": errors,
        "error_rate": rate(errors, n),
        "share": None,
        "throughput_rps": None,
        "latency_ms": latency_block(lat),
    }, lat


def _summary(
    key: tuple[Any, ...],
    baseline: str,
    candidate: str,
    versions: np.ndarray,
    latency: np.ndarray,
    ok: np.ndarray,
    slos: Sequence[str],
) -> tuple[dict[str, Any], dict[str, int]]:
    """A summary-shaped dict with what ``reports.verdict`` reads, and the successful counts."""
    n = int(ok.size)
    errors = n - int(np.count_nonzero(ok))
    run_latency, labels = _referenced_scopes(slos)
    blocks: dict[str, dict[str, Any]] = {}
    lats: dict[str, np.ndarray] = {}
    masks = _masks(key, versions, latency, (baseline, candidate))
    for label, role, mask in ((baseline, "baseline", masks[0]), (candidate, "candidate", masks[1])):
        blocks[label], lats[role] = _version_block(role, mask, latency, ok)
    for label in labels - {baseline, candidate}:
        role = "unknown" if label == "unknown" else "other"
        blocks[label], _ = _version_block(role, versions == label, latency, ok)
    base, cand = blocks[baseline], blocks[candidate]
    sides = [
        Side(b["requests"], b["errors"], b["latency_ms"]["p50"], b["latency_ms"]["p99"], lat.size)
        for b, lat in ((base, lats["baseline"]), (cand, lats["candidate"]))
    ]
    sub_b = stride_subsample(lats["baseline"], MWU_MAX_PER_SIDE)
    sub_c = stride_subsample(lats["candidate"], MWU_MAX_PER_SIDE)
    comparison = compare(baseline, candidate, sides[0], sides[1], sub_b, sub_c)
    if sub_b.size < lats["baseline"].size or sub_c.size < lats["candidate"].size:
        comparison["latency_test"] += f", stride subsample of at most {MWU_MAX_PER_SIDE} per side"
    error_rate = rate(errors, n)
    summary = {
        "requests": n,
        "errors": errors,
        "error_rate": error_rate,
        "availability": None if error_rate is None else 1.0 - error_rate,
        "throughput_rps": None,
        "latency_ms": latency_block(latency[ok]) if run_latency else {},
        "versions": blocks,
        "rollout": None,
        "comparison": comparison,
    }
    counts = {"baseline": int(lats["baseline"].size), "candidate": int(lats["candidate"].size)}
    return summary, counts


def _reason(verdict: str, checks: Sequence[dict[str, Any]], thin: str | None) -> str:
    """One line: why the verdict is what it is."""
    if thin:
        return thin
    if verdict == "fail":
        failed = [c for c in checks if c.get("passed") is False]
        return "failed: " + "; ".join(_check_text(c) for c in failed)
    if verdict == "pending":
        open_ = [c for c in checks if c.get("passed") is None]
        return "not decided yet: " + "; ".join(_check_text(c) for c in open_)
    return f"all {len(checks)} checks passed"


def _check_text(check: dict[str, Any]) -> str:
    value = check.get("value")
    shown = f"{value:.6g}" if isinstance(value, float) else str(value)
    threshold = check.get("threshold")
    limit = f"{threshold:.6g}" if isinstance(threshold, float) else str(threshold)
    return f"{check.get('name')}={shown} (needs {check.get('op')} {limit})"


def _fingerprint(*parts: Any, versions: np.ndarray, latency: np.ndarray, ok: np.ndarray) -> tuple:
    """Cheap and, for samples that only grow or slide, distinguishing: sizes and sums."""
    return (
        *parts,
        int(versions.size),
        int(ok.size),
        int(np.count_nonzero(ok)),
        float(np.nansum(latency)) if latency.size else 0.0,
        float(latency[-1]) if latency.size else 0.0,
        str(versions[-1]) if versions.size else "",
    )


def verdict_body(
    *,
    target: str,
    run_id: str | None,
    baseline: str | None,
    candidate: str | None,
    versions: np.ndarray,
    latency_ms: np.ndarray,
    ok: np.ndarray,
    slos: Sequence[str],
    updated_at: float,
) -> dict[str, Any]:
    """The CONTRACT verdict body of a rollout from its raw samples (arrays of equal length:
    version label, latency in ms, and whether the request succeeded); see the module doc."""
    if baseline is None or candidate is None:
        return pending_body(target, "no rollout known", updated_at, run_id=run_id)
    versions = np.asarray(versions)
    latency = np.asarray(latency_ms, dtype=np.float64)
    ok_arr = np.asarray(ok, dtype=bool)
    if not versions.size == latency.size == ok_arr.size:
        raise ValueError(
            f"versions, latency_ms and ok must have one length, not "
            f"{versions.size}, {latency.size}, {ok_arr.size}"
        )
    key = _fingerprint(
        target, run_id, baseline, candidate, tuple(slos),
        versions=versions, latency=latency, ok=ok_arr,
    )  # fmt: skip
    with _memo_lock:
        cached = _memo.get(key)
        if cached is not None:
            _memo.move_to_end(key)
            return {**copy.deepcopy(cached), "updated_at": iso(updated_at)}
    body = _compute(target, run_id, baseline, candidate, versions, latency, ok_arr, slos)
    body["updated_at"] = iso(updated_at)
    with _memo_lock:
        _memo[key] = body
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return copy.deepcopy(body)


def _compute(
    target: str,
    run_id: str | None,
    baseline: str,
    candidate: str,
    versions: np.ndarray,
    latency: np.ndarray,
    ok: np.ndarray,
    slos: Sequence[str],
) -> dict[str, Any]:
    key = (target, run_id, baseline, candidate)
    summary, counts = _summary(key, baseline, candidate, versions, latency, ok, slos)
    judged = run_verdict(summary, list(slos) or None)
    checks = judged["checks"]
    thin = None
    for role, label in (("baseline", baseline), ("candidate", candidate)):
        if counts[role] < MIN_SAMPLES:
            thin = thin or (
                f"{role} {label} has {counts[role]} successful samples, needs {MIN_SAMPLES}"
            )
    result = judged["result"]
    verdict = "pending" if thin or result == "inconclusive" else result
    comparison = summary["comparison"]
    base, cand = summary["versions"][baseline], summary["versions"][candidate]
    body = _empty_body(target, run_id, 0.0)
    body.update(
        verdict=verdict,
        reason=_reason(verdict, checks, thin),
        baseline=baseline,
        candidate=candidate,
        samples=counts,
        requests={"baseline": base["requests"], "candidate": cand["requests"]},
        candidate_error_rate=cand["error_rate"],
        error_rate_delta=comparison["error_rate_delta"],
        p50_delta_ms=comparison["p50_delta_ms"],
        p99_delta_ms=comparison["p99_delta_ms"],
        latency_p_value=comparison["latency_p_value"],
        error_p_value=comparison["error_p_value"],
        judgement=comparison["judgement"],
        latency_test=comparison["latency_test"],
        error_test=comparison["error_test"],
        checks=checks,
    )
    return body
