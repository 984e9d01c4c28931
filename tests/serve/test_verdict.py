"""The verdict body from raw samples: pending rules, pass/fail, and the report's own numbers."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from probes.serve import verdict as V
from probes.serve.verdict import MIN_SAMPLES, no_rollout_body, verdict_body
from reports import build_summary

CONTRACT_KEYS = {
    "verdict",
    "reason",
    "target",
    "run_id",
    "baseline",
    "candidate",
    "samples",
    "candidate_error_rate",
    "error_rate_delta",
    "p50_delta_ms",
    "p99_delta_ms",
    "latency_p_value",
    "checks",
    "updated_at",
}


def samples(
    n_base: int,
    n_cand: int,
    *,
    cand_error: float = 0.0,
    cand_slower_ms: float = 0.0,
    seed: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Baseline then candidate samples: version labels, latency (ms) and ok flags."""
    rng = np.random.default_rng(seed)
    versions = np.array(["v1"] * n_base + ["v2"] * n_cand, dtype=object)
    latency = rng.lognormal(3.0, 0.3, n_base + n_cand)
    latency[n_base:] += cand_slower_ms
    ok = np.ones(n_base + n_cand, dtype=bool)
    ok[n_base:] = rng.random(n_cand) >= cand_error
    return versions, latency, ok


def body(versions, latency, ok, slos=(), **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "target": "chat",
        "run_id": "chat-rollout-1",
        "baseline": "v1",
        "candidate": "v2",
        "slos": list(slos),
        "updated_at": 1_800_000_000.0,
    }
    args.update(kw)
    return verdict_body(versions=versions, latency_ms=latency, ok=ok, **args)


def test_no_rollout_is_pending_with_the_full_body() -> None:
    b = no_rollout_body("chat", 1_800_000_000.0)
    assert set(b) >= CONTRACT_KEYS
    assert (b["verdict"], b["reason"], b["target"]) == ("pending", "no rollout known", "chat")
    assert b["updated_at"] == "2027-01-15T08:00:00.000Z"
    v, lat, ok = samples(100, 100)
    b = body(v, lat, ok, baseline=None, candidate=None)
    assert b["verdict"] == "pending" and b["reason"] == "no rollout known"


def test_pending_until_both_sides_have_min_successful_samples() -> None:
    v, lat, ok = samples(500, MIN_SAMPLES - 1)
    b = body(v, lat, ok)
    assert b["verdict"] == "pending"
    assert b["samples"] == {"baseline": 500, "candidate": MIN_SAMPLES - 1}
    assert "candidate v2 has 49 successful samples, needs 50" in b["reason"]
    v, lat, ok = samples(MIN_SAMPLES, MIN_SAMPLES)
    b = body(v, lat, ok)  # enough for the checks, not for the guardrails' bounds
    assert (b["verdict"], b["decision"]) == ("pending", "pending")
    assert b["reason"].startswith("not decided yet: guardrails open: latency_p50_ratio")
    # errors do not count as samples, but the error guardrail counts requests: a candidate
    # answering half its 80 requests with errors fails without waiting for 50 successes
    v, lat, ok = samples(500, 80, cand_error=0.5)
    b = body(v, lat, ok)
    assert b["samples"]["candidate"] < MIN_SAMPLES and b["verdict"] == "fail"
    assert b["reason"].startswith("failed: error_rate_delta ")


def test_pass_on_a_healthy_candidate() -> None:
    v, lat, ok = samples(4000, 4000)  # 3,000 a side: the p99 ratio's bounds still too wide
    b = body(v, lat, ok)
    assert set(b) >= CONTRACT_KEYS | {"decision", "decided_at", "guardrails"}
    assert b["verdict"] == "pass", b["reason"]
    assert b["reason"].startswith("all 2 checks passed; latency_p50_ratio ")
    assert [c["name"] for c in b["checks"]] == ["error_rate", "comparison.sequential"]
    assert b["candidate_error_rate"] == 0.0 and b["judgement"] in ("same", "better")
    assert [(g["metric"], g["state"]) for g in b["guardrails"]] == [
        ("latency_p50_ratio", "within"),
        ("latency_p99_ratio", "within"),
        ("error_rate_delta", "within"),
    ]
    # without send times the samples count as one a second from the start
    assert b["decision"] == "pass" and b["decided_at"].startswith("1970-01-01T")


def test_fail_on_a_bad_candidate_names_the_check() -> None:
    v, lat, ok = samples(2000, 2000, cand_error=0.2)  # the simulator's bad-candidate
    b = body(v, lat, ok)
    assert b["verdict"] == "fail"
    assert b["reason"].startswith("failed: ")
    assert "error_rate=" in b["reason"]
    assert "comparison.sequential.error_rate_delta=fail" in b["reason"]
    assert b["reason"].startswith("failed: error_rate_delta 0.")  # the deciding guardrail first
    assert b["candidate_error_rate"] == pytest.approx(0.2, abs=0.03)
    assert b["error_rate_delta"] == pytest.approx(0.2, abs=0.03)
    assert "\n" not in b["reason"]


def test_a_ttft_only_regression_fails_by_the_ttft_guardrail() -> None:
    """Streamed answers: same total latency, the candidate's first token 3x later. The
    endpoint's decision fails by ``ttft_p50_ratio`` and names it; without TTFT it would not."""
    v, lat, ok = samples(2000, 2000, seed=4)
    rng = np.random.default_rng(5)
    ttft = rng.lognormal(3.0, 0.2, v.size)
    ttft[2000:] *= 3.0
    plain = body(v, lat, ok, run_id="r-plain")
    assert plain["decision"] != "fail"
    b = body(v, lat, ok, ttft_ms=ttft, run_id="r-ttft")
    assert (b["verdict"], b["decision"]) == ("fail", "fail")
    guardrails = {g["metric"]: g for g in b["guardrails"]}
    assert guardrails["ttft_p50_ratio"]["state"] == "beyond"
    assert guardrails["ttft_p50_ratio"]["lower"] > 1.1
    assert "ttft" in b["reason"]
    # rows that did not stream (NaN) leave the guardrail out, as for a plain target
    none = body(v, lat, ok, ttft_ms=np.full(v.size, np.nan), run_id="r-nan")
    assert "ttft_p50_ratio" not in {g["metric"] for g in none["guardrails"]}


def test_a_rollback_from_a_failing_version_is_judged_by_the_candidates_errors() -> None:
    """v2 answered 20 % errors, then the rollback to v1 answers none: the run-wide default
    would fail v1 by v2's errors; a rollout capture's default check is the candidate's."""
    from probes.serve.segments import ROLLOUT_DEFAULT_SLOS

    rng = np.random.default_rng(7)
    versions = np.array(["v2"] * 1500 + ["v1"] * 1500, dtype=object)
    latency = rng.lognormal(3.0, 0.3, versions.size)
    ok = np.ones(versions.size, dtype=bool)
    ok[:1500] = rng.random(1500) >= 0.2
    args = {"baseline": "v2", "candidate": "v1"}
    run_wide = body(versions, latency, ok, slos=["error_rate<0.01"], run_id="r-wide", **args)
    assert run_wide["verdict"] == "fail"  # the old default: v2's errors fail v1
    judged = body(versions, latency, ok, slos=ROLLOUT_DEFAULT_SLOS, run_id="r-cand", **args)
    assert judged["verdict"] != "fail" and judged["decision"] != "fail", judged["reason"]
    (check,) = [c for c in judged["checks"] if c["name"].endswith("error_rate")]
    assert check["passed"] and check["value"] == 0


def test_no_candidate_request_after_the_switch_fails_with_no_evidence() -> None:
    v, lat, ok = samples(400, 0)
    ts = 1000.0 + np.arange(v.size) * 0.5  # 200 s of baseline answers only
    b = body(v, lat, ok, ts=ts, started_ts=1000.0, run_id="r-no-evidence")
    assert (b["verdict"], b["decision"]) == ("pending", "pending")  # no switch reported
    b = body(v, lat, ok, ts=ts, started_ts=1000.0, switched_ts=1100.0, run_id="r-switched")
    assert (b["verdict"], b["decision"]) == ("fail", "fail")
    assert b["reason"].startswith(
        "failed: no evidence: no candidate request after the platform's switch"
    )
    # the 20th request sent a minute (the grace) after the switch: 1170 s, at 2 req/s
    assert b["decided_at"] == "1970-01-01T00:19:30.000Z"


def test_slos_are_the_reports_slos() -> None:
    v, lat, ok = samples(2000, 2000, cand_slower_ms=200.0)
    b = body(v, lat, ok, slos=["candidate.p99_ms<1.2*baseline.p99_ms"])
    assert b["verdict"] == "fail" and "candidate.p99_ms=" in b["reason"]
    b = body(v, lat, ok, slos=["error_rate<0.01", "p99_ms<10000"])
    assert b["verdict"] == "fail"  # the comparison check stays beside explicit SLOs ...
    assert [c["name"] for c in b["checks"]] == [
        "error_rate",
        "p99_ms",
        "comparison.sequential.latency_p99_ratio",  # +200 ms moves the tail beyond 1.25
    ]
    b = body(v, lat, ok, slos=["error_rate<0.01", "p99_ms<10000", "comparison=off"])
    assert b["verdict"] == "pass"  # ... unless turned off: then the checks alone decide
    assert [c["name"] for c in b["checks"]] == ["error_rate", "p99_ms"]
    b = body(v, lat, ok, slos=["cutover_s<5", "comparison=off"])  # not known live: pending
    assert b["verdict"] == "pending" and b["reason"].startswith("not decided yet: cutover_s")


def frame_of(versions: np.ndarray, latency: np.ndarray, ok: np.ndarray) -> pd.DataFrame:
    n = versions.size
    ts = 1000.0 + np.arange(n) * 0.01
    return pd.DataFrame(
        {
            "ts": ts,
            "intended_ts": ts,
            "latency_ms": latency,
            "source": "probe",
            "worker": "w",
            "status": np.where(ok, 200, 500).astype(np.int16),
            "error": pd.Series(np.where(ok, None, "http_5xx"), dtype=object),
            "version": versions,
            "tag_source": "header",
        }
    )


@pytest.mark.parametrize("case", [{}, {"cand_error": 0.05}, {"cand_slower_ms": 15.0}])
def test_numbers_equal_the_reports_for_the_same_samples(case: dict[str, float]) -> None:
    v, lat, ok = samples(1500, 1500, **case)
    manifest = {"run_id": "r", "kind": "rollout", "started_ts": 1000.0, "ended_ts": 1030.0}
    summary = build_summary(frame_of(v, lat, ok), [], manifest, slos=None, bucket_s=1.0)
    b = body(v, lat, ok, ts=1000.0 + np.arange(v.size) * 0.01, started_ts=1000.0)
    comparison = summary["comparison"]
    for key in ("error_rate_delta", "p50_delta_ms", "p99_delta_ms", "latency_p_value", "judgement"):
        assert b[key] == comparison[key], key
    assert b["candidate_error_rate"] == summary["versions"]["v2"]["error_rate"]
    strip = [{k: c[k] for k in ("name", "value", "op", "threshold", "passed")} for c in b["checks"]]
    want = [
        {k: c[k] for k in ("name", "value", "op", "threshold", "passed")}
        for c in summary["verdict"]["checks"]
    ]
    assert strip == want
    sequential = summary["comparison"]["sequential"]
    assert (b["decision"], b["guardrails"]) == (sequential["decision"], sequential["guardrails"])


def test_growing_samples_give_the_same_body_as_a_fresh_computation() -> None:
    v, lat, ok = samples(3000, 3000, cand_error=0.02)
    order = np.random.default_rng(5).permutation(v.size)  # interleaved versions
    v, lat, ok = v[order], lat[order], ok[order]
    for n in (500, 1200, 1201, 4000, 6000):
        live = body(v[:n], lat[:n], ok[:n])
        V._memo.clear()
        V._prefixes.clear()
        fresh = body(v[:n], lat[:n], ok[:n])
        assert live == fresh, n
    # a sliding window (same length, other samples) is never answered from the cache
    a = body(v[:3000], lat[:3000], ok[:3000])
    b = body(v[3000:], lat[3000:], ok[3000:])
    V._memo.clear()
    V._prefixes.clear()
    assert b == body(v[3000:], lat[3000:], ok[3000:]) and a["samples"] != b["samples"]


def test_a_returned_body_is_the_callers_to_change() -> None:
    v, lat, ok = samples(200, 200)
    first = body(v, lat, ok)
    first["checks"].clear()
    first["samples"]["baseline"] = -1
    again = body(v, lat, ok, updated_at=1_800_000_060.0)
    assert again["checks"] and again["samples"]["baseline"] == 200
    assert again["updated_at"] == "2027-01-15T08:01:00.000Z"


def test_mismatched_arrays_are_refused() -> None:
    v, lat, ok = samples(10, 10)
    with pytest.raises(ValueError, match="one length"):
        body(v, lat[:5], ok)


def test_a_poll_sorts_only_the_samples_since_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    """100k samples, polled as they grow: what keeps a poll cheap is that the decider's sorted
    values are extended by the new samples, not rebuilt (the sorts are the decision's only
    O(n log n) work). Counted, not timed: the bench measures the CPU per poll (BENCHMARKS.md)."""
    sorted_sizes: list[int] = []
    real_sort = np.sort

    def counting_sort(values: Any, *args: Any, **kwargs: Any) -> Any:
        if sys._getframe(1).f_globals.get("__name__") == "reports.sequential":
            sorted_sizes.append(int(np.size(values)))
        return real_sort(values, *args, **kwargs)

    monkeypatch.setattr(np, "sort", counting_sort)
    v, lat, ok = samples(50_000, 50_005, cand_error=0.01)
    n = v.size - 5
    body(v[:n], lat[:n], ok[:n])
    assert sum(sorted_sizes) >= 0.9 * n  # the first poll sorts every successful sample once
    sorted_sizes.clear()
    for i in range(1, 6):  # a few new samples each time: no memo hit
        body(v[: n + i], lat[: n + i], ok[: n + i])
    assert 0 < sum(sorted_sizes) <= 5
