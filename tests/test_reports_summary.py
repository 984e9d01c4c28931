"""build_summary on synthetic frames with known answers (no I/O)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from reports import build_summary

T0 = 1_000.0
CONTRACT_KEYS = {
    "schema",
    "run_id",
    "kind",
    "target",
    "started_at",
    "ended_at",
    "duration_s",
    "requests",
    "ok",
    "errors",
    "error_rate",
    "availability",
    "throughput_rps",
    "latency_ms",
    "versions",
    "rollout",
    "phases",
    "comparison",
    "verdict",
    "capacity",
}
ROLLOUT_KEYS = {
    "detected",
    "from_version",
    "to_version",
    "outcome",
    "requested_at_s",
    "first_candidate_s",
    "last_baseline_s",
    "half_switch_s",
    "cutover_s",
    "mixed_window_s",
    "flips",
    "errors_during_switch",
    "error_rate_during_switch",
    "longest_gap_s",
    "platform",
}
LATENCY_KEYS = {"p50", "p90", "p95", "p99", "p999", "max", "mean"}


def frame(ts, version, *, latency=5.0, error=None, worker="w1", source="probe", intended=None):
    """A sample frame in read_samples' dtypes (categoricals for strings)."""
    ts = np.asarray(ts, dtype=float)
    n = ts.size
    error = [None] * n if error is None else list(error)
    return pd.DataFrame(
        {
            "ts": ts,
            "intended_ts": ts if intended is None else np.asarray(intended, dtype=float),
            "latency_ms": np.broadcast_to(np.asarray(latency, dtype=float), n).copy(),
            "source": pd.Categorical(np.broadcast_to(np.asarray(source, dtype=object), n)),
            "worker": pd.Categorical(np.broadcast_to(np.asarray(worker, dtype=object), n)),
            "status": np.array(
                [200 if e is None else (0 if e == "connect" else 500) for e in error],
                dtype=np.int16,
            ),
            "error": pd.Categorical(error),
            "version": pd.Categorical(np.broadcast_to(np.asarray(version, dtype=object), n)),
            "tag_source": pd.Categorical(["header"] * n),
        }
    )


def manifest(duration=20.0, **extra):
    return {"run_id": "r", "kind": "observe", "started_ts": T0, "ended_ts": T0 + duration, **extra}


def summarize(df, events=(), slos=None, bucket_s=1.0, **kw):
    summary = build_summary(df, list(events), manifest(**kw), slos=slos, bucket_s=bucket_s)
    json.dumps(summary, allow_nan=False)  # strict JSON: no NaN or Infinity anywhere
    return summary


def switch_frame(switch=10.5, rate=50, duration=20.0, **kw):
    ts = T0 + np.arange(int(rate * duration)) / rate
    return frame(ts, np.where(ts < T0 + switch, "v1", "v2"), **kw)


def test_switch_at_a_known_instant():
    s = summarize(switch_frame())
    assert set(s) >= CONTRACT_KEYS and s["schema"] == "proton-probe/summary/1"
    assert s["versions"]["v1"]["role"] == "baseline"
    assert s["versions"]["v2"]["role"] == "candidate"
    r = s["rollout"]
    assert set(r) >= ROLLOUT_KEYS
    assert abs(r["first_candidate_s"] - 10.5) <= 0.02  # within one probe interval (50/s)
    assert r["last_baseline_s"] == pytest.approx(10.48)
    assert r["cutover_s"] == 0.0 and r["flips"] == 0 and r["half_switch_s"] == pytest.approx(10.5)
    assert r["mixed_window_s"] == 1.0 and r["outcome"] == "inferred" and r["detected"] is True
    assert r["platform"] is None and r["errors_during_switch"] == 0
    assert r["switch_window_s"] == pytest.approx([9.48, 11.5])
    names = [p["name"] for p in s["phases"]]
    assert names == ["before", "mixed", "after"]
    before, mixed, after = s["phases"]
    assert before["share"] == {"v1": 1.0} and after["share"] == {"v2": 1.0}
    assert mixed["requests"] == 0 and mixed["start_s"] == mixed["end_s"] == pytest.approx(10.5)
    assert before["requests"] + after["requests"] == s["requests"] == 1000
    assert s["duration_s"] == 20.0 and s["throughput_rps"] == 50.0
    assert s["comparison"]["judgement"] == "same"
    assert s["verdict"]["result"] == "pass" and len(s["verdict"]["checks"]) == 2


def test_ninety_ten_split():
    ts = T0 + np.arange(2000) / 100
    version = np.where(np.arange(2000) % 10 == 9, "v2", "v1")
    s = summarize(frame(ts, version))
    assert s["versions"]["v1"]["share"] == pytest.approx(0.9, abs=0.03)
    assert s["versions"]["v2"]["share"] == pytest.approx(0.1, abs=0.03)
    r = s["rollout"]
    assert r["half_switch_s"] is None
    assert r["mixed_window_s"] == 20.0  # both answered in every bucket
    # one caller alternating between versions: every return to v1 after v2 is a flip
    assert r["flips"] == 199
    assert s["phases"][1]["share"] == pytest.approx({"v1": 0.9, "v2": 0.1}, abs=0.01)


def test_ten_percent_errors_on_v2():
    ts = T0 + np.arange(2000) / 100
    version = np.where(np.arange(2000) % 2 == 1, "v2", "v1")
    error = np.where((version == "v2") & (np.arange(2000) % 20 == 1), "http_5xx", None)
    df = frame(ts, version, error=error)
    s = summarize(df)
    assert s["versions"]["v2"]["error_rate"] == pytest.approx(0.1)
    assert s["versions"]["v1"]["error_rate"] == 0.0
    assert s["errors"] == 100 and s["error_rate"] == pytest.approx(0.05)
    assert s["status_counts"] == {"200": 1900, "500": 100}
    assert s["error_classes"] == {"http_5xx": 100} and s["sources"] == {"probe": 2000}
    assert s["comparison"]["judgement"] == "worse"
    assert s["comparison"]["error_p_value"] < 1e-10
    assert s["verdict"]["result"] == "fail"
    sequential = s["comparison"]["sequential"]
    assert sequential["decision"] == "fail"
    errors = sequential["guardrails"][2]
    assert errors["metric"] == "error_rate_delta" and errors["at_decision"]["state"] == "beyond"
    assert errors["estimate"] == pytest.approx(0.1, abs=1e-6)
    failed = summarize(df, slos=["error_rate<0.01"])["verdict"]
    assert failed["result"] == "fail"
    assert [c["name"] for c in failed["checks"]] == [
        "error_rate",
        "comparison.sequential.error_rate_delta",
    ]
    # an explicit SLO keeps the comparison check: relaxed error SLOs still fail on it ...
    relaxed = ["error_rate<0.2", "candidate.error_rate<=0.1"]
    assert summarize(df, slos=relaxed)["verdict"]["result"] == "fail"
    # ... unless the comparison is turned off, or its margin allows 10 points more errors
    assert summarize(df, slos=[*relaxed, "comparison=off"])["verdict"]["result"] == "pass"
    wide = summarize(df, slos=[*relaxed, "comparison.error_rate_delta=0.5"])["verdict"]
    assert wide["checks"][-1]["value"] != "fail"


def test_slower_candidate_is_worse_and_relative_slo_fails():
    rng = np.random.default_rng(3)
    ts = T0 + np.arange(2000) / 100
    version = np.where(ts < T0 + 10, "v1", "v2")
    latency = np.where(version == "v1", 20.0, 60.0) + rng.uniform(0, 5, 2000)
    s = summarize(
        frame(ts, version, latency=latency), slos=["candidate.p99_ms<1.2*baseline.p99_ms"]
    )
    assert s["comparison"]["judgement"] == "worse"
    assert s["comparison"]["p50_delta_ms"] == pytest.approx(40.0, abs=1.0)
    check = s["verdict"]["checks"][0]
    assert check["passed"] is False and check["threshold"] == pytest.approx(1.2 * 24.95, abs=0.1)


def test_control_plane_roles_platform_and_outcome():
    # the probe only saw the candidate first (it started after the switch): the control
    # plane still names app:1 baseline
    ts = T0 + np.arange(100) / 10
    version = np.where(ts < T0 + 3, "app:2", "app:1")
    events = [
        {
            "ts": T0 - 1,
            "kind": "proton",
            "status": "running",
            "role": "active",
            "proton_id": "p1",
            "detail": {"version": "app:1"},
        },
        {
            "ts": T0 + 1,
            "kind": "marker",
            "status": "replacement requested",
            "detail": {"version": "app:2"},
        },
        {
            "ts": T0 + 2,
            "kind": "replacement",
            "status": "submitted",
            "replacement_id": "r9",
            "detail": {"switched_ts": None},
        },
        {
            "ts": T0 + 6,
            "kind": "replacement",
            "status": "errored",
            "replacement_id": "r9",
            "detail": {"switched_ts": T0 + 4.0},
        },
    ]
    s = summarize(frame(ts, version), events, duration=10.0)
    assert s["roles_from"] == "control_plane"
    assert s["versions"]["app:1"]["role"] == "baseline"
    assert s["versions"]["app:2"]["role"] == "candidate"
    r = s["rollout"]
    assert (r["from_version"], r["to_version"], r["outcome"]) == ("app:1", "app:2", "errored")
    assert r["requested_at_s"] == 1.0
    assert r["platform"]["replacement_id"] == "r9"
    assert r["platform"]["switched_at_s"] == 4.0
    assert r["platform"]["statuses"] == [
        {"status": "submitted", "at_s": 2.0},
        {"status": "errored", "at_s": 6.0},
    ]


def test_replacement_without_candidate_answers():
    ts = T0 + np.arange(50) / 10
    events = [
        {"ts": T0 + 1, "kind": "replacement", "status": "submitted", "replacement_id": "r1"},
        {"ts": T0 + 3, "kind": "replacement", "status": "canceled", "replacement_id": "r1"},
    ]
    s = summarize(frame(ts, "v1"), events, duration=5.0)
    r = s["rollout"]
    assert r["detected"] is False and r["outcome"] == "canceled"
    assert r["first_candidate_s"] is None and r["flips"] is None
    assert r["errors_during_switch"] == 0 and r["switch_window_s"] == [1.0, 3.0]
    assert [p["name"] for p in s["phases"]] == ["before"] and s["comparison"] is None


def test_one_version_no_events_has_no_rollout():
    s = summarize(frame(T0 + np.arange(100) / 10, "v1"), duration=10.0)
    assert s["rollout"] is None and s["comparison"] is None
    assert len(s["phases"]) == 1 and s["phases"][0]["share"] == {"v1": 1.0}
    assert s["verdict"]["result"] == "pass" and len(s["verdict"]["checks"]) == 1


def test_flips_are_counted_per_caller():
    # two callers; caller a goes v1 v2 v1 v2 (one flip), caller b v1 v2 v2 v2 (none)
    ts = T0 + np.arange(8, dtype=float)
    version = ["v1", "v1", "v2", "v2", "v1", "v2", "v2", "v2"]
    worker = ["a", "b", "a", "b", "a", "b", "a", "b"]
    s = summarize(frame(ts, version, worker=worker), duration=8.0)
    assert s["rollout"]["flips"] == 1
    assert s["rollout"]["cutover_s"] == 2.0  # last v1 at 4 s, first v2 at 2 s


def test_gap_errors_during_switch_and_unknown_role():
    ts = T0 + np.arange(200) / 10
    version = np.where(ts < T0 + 10, "v1", "v2").astype(object)
    error = np.where((ts >= T0 + 9.5) & (ts < T0 + 12.5), "connect", None)
    version[error == "connect"] = "unknown"
    version[5] = "unknown"
    s = summarize(frame(ts, version, error=error))
    assert s["versions"]["unknown"]["role"] == "unknown"
    assert s["versions"]["unknown"]["requests"] == 31
    r = s["rollout"]
    assert r["first_candidate_s"] == pytest.approx(12.5)
    assert r["last_baseline_s"] == pytest.approx(9.4)
    assert r["longest_gap_s"] == pytest.approx(3.1)  # 9.4 s + 5 ms -> 12.5 s + 5 ms
    assert s["longest_gap_s"] == r["longest_gap_s"]
    # window: 1 bucket before the last v1 answer to 1 bucket after the first v2 answer
    assert r["switch_window_s"] == pytest.approx([8.4, 13.5])
    assert r["errors_during_switch"] == 30
    assert r["error_rate_during_switch"] == pytest.approx(30 / 52)
    assert s["error_classes"] == {"connect": 30} and s["status_counts"]["0"] == 30
    assert s["versions"]["unknown"]["latency_ms"]["p50"] == 5.0  # the one successful unknown


def test_half_switch_and_mixed_window_of_a_gradual_rollout():
    # 100/s for 20 s; candidate share rises linearly from 0 at 5 s to 1 at 15 s
    n = 2000
    ts = T0 + np.arange(n) / 100
    rel = ts - T0
    share = np.clip((rel - 5) / 10, 0, 1)
    # deterministic: the k-th request in a bucket goes to v2 while k < share * 100
    cand = (np.arange(n) % 100) < np.floor(share * 100)
    s = summarize(frame(ts, np.where(cand, "v2", "v1")))
    r = s["rollout"]
    assert r["half_switch_s"] == pytest.approx(10.0, abs=0.6)
    assert r["mixed_window_s"] == pytest.approx(10.0, abs=1.0)
    assert r["flips"] > 0


def test_corrected_latency_for_the_probe_only():
    ts = T0 + np.arange(100) / 10
    df = frame(ts, "v1", latency=10.0, intended=ts - 0.005)
    s = summarize(df, duration=10.0)
    assert s["latency_ms"]["p50"] == 10.0
    assert s["latency_corrected_ms"]["p50"] == pytest.approx(15.0)
    locust = summarize(frame(ts, "v1", source="locust"), duration=10.0)
    assert locust["latency_corrected_ms"] is None


def test_empty_run():
    s = summarize(frame([], "v1"), duration=5.0)
    assert s["requests"] == 0 and s["error_rate"] is None and s["versions"] == {}
    assert s["rollout"] is None and s["verdict"]["result"] == "inconclusive"
    assert set(s["latency_ms"]) == LATENCY_KEYS


def test_unsorted_plain_object_frame_and_bucket_size():
    df = switch_frame()
    df = df.astype({"version": object, "error": object, "worker": object, "source": object})
    df = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    s = summarize(df, bucket_s=0.5)
    assert s["bucket_s"] == 0.5 and s["rollout"]["mixed_window_s"] == 0.0  # 10.5 is a boundary
    assert s["rollout"]["first_candidate_s"] == pytest.approx(10.5)
    with pytest.raises(ValueError, match="bucket_s"):
        summarize(df, bucket_s=0)


def test_unsent_probe_rows_are_not_the_targets_errors():
    df = switch_frame()
    sent = len(df)
    saturated = frame(T0 + np.arange(30) / 50 + 0.001, "unknown", error=["client_saturated"] * 30)
    s = summarize(pd.concat([df, saturated], ignore_index=True))
    assert s["requests"] == sent and s["errors"] == 0 and s["not_sent"] == 30
    assert "unknown" not in s["versions"] and s["verdict"]["result"] == "pass"


def test_the_report_says_why_the_sequential_decision_was_reached():
    ts = T0 + np.arange(2000) / 100
    version = np.where(np.arange(2000) % 2 == 1, "v2", "v1")
    error = np.where((version == "v2") & (np.arange(2000) % 20 == 1), "http_5xx", None)
    s = summarize(frame(ts, version, error=error))
    from reports.render import render_html, render_markdown, sequential_line

    q = s["comparison"]["sequential"]
    line = sequential_line(s)
    assert line is not None and line.startswith(
        f"Sequential decision: fail at {q['decided_at_s']:g} s"
    )
    n = q["samples_at_decision"]
    assert f"with {n['baseline']:,} baseline and {n['candidate']:,} candidate requests" in line
    md = render_markdown(s)
    assert f"**{line}**" in md
    errors = q["guardrails"][2]
    row = next(r for r in md.splitlines() if r.startswith("| error_rate_delta |"))
    assert (
        "| ≤ 0.005 |" in row and "| beyond |" in row and errors["at_decision"]["state"] == "beyond"
    )
    assert "judgement (fixed-horizon)" in md
    page = render_html(s, {})
    assert "<td>error_rate_delta</td>" in page and "Sequential decision: fail" in page
