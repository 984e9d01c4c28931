"""The verdict endpoint's body (CONTRACT.md ``GET /api/v1/verdict``), from a rollout's raw samples.

The numbers are the report's: the comparison block comes from ``reports.stats.compare`` and the
checks from ``reports.verdict.verdict``, run on a summary-shaped dict built here from the raw
arrays, so the endpoint and the run's ``summary.json`` judge a rollout by the same rules.

Fields beyond the contract's: ``requests`` (all requests per side; ``samples`` counts the
successful ones, which is what the minimum applies to), ``error_p_value``, ``judgement``,
``latency_test``, ``error_test`` (as in summary.json's comparison) and ``min_samples``.

The decision (CONTRACT.md 2026-12-07, "The comparison decides sequentially"): the body adds
``decision``, ``decided_at`` (ISO time), ``samples_at_decision``, ``guardrails`` and the whole
``sequential`` block, from ``reports.sequential`` on the rollout's samples so far in arrival
order (a sample's clock is the newest send time seen so far). A decider is kept per rollout, so
a poll takes only the looks since the last one and the first decision never changes.
``verdict`` is ``fail`` if the decision or any SLO check fails (a candidate answering only
errors fails on its error guardrail without waiting for ``MIN_SAMPLES`` successes), ``pass`` if
the decision is ``pass`` and every check passes, else ``pending``: no rollout known, either
version with fewer than ``MIN_SAMPLES`` successful samples, a check not decidable yet, or a
guardrail still open. ``comparison=off`` in the SLOs: the checks alone decide. Argo Rollouts
turns any non-2xx into an Error measurement and aborts after a few, so "not yet" is a 200 with
``pending``.

Speed: the endpoint answers on the event loop for every poll, so the work is bounded. Latency
blocks are exact over every successful sample; the Mann-Whitney test runs on a deterministic
stride subsample of at most ``MWU_MAX_PER_SIDE`` latencies per side (``reports.stats``' own
subsampling, with a lower bound; ``latency_test`` says so); run-wide and other-version blocks
are computed only when an SLO refers to them; the per-version masks of a rollout whose samples
only grew since the last call are extended, not recomputed (comparing 100k Python strings is
the largest single cost); and a body is memoised on a fingerprint of its inputs, so polls
between two new samples cost nothing. Measured (``bench/serve_verdict.py``, 100 live rollouts
of 1k to 100k samples): 7 ms CPU per poll at p50, 17 ms at p99, about 10 ms at 100k samples,
the largest parts being the exact percentiles, Fisher's test and the Mann-Whitney test. With the
sequential decision (issue 26), measured at 100k samples polled as they grow on a loaded 2-core
machine: 10.6 ms per poll against 8.2 ms before in the same run, Fisher's test being capped at
``FISHER_MAX_N`` requests (the z-test beyond) to pay for the guardrails' order statistics.
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
from reports import sequential as seq
from reports.stats import Side, compare, latency_block, rate, stride_subsample
from reports.verdict import LATENCY_METRICS, RUN_METRICS, checks_of, parse_slo
from reports.verdict import verdict as run_verdict

__all__ = [
    "FISHER_MAX_N",
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
#: Requests up to which the endpoint's error p-value is Fisher's exact test (the report's cap
#: is 200k); beyond, the z-test, which agrees at such sizes: Fisher's pmf over 100k requests
#: was ~4 ms of a poll, which the sequential decision now spends.
FISHER_MAX_N = 20_000
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
        "decision": "pending",
        "decided_at": None,
        "samples_at_decision": None,
        "guardrails": [],
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
) -> tuple[dict[str, Any], dict[str, int], np.ndarray]:
    """A summary-shaped dict with what ``reports.verdict`` reads, the successful counts and
    each sample's version code (0 baseline, 1 candidate, 2 other)."""
    n = int(ok.size)
    errors = n - int(np.count_nonzero(ok))
    run_latency, labels = _referenced_scopes(slos)
    blocks: dict[str, dict[str, Any]] = {}
    lats: dict[str, np.ndarray] = {}
    masks = _masks(key, versions, latency, (baseline, candidate))
    codes = np.where(masks[0], 0, np.where(masks[1], 1, 2)).astype(np.int8)
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
    comparison = compare(
        baseline, candidate, sides[0], sides[1], sub_b, sub_c, fisher_max_n=FISHER_MAX_N
    )
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
    return summary, counts, codes


def _reason(
    verdict: str,
    checks: Sequence[dict[str, Any]],
    thin: str | None,
    sequential: dict[str, Any] | None = None,
) -> str:
    """One line: why the verdict is what it is (the deciding guardrail's numbers first)."""
    why = _guardrail_text(sequential) if sequential is not None else ""
    if verdict == "fail":
        failed = [c for c in checks if c.get("passed") is False]
        return "failed: " + "; ".join([why] * bool(why) + [_check_text(c) for c in failed])
    if thin:
        return thin
    if verdict == "pending":
        open_ = [c for c in checks if c.get("passed") is None]
        parts = [_check_text(c) for c in open_]
        if sequential is not None and sequential["decision"] == "pending":
            parts.append("guardrails open: " + ", ".join(
                g["metric"] for g in sequential["guardrails"] if g["state"] != "within"
            ))  # fmt: skip
        return "not decided yet: " + "; ".join(parts)
    return f"all {len(checks)} checks passed" + (f"; {why}" if why else "")


def _guardrail_text(sequential: dict[str, Any]) -> str:
    """``latency_p50_ratio 1.26 in [1.13, 1.48] beyond margin 1.1 (186 candidate samples)``
    for the guardrail that decided (every one of them for a pass); "" while pending."""
    if sequential["decision"] == "pending":
        return ""
    if sequential.get("reason"):
        return str(sequential["reason"])
    want = "beyond" if sequential["decision"] == "fail" else "within"
    samples = (sequential.get("samples_at_decision") or {}).get("candidate")
    parts = []
    for g in sequential["guardrails"]:
        at = g.get("at_decision") or {}
        if at.get("state") != want:
            continue
        text = (f"{g['metric']} {_fmt(at.get('estimate'))} in [{_fmt(at.get('lower'))}, "
                f"{_fmt(at.get('upper'))}]")  # fmt: skip
        if g.get("margin_ms"):  # a latency guardrail: its difference, and the floor
            text += (f", {_fmt(at.get('delta_ms'))} ms in [{_fmt(at.get('delta_lower_ms'), '-')}, "
                     f"{_fmt(at.get('delta_upper_ms'))}]")  # fmt: skip
        floor = f" or {g['margin_ms']:g} ms" if g.get("margin_ms") else ""
        parts.append(f"{text} {want} margin {g['margin']:g}{floor}")
        if want == "beyond":
            break
    return "; ".join(parts) + f" ({samples} candidate samples)"


def _fmt(value: Any, sign: str = "") -> str:
    """4 significant digits; a bound still open (None) is ``inf`` (``-inf`` for a lower one)."""
    return f"{sign}inf" if value is None else f"{value:.4g}"


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
    ts: np.ndarray | None = None,
    started_ts: float | None = None,
    switched_ts: float | None = None,
    ttft_ms: np.ndarray | None = None,
) -> dict[str, Any]:
    """The CONTRACT verdict body of a rollout from its raw samples (arrays of equal length:
    version label, latency in ms, whether the request succeeded and, in ``ts``, its send
    time in epoch seconds, sorted; without ``ts`` the samples are taken one per second from
    ``started_ts``; ``switched_ts``: when the platform reported the switch, epoch seconds, for
    the no-evidence rule; ``ttft_ms``: each sample's time to first token, NaN where the
    answer did not stream, for the ``ttft_p50_ratio`` guardrail); see the module doc."""
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
    times = _times(ts, versions.size, started_ts)
    ttft = None if ttft_ms is None else np.asarray(ttft_ms, dtype=np.float64)
    if ttft is not None and (ttft.size != versions.size or np.isnan(ttft).all()):
        ttft = None
    t0 = float(started_ts) if started_ts is not None else (float(times[0]) if times.size else 0.0)
    key = _fingerprint(
        target, run_id, baseline, candidate, tuple(slos), t0, switched_ts,
        None if ttft is None else float(np.nansum(ttft)),
        versions=versions, latency=latency, ok=ok_arr,
    )  # fmt: skip
    with _memo_lock:
        cached = _memo.get(key)
        if cached is not None:
            _memo.move_to_end(key)
            return {**copy.deepcopy(cached), "updated_at": iso(updated_at)}
    switched = None if switched_ts is None else float(switched_ts) - t0
    body = _compute(
        target, run_id, baseline, candidate, versions, latency, ok_arr, slos, (times, t0, switched),
        ttft,
    )  # fmt: skip
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
    clock: tuple[np.ndarray, float, float | None],
    ttft: np.ndarray | None = None,
) -> dict[str, Any]:
    key = (target, run_id, baseline, candidate)
    summary, counts, codes = _summary(key, baseline, candidate, versions, latency, ok, slos)
    times, t0, switched = clock
    settings = seq.settings_from_slos(slos)
    # arrival order is the decision's order: a sample's clock is the newest send time seen
    # so far (send times of concurrent requests arrive slightly out of order)
    rel = np.maximum.accumulate(times - t0) if times.size else times
    sequential = _sequential(key, settings, rel, codes, latency, ok, switched, ttft)
    summary["comparison"]["sequential"] = sequential
    judged = run_verdict(summary, list(slos) or None)
    checks = judged["checks"]
    thin = None
    for role, label in (("baseline", baseline), ("candidate", candidate)):
        if counts[role] < MIN_SAMPLES:
            thin = thin or (
                f"{role} {label} has {counts[role]} successful samples, needs {MIN_SAMPLES}"
            )
    verdict = _combine(judged["result"], sequential["decision"], settings.enabled, thin)
    comparison = summary["comparison"]
    base, cand = summary["versions"][baseline], summary["versions"][candidate]
    body = _empty_body(target, run_id, 0.0)
    decided = sequential["decided_at_s"]
    body.update(
        verdict=verdict,
        reason=_reason(verdict, checks, thin, sequential if settings.enabled else None),
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
        decision=sequential["decision"],
        decided_at=None if decided is None else iso(t0 + decided),
        samples_at_decision=sequential["samples_at_decision"],
        guardrails=sequential["guardrails"],
        sequential=sequential,
    )
    return body


def _combine(result: str, decision: str, comparison_on: bool, thin: str | None) -> str:
    """CONTRACT: ``fail`` if the decision or any check fails, ``pass`` if the decision is
    ``pass`` and every check passes, else ``pending`` (thin evidence never passes). With
    ``comparison=off`` the checks alone decide."""
    if result == "fail" and (thin is None or decision == "fail"):
        return "fail"
    if comparison_on and decision == "fail":
        return "fail"
    if thin or result != "pass" or (comparison_on and decision != "pass"):
        return "pending"
    return "pass"


def _times(ts: np.ndarray | None, n: int, started_ts: float | None) -> np.ndarray:
    if ts is not None:
        times = np.asarray(ts, dtype=np.float64)
        if times.size != n:
            raise ValueError(f"ts must have the samples' length {n}, not {times.size}")
        return times
    return (started_ts or 0.0) + np.arange(n, dtype=np.float64)


#: Rollouts whose sequential decider is kept between polls: its looks' history (up to
#: ``seq.HISTORY_MAX``) and each version's sorted values (8 bytes a sample: 0.8 MB at 100k).
_DECIDERS_SIZE = 128
_deciders: OrderedDict[tuple[Any, ...], tuple[seq.Decider, tuple[float, ...]]] = OrderedDict()


def _prefix_print(
    m: int, rel: np.ndarray, codes: np.ndarray, latency: np.ndarray, ok: np.ndarray
) -> tuple[float, ...]:
    """Cheap and, for samples that only grow, distinguishing: of the first ``m`` samples."""
    return (
        m,
        float(np.nansum(latency[:m])),
        float(rel[m - 1]) if m else 0.0,
        int(np.count_nonzero(ok[:m])),
        int(np.count_nonzero(codes[:m] == 1)),
    )


def _sequential(
    key: tuple[Any, ...],
    settings: seq.SeqSettings,
    rel: np.ndarray,
    codes: np.ndarray,
    latency: np.ndarray,
    ok: np.ndarray,
    switched_at_s: float | None = None,
    ttft: np.ndarray | None = None,
) -> dict[str, Any]:
    """The rollout's ``comparison.sequential`` so far: its decider (kept per rollout, so a
    poll takes only the looks since the last one and the first decision is never lost)
    advanced to the newest sample. Samples that shrank (another rollout under the same key)
    start a new decider."""
    dkey = (*key, settings.alpha, tuple(sorted(settings.margins.items())),
             tuple(sorted(settings.margins_ms.items())), settings.warmup_s, settings.look_s,
            settings.bucket_s)  # fmt: skip
    with _memo_lock:
        found = _deciders.get(dkey)
    decider = seq.Decider(settings)
    if found is not None and 0 < found[1][0] <= rel.size:
        m = int(found[1][0])  # the same rollout grown: the samples it saw are still its first ones
        if _prefix_print(m, rel, codes, latency, ok) == found[1]:
            decider = found[0]
    end = float(rel[-1]) if rel.size else 0.0
    block = seq.evaluate(
        decider, rel, codes, latency, ok, ttft=ttft, end=end, switched_at_s=switched_at_s
    )
    seen = _prefix_print(int(rel.size), rel, codes, latency, ok)
    with _memo_lock:
        _deciders[dkey] = (decider, seen)
        _deciders.move_to_end(dkey)
        while len(_deciders) > _DECIDERS_SIZE:
            _deciders.popitem(last=False)
    return block
