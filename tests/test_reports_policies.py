"""Pure policies of the reports: roles, phases, flips, gaps, half switch, SLOs, verdicts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports import parse_slo
from reports import rollout as ro
from reports.stats import Side, error_p_value, judge, latency_block
from reports.verdict import Operand, combine, evaluate, verdict


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (["v1", "v2", "v3"], ("v1", "v2")),
        (["unknown", "v2", "v1"], ("v2", "v1")),
        (["v1"], ("v1", None)),
        ([], (None, None)),
        (["unknown"], (None, None)),
    ],
)
def test_roles_from_order(order, expected):
    assert ro.roles_from_order(order) == expected


def _proton(role, version, ts=1.0):
    return {
        "ts": ts,
        "kind": "proton",
        "status": "running",
        "role": role,
        "detail": {"version": version},
    }


MARKER = {
    "ts": 2.0,
    "kind": "marker",
    "status": "replacement requested",
    "detail": {"version": "app:2"},
}
WATCH = {"ts": 0.5, "kind": "marker", "status": "watch started", "detail": {"version": "zzz"}}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([_proton("active", "app:1"), _proton("candidate", "app:2")], ("app:1", "app:2")),
        ([_proton("active", "app:1"), _proton("active", "app:2", 9)], ("app:1", None)),
        ([WATCH, MARKER], (None, "app:2")),
        ([_proton("active", "app:1"), _proton("candidate", "app:1")], ("app:1", None)),
        ([_proton(None, "app:3"), _proton("active", "app:1"), MARKER], ("app:1", "app:2")),
        ([], (None, None)),
    ],
)
def test_roles_from_events(events, expected):
    assert ro.roles_from_events(events) == expected


@pytest.mark.parametrize(
    ("order", "events", "expected"),
    [
        (["v1", "v2"], [], ("v1", "v2", "first_seen")),
        # the probe started after the switch: it saw the candidate first
        (
            ["app:2", "app:1"],
            [_proton("active", "app:1"), MARKER],
            ("app:1", "app:2", "control_plane"),
        ),
        (["app:1", "app:9"], [MARKER], ("app:1", "app:2", "control_plane")),
        (["app:1", "app:9"], [_proton("active", "app:1")], ("app:1", "app:9", "control_plane")),
    ],
)
def test_resolve_roles(order, events, expected):
    assert ro.resolve_roles(order, events) == expected


@pytest.mark.parametrize(
    ("label", "role"),
    [("v1", "baseline"), ("v2", "candidate"), ("v3", "other"), ("unknown", "unknown")],
)
def test_role_of(label, role):
    assert ro.role_of(label, "v1", "v2") == role


@pytest.mark.parametrize(
    ("fc", "lb", "expected"),
    [
        (None, None, [("before", 0, 20)]),
        (None, 19.0, [("before", 0, 20)]),
        (10.0, 15.0, [("before", 0, 10), ("mixed", 10, 15), ("after", 15, 20)]),
        # atomic switch: the last baseline answer precedes the first candidate answer
        (10.5, 10.48, [("before", 0, 10.5), ("mixed", 10.5, 10.5), ("after", 10.5, 20)]),
        (0.0, None, [("before", 0, 0), ("mixed", 0, 0), ("after", 0, 20)]),
    ],
)
def test_phase_bounds(fc, lb, expected):
    assert ro.phase_bounds(0.0, 20.0, fc, lb) == expected


@pytest.mark.parametrize(
    ("stream", "cand", "flips"),
    [
        ([0, 0, 0, 0], [0, 1, 0, 1], 1),
        ([0, 0, 0, 0], [0, 1, 1, 1], 0),
        ([0, 0, 0, 0, 0], [1, 0, 1, 0, 0], 2),
        # interleaved streams: each caller saw one version only, so nobody flipped
        ([0, 1, 0, 1], [0, 1, 0, 1], 0),
        ([0, 1, 0, 1, 1], [1, 0, 0, 1, 0], 2),
        ([], [], 0),
        ([3], [1], 0),
    ],
)
def test_count_flips(stream, cand, flips):
    assert ro.count_flips(np.array(stream, dtype=np.int64), np.array(cand, dtype=bool)) == flips


@pytest.mark.parametrize(
    ("arrivals", "gap"),
    [([0, 1, 3.5, 4], 2.5), ([4, 0, 3.5, 1], 2.5), ([7.0], None), ([], None)],
)
def test_longest_gap(arrivals, gap):
    assert ro.longest_gap_s(np.array(arrivals, dtype=float)) == gap


@pytest.mark.parametrize(
    ("base", "cand", "bucket", "expected"),
    [
        ([10, 10, 5, 0], [0, 0, 5, 10], 1.0, 2.5),  # atomic switch in the middle of bucket 2
        ([10, 7, 0], [0, 3, 10], 1.0, 1.5 + 0.2 / 0.7),
        ([0, 0], [5, 5], 1.0, 0.0),
        ([10, 10], [0, 1], 1.0, None),
        ([10, 0, 0, 0], [0, 0, 0, 10], 1.0, 2.0),  # empty buckets are skipped
        ([10, 10, 0], [0, 0, 10], 0.5, 1.0),
        ([], [], 1.0, None),
    ],
)
def test_half_switch(base, cand, bucket, expected):
    got = ro.half_switch_s(np.array(base), np.array(cand), bucket)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(
    ("base", "cand", "bucket", "expected"),
    [([1, 1, 0], [0, 1, 1], 0.5, 0.5), ([5, 5, 5], [1, 1, 1], 1.0, 3.0), ([1, 0], [0, 1], 1, 0)],
)
def test_mixed_window(base, cand, bucket, expected):
    assert ro.mixed_window_s(np.array(base), np.array(cand), bucket) == expected


@pytest.mark.parametrize(
    ("fc", "lb", "platform", "expected"),
    [
        (10.0, 15.0, None, (9.0, 16.0)),
        (10.5, 10.48, None, (9.48, 11.5)),
        (12.5, 9.4, None, (8.4, 13.5)),  # an outage between the versions is inside
        (10.0, None, (3.0, 8.0), (9.0, 11.0)),
        (None, None, (3.0, 8.0), (3.0, 8.0)),
        (None, None, None, None),
    ],
)
def test_switch_window(fc, lb, platform, expected):
    assert ro.switch_window(fc, lb, 1.0, platform) == expected


def _platform(*statuses):
    return {"statuses": [{"status": s, "at_s": i} for i, s in enumerate(statuses)]}


@pytest.mark.parametrize(
    ("platform", "seen", "expected"),
    [
        (None, True, "inferred"),
        (None, False, "incomplete"),
        (_platform("submitted", "promoting", "completed"), True, "completed"),
        (_platform("submitted", "errored"), False, "errored"),
        (_platform("submitted", "canceling"), False, "canceled"),
        (_platform("submitted", "staged"), True, "incomplete"),
    ],
)
def test_outcome(platform, seen, expected):
    assert ro.outcome(platform, seen) == expected


def test_platform_block_times_and_switched_at():
    events = [
        {
            "ts": 105.0,
            "kind": "replacement",
            "status": "submitted",
            "replacement_id": "r1",
            "detail": {"switched_ts": None, "switchedAt": None},
        },
        {
            "ts": 110.0,
            "kind": "replacement",
            "status": "completed",
            "replacement_id": "r1",
            "detail": {"switched_ts": None, "switchedAt": "1970-01-01T00:01:48.500Z"},
        },
        {"ts": 111.0, "kind": "proton", "status": "running"},
    ]
    block = ro.platform_block(events, 100.0)
    assert block == {
        "replacement_id": "r1",
        "switched_at_s": 8.5,
        "statuses": [{"status": "submitted", "at_s": 5.0}, {"status": "completed", "at_s": 10.0}],
    }
    assert ro.platform_block(events[2:], 100.0) is None
    marker = {"ts": 103.0, "kind": "marker", "status": "replacement requested"}
    assert ro.requested_at_s([*events, marker], 100.0) == 3.0


# ---------------------------------------------------------------- SLOs


@pytest.mark.parametrize(
    ("expr", "left", "op", "number", "factor", "ref"),
    [
        ("error_rate<0.01", (None, "error_rate"), "<", 0.01, 1.0, None),
        (" p99_ms <= 500 ", (None, "p99_ms"), "<=", 500.0, 1.0, None),
        ("availability>=0.999", (None, "availability"), ">=", 0.999, 1.0, None),
        ("flips==0", (None, "flips"), "==", 0.0, 1.0, None),
        ("throughput_rps>1e3", (None, "throughput_rps"), ">", 1000.0, 1.0, None),
        (
            "candidate.p99_ms<1.2*baseline.p99_ms",
            ("candidate", "p99_ms"),
            "<",
            None,
            1.2,
            ("baseline", "p99_ms"),
        ),
        (
            "candidate.error_rate<=baseline.error_rate",
            ("candidate", "error_rate"),
            "<=",
            None,
            1.0,
            ("baseline", "error_rate"),
        ),
        ("app:1.2.p999_ms<100", ("app:1.2", "p999_ms"), "<", 100.0, 1.0, None),
    ],
)
def test_parse_slo(expr, left, op, number, factor, ref):
    slo = parse_slo(expr)
    assert (slo.left.scope, slo.left.metric) == left
    assert (slo.op, slo.number, slo.factor) == (op, number, factor)
    assert (None if slo.ref is None else (slo.ref.scope, slo.ref.metric)) == ref


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("", "operator"),
        ("error_rate", "operator"),
        ("p99<5", "unknown metric 'p99'"),
        ("error_rate<", "missing"),
        ("<5", "missing"),
        ("candidate.flips<1", "run-wide"),
        ("error_rate<<1", "more than one operator"),
        ("p99_ms<1.2*baseline.p98_ms", "unknown metric 'p98_ms'"),
        ("p99_ms<fast", "unknown metric 'fast'"),
        ("p99_ms<1.2.3*baseline.p99_ms", "factor"),
    ],
)
def test_parse_slo_rejects_with_expected_form(expr, why):
    with pytest.raises(ValueError) as info:
        parse_slo(expr)
    message = str(info.value)
    assert why in message and "expected" in message and "p99_ms<500" in message


SUMMARY = {
    "requests": 100,
    "error_rate": 0.02,
    "latency_ms": {"p99": 80.0},
    "longest_gap_s": 1.5,
    "rollout": {"flips": 0, "cutover_s": None},
    "versions": {
        "v1": {"role": "baseline", "error_rate": 0.0, "latency_ms": {"p99": 50.0}},
        "v2": {"role": "candidate", "error_rate": 0.04, "latency_ms": {"p99": 70.0}},
    },
}


@pytest.mark.parametrize(
    ("expr", "value", "threshold", "passed"),
    [
        ("error_rate<0.01", 0.02, 0.01, False),
        ("availability>=0.98", 0.98, 0.98, True),
        ("p99_ms<100", 80.0, 100.0, True),
        ("candidate.p99_ms<1.2*baseline.p99_ms", 70.0, 60.0, False),
        ("candidate.p99_ms<1.5*baseline.p99_ms", 70.0, 75.0, True),
        ("v1.error_rate==0", 0.0, 0.0, True),
        ("flips<1", 0, 1.0, True),
        ("longest_gap_s<2", 1.5, 2.0, True),
        ("cutover_s<5", None, 5.0, None),
        ("v9.p99_ms<5", None, 5.0, None),
        ("p50_ms<5", None, 5.0, None),
    ],
)
def test_evaluate(expr, value, threshold, passed):
    check = evaluate(parse_slo(expr), SUMMARY)
    assert check["value"] == value and check["passed"] is passed
    assert check["threshold"] == pytest.approx(threshold)
    assert check["op"] == parse_slo(expr).op and check["name"] == str(parse_slo(expr).left)


def test_operand_names():
    assert str(Operand(None, "p99_ms")) == "p99_ms"
    assert str(Operand("candidate", "p99_ms")) == "candidate.p99_ms"


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([True, True], "pass"),
        ([True, None], "inconclusive"),
        ([False, None], "fail"),
        ([None, False, True], "fail"),
        ([], "pass"),
    ],
)
def test_combine(results, expected):
    assert combine([{"passed": r} for r in results]) == expected


@pytest.mark.parametrize(
    ("error_rate", "judgement", "slos", "result", "n_checks"),
    [
        (0.0, None, None, "pass", 1),
        (0.0, "same", None, "pass", 2),
        (0.0, "better", None, "pass", 2),
        (0.0, "worse", None, "fail", 2),
        (0.0, "inconclusive", None, "inconclusive", 2),
        (0.5, "same", None, "fail", 2),
        (None, None, None, "inconclusive", 1),
        # any --slo replaces the default error-rate check; the comparison check stays
        (0.0, "worse", ["p99_ms<100"], "fail", 2),
        (0.5, "worse", ["p99_ms<100", "error_rate<0.6"], "fail", 3),
        (0.0, "same", ["p99_ms<100"], "pass", 2),
        # ... unless comparison=off; a setting alone keeps the default checks
        (0.0, "worse", ["p99_ms<100", "comparison=off"], "pass", 1),
        (0.0, "worse", ["comparison=off"], "pass", 1),
        (0.0, "same", ["comparison.alpha=0.05"], "pass", 2),
    ],
)
def test_verdict_defaults_and_overrides(error_rate, judgement, slos, result, n_checks):
    summary = {
        "error_rate": error_rate,
        "latency_ms": {"p99": 50.0},
        "comparison": None if judgement is None else {"judgement": judgement},
    }
    block = verdict(summary, slos)
    assert block["result"] == result and len(block["checks"]) == n_checks


@pytest.mark.parametrize(
    ("decision", "failed_by", "result", "name"),
    [
        ("pass", None, "pass", "comparison.sequential"),
        # pending is not a failure: the run's own verdict reads decision != fail
        ("pending", None, "pass", "comparison.sequential"),
        ("fail", "latency_p99_ratio", "fail", "comparison.sequential.latency_p99_ratio"),
        ("fail", "ttft_p50_ratio", "fail", "comparison.sequential.ttft_p50_ratio"),
        ("fail", None, "fail", "comparison.sequential.no_evidence"),
    ],
)
def test_verdict_reads_the_sequential_decision(decision, failed_by, result, name):
    guardrails = [
        {"metric": m, "at_decision": {"state": "beyond" if m == failed_by else "within"}}
        for m in ("latency_p50_ratio", "latency_p99_ratio", "ttft_p50_ratio")
    ]
    sequential = {"decision": decision, "guardrails": guardrails}
    summary = {
        "error_rate": 0.0,
        # the fixed-horizon judgement says worse: the sequential decision wins
        "comparison": {"judgement": "worse", "sequential": sequential},
    }
    block = verdict(summary, ["error_rate<0.01"])
    check = block["checks"][-1]
    assert (block["result"], check["name"], check["value"]) == (result, name, decision)
    assert check["passed"] is (decision != "fail")


@pytest.mark.parametrize(
    "expr",
    ["comparison=maybe", "comparison.alpha=2", "comparison.p99=1.5", "comparison.alpha=x"],
)
def test_comparison_settings_are_validated(expr):
    with pytest.raises(ValueError, match="bad comparison setting"):
        parse_slo(expr)


# ---------------------------------------------------------------- statistics


def test_latency_block_is_exact():
    block = latency_block(np.arange(1, 101, dtype=float))
    assert block["p50"] == 50.5 and block["max"] == 100.0 and block["mean"] == 50.5
    assert block["p99"] == pytest.approx(99.01) and block["p999"] == pytest.approx(99.901)
    assert set(latency_block(np.array([]))) == {"p50", "p90", "p95", "p99", "p999", "max", "mean"}
    assert all(v is None for v in latency_block(np.array([np.nan])).values())


def test_error_p_values():
    assert error_p_value(0, 1000, 100, 1000) < 1e-20
    assert error_p_value(10, 1000, 11, 1000) > 0.5
    assert error_p_value(0, 10, 0, 10) == 1.0
    assert error_p_value(1000, 1_000_000, 1000, 1_000_000) == pytest.approx(1.0)
    assert error_p_value(1000, 1_000_000, 2000, 1_000_000) < 1e-10  # z-test branch
    assert error_p_value(0, 0, 1, 10) is None


def side(requests=1000, errors=0, p50=10.0, p99=20.0, ok=None):
    return Side(requests, errors, p50, p99, requests - errors if ok is None else ok)


@pytest.mark.parametrize(
    ("base", "cand", "error_p", "latency_p", "expected"),
    [
        (side(10), side(10), 1.0, None, "inconclusive"),
        (side(), side(), None, None, "inconclusive"),
        (side(), side(errors=100), 1e-10, 0.5, "worse"),
        (side(), side(p50=30.0, p99=60.0), 1.0, 1e-6, "worse"),
        # significant but tiny: 0.5 ms / 1 ms deltas are below the 5 ms floor
        (side(), side(p50=10.5, p99=21.0), 1.0, 1e-9, "same"),
        # large relative to baseline but under 5 ms absolute
        (side(p50=1.0, p99=2.0), side(p50=3.0, p99=6.0), 1.0, 1e-9, "same"),
        # p99 +10 ms but not significant
        (side(), side(p99=30.0), 1.0, 0.2, "same"),
        # a significant tail shift below the p99 bounds (20 ms and 25%) is machine noise
        (side(p50=2.0, p99=8.0), side(p50=2.2, p99=19.0), 1.0, 1e-9, "same"),
        (side(p99=100.0), side(p99=124.0), 1.0, 1e-9, "same"),
        (side(p99=100.0), side(p99=126.0), 1.0, 1e-9, "worse"),
        # a significant but immaterial error difference (0.05 percentage point)
        (side(100_000, errors=50), side(100_000, errors=100), 1e-4, 0.5, "same"),
        (side(p50=30.0, p99=60.0), side(), 1.0, 1e-6, "better"),
        (side(errors=100), side(), 1e-10, 0.5, "better"),
        (side(errors=100), side(p50=30.0, p99=90.0), 1e-10, 1e-6, "worse"),
        # a candidate that only fails: no latencies, the error test decides
        (side(), side(errors=1000, p50=None, p99=None, ok=0), 1e-30, None, "worse"),
    ],
)
def test_judge(base, cand, error_p, latency_p, expected):
    assert judge(base, cand, error_p, latency_p) == expected


def test_p_values_are_finite_numbers():
    assert math.isfinite(error_p_value(1, 50, 2, 50) or math.nan)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 400), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_count_flips_in_pieces_is_count_flips(n: int, n_streams: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, n_streams, n)
    cand = rng.random(n) < rng.uniform(0.0, 1.0)
    cuts = np.sort(rng.integers(0, n + 1, rng.integers(0, 8)))
    bounds = [0, *cuts.tolist(), n]
    parts = [(stream[a:b], cand[a:b]) for a, b in itertools.pairwise(bounds)]
    assert ro.count_flips_in(parts, n_streams) == ro.count_flips(stream, cand)
