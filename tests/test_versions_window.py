"""The live per-version view: rolling window and rollout state, pure."""

from __future__ import annotations

import pytest

from probes.lifecycle import fold
from probes.live import RecentSamples, table_rows, version_window
from probes.records import Sample


def rollout_state(events):
    return fold(events).as_dict() if events else None


def test_window_counts_shares_errors_and_exact_percentiles() -> None:
    rows = [(100.0 + i * 0.01, "v1", float(i), None) for i in range(1, 101)]
    rows += [(105.0, "v2", 50.0, "http_5xx"), (105.5, "v2", 70.0, None)]
    rows += [(80.0, "v1", 9999.0, None)]  # too old: outside (end - 10, end]
    rows += [(111.0, "v1", 9999.0, None)]  # in the future of end_ts
    out = version_window(rows, end_ts=110.0, window_s=10.0)
    assert out["requests"] == 102
    v1, v2 = out["versions"]
    assert (v1["version"], v1["requests"], v1["errors"]) == ("v1", 100, 0)
    assert v1["share"] == pytest.approx(100 / 102)
    assert v1["p50_ms"] == pytest.approx(50.5)
    assert v1["p99_ms"] == pytest.approx(99.01)
    assert v1["rps"] == pytest.approx(10.0)
    assert (v2["requests"], v2["errors"], v2["error_rate"]) == (2, 1, 0.5)
    assert v2["p50_ms"] == pytest.approx(60.0)


def test_window_rate_over_a_young_test_and_empty_window() -> None:
    rows = [(100.0 + i * 0.1, "v1", 1.0, None) for i in range(20)]  # 2 s of traffic
    out = version_window(rows, end_ts=101.9, window_s=10.0, first_ts=100.0)
    assert out["versions"][0]["rps"] == pytest.approx(20 / 1.9)
    assert version_window([], end_ts=5.0) == {
        "end_ts": 5.0,
        "window_s": 10.0,
        "requests": 0,
        "versions": [],
    }


def sample(ts: float, version: str, error: str | None = None) -> Sample:
    return Sample(ts, ts, 1.0, "locust", "w", "GET", "/", 200, error, version, "header", 1, None)


def test_recent_samples_is_bounded_by_time() -> None:
    recent = RecentSamples(window_s=10.0, slack_s=5.0)
    recent.add_many([sample(float(t), "v1") for t in range(100)])
    assert len(recent) == 16  # ts 84..99: newest - 15 s
    assert recent.first_ts == 0.0
    snap = recent.snapshot()
    assert snap["end_ts"] == 99.0 and snap["requests"] == 10


EVENTS = [
    {"ts": 1, "kind": "marker", "status": "replacement requested", "detail": {"version": "m:2"}},
    {"ts": 2, "kind": "replacement", "status": "submitted", "replacement_id": "r1"},
    {
        "ts": 3,
        "kind": "proton",
        "status": "running",
        "proton_id": "p1",
        "role": "active",
        "detail": {"version": "m:1", "artifact_id": "a1"},
    },
    {
        "ts": 4,
        "kind": "proton",
        "status": "initializing",
        "proton_id": "p2",
        "role": "candidate",
        "detail": {"version": "m:2", "artifact_id": "a2"},
    },
    {
        "ts": 5,
        "kind": "replacement",
        "status": "promoting",
        "replacement_id": "r1",
        "detail": {"switched_ts": 5.5, "switchedAt": None, "message": None, "inferred": False},
    },
]


def test_rollout_state_folds_events() -> None:
    assert rollout_state([]) is None
    state = rollout_state(EVENTS)
    assert state is not None
    assert (state["replacement_id"], state["status"], state["switched_ts"]) == (
        "r1",
        "promoting",
        5.5,
    )
    assert state["requested"] is True
    assert state["roles"] == {"m:1": "active", "m:2": "candidate"}
    assert state["protons"]["p2"] == {
        "status": "initializing",
        "role": "candidate",
        "version": "m:2",
    }
    removed = {"ts": 6, "kind": "proton", "status": "removed", "proton_id": "p1",
               "detail": {"version": "m:1", "artifact_id": "a1"}}  # fmt: skip
    later = rollout_state([*EVENTS, removed])
    assert later is not None and later["roles"] == {"m:1": "removed", "m:2": "candidate"}


def test_table_rows_show_roles_and_rollout_line() -> None:
    window = version_window([(1.0, "m:1", 5.0, None), (1.5, "m:2", 7.0, "http_5xx")], 2.0)
    rows = table_rows(window, rollout_state(EVENTS))
    assert [r["version"] for r in rows] == ["m:1", "m:2", "(rollout)"]
    assert rows[0]["role"] == "active" and rows[1]["errors"] == "100.00%"
    assert rows[2]["role"] == "promoting"
    assert [r["version"] for r in table_rows(window, None)] == ["m:1", "m:2"]
