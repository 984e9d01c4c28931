"""Timeline attribution: only where exactly one version was routed (table-driven)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from reports.timeline import attribute, poll_interval, routed_segments, switch_windows


def proton(ts, pid, version, role, status="running"):
    return {
        "ts": ts,
        "kind": "proton",
        "status": status,
        "proton_id": pid,
        "role": role,
        "detail": {"version": version, "artifact_id": "a-" + pid},
    }


def rep(ts, status, switched_ts=None, inferred=False):
    detail = {"switched_ts": switched_ts, "switchedAt": None, "message": None, "inferred": inferred}
    return {
        "ts": ts,
        "kind": "replacement",
        "status": status,
        "replacement_id": "r1",
        "detail": detail,
    }


def marker(ts, status, **detail):
    return {"ts": ts, "kind": "marker", "status": status, "detail": detail}


START = [marker(0.0, "watch started", poll_s=0.5), proton(0.0, "p1", "app:1", "active")]
REQUEST = [
    marker(10.0, "replacement requested"),
    rep(10.0, "submitted"),
    proton(10.5, "p2", "app:2", "candidate", "launching"),
    rep(12.0, "staged"),
]
SWITCH = [
    rep(20.3, "promoting", switched_ts=20.0),
    proton(20.3, "p1", "app:1", None, "draining"),
    proton(20.3, "p2", "app:2", "active"),
]
HEALTHY = [
    *START,
    *REQUEST,
    *SWITCH,
    rep(22.0, "finalizing", 20.0),
    rep(25.0, "completed", 20.0, inferred=True),
    marker(30.0, "watch stopped"),
]
NO_SWITCH_TIME = [
    *START,
    *REQUEST,
    rep(20.3, "promoting"),
    proton(20.3, "p2", "app:2", "active"),
    proton(20.3, "p1", "app:1", None, "draining"),
    rep(22.0, "finalizing"),
]
NEVER_READY = [*START, *REQUEST, rep(40.0, "errored"), marker(50.0, "watch stopped")]
STILL_PROMOTING = [*START, *REQUEST, *SWITCH]
ROLES_ONLY = [
    *START,
    {"ts": 5.0, "kind": "workload", "status": "running", "detail": {}},
    proton(8.0, "p2", "app:2", "active"),
    proton(8.0, "p1", "app:1", None, "removed"),
]
TWO_ACTIVE = [*START, proton(3.0, "p2", "app:2", "active")]

# (case, events, ts, latency_ms, status, version in) -> (version out, tag_source out)
CASES = [
    ("before the switch", HEALTHY, 5.0, 10, 200, "unknown", "app:1", "timeline"),
    ("ends just before the window", HEALTHY, 19.4, 50, 200, "unknown", "app:1", "timeline"),
    ("ends inside the window", HEALTHY, 19.48, 50, 200, "unknown", "unknown", "none"),
    ("inside the switch", HEALTHY, 21.0, 10, 200, "unknown", "unknown", "none"),
    ("after window + latency", HEALTHY, 22.6, 50, 200, "unknown", "app:2", "timeline"),
    ("too soon after the window", HEALTHY, 22.52, 50, 200, "unknown", "unknown", "none"),
    ("well after", HEALTHY, 29.0, 10, 500, "unknown", "app:2", "timeline"),
    ("after the watcher stopped", HEALTHY, 31.0, 10, 200, "unknown", "unknown", "none"),
    ("no response arrived", HEALTHY, 5.0, 10, 0, "unknown", "unknown", "none"),
    ("tagged rows are kept", HEALTHY, 21.0, 10, 200, "app:9", "app:9", "header"),
    ("before the probe's first poll", HEALTHY, -3.0, 10, 200, "unknown", "app:1", "timeline"),
    (
        "no switchedAt: from the event before",
        NO_SWITCH_TIME,
        15.0,
        10,
        200,
        "unknown",
        "unknown",
        "none",
    ),
    ("no switchedAt: well before", NO_SWITCH_TIME, 11.0, 10, 200, "unknown", "app:1", "timeline"),
    ("no switchedAt: after", NO_SWITCH_TIME, 23.0, 10, 200, "unknown", "app:2", "timeline"),
    (
        "never ready: baseline throughout",
        NEVER_READY,
        45.0,
        10,
        200,
        "unknown",
        "app:1",
        "timeline",
    ),
    ("still promoting at the end", STILL_PROMOTING, 40.0, 10, 200, "unknown", "unknown", "none"),
    (
        "role change without a record: before",
        ROLES_ONLY,
        4.0,
        10,
        200,
        "unknown",
        "app:1",
        "timeline",
    ),
    (
        "role change without a record: inside",
        ROLES_ONLY,
        6.0,
        10,
        200,
        "unknown",
        "unknown",
        "none",
    ),
    (
        "role change without a record: after",
        ROLES_ONLY,
        9.0,
        10,
        200,
        "unknown",
        "app:2",
        "timeline",
    ),
    ("two active versions: ambiguous", TWO_ACTIVE, 10.0, 10, 200, "unknown", "unknown", "none"),
    ("no events", [], 5.0, 10, 200, "unknown", "unknown", "none"),
]


def frame_of(rows, categorical=True):
    frame = pd.DataFrame(
        rows, columns=["ts", "latency_ms", "status", "version", "tag_source"]
    ).astype({"ts": "float64", "latency_ms": "float64", "status": "int16"})
    if categorical:
        frame = frame.astype({"version": "category", "tag_source": "category"})
    return frame


@pytest.mark.parametrize(
    ("case", "events", "ts", "lat", "status", "vin", "vout", "tout"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_attribute(case, events, ts, lat, status, vin, vout, tout):
    tag_in = "none" if vin == "unknown" else "header"
    frame = frame_of([(ts, lat, status, vin, tag_in)])
    out = attribute(frame, events)
    assert (out["version"][0], out["tag_source"][0]) == (vout, tout)
    assert frame["version"][0] == vin  # the input is never modified


def test_windows_and_segments():
    assert poll_interval(HEALTHY) == 0.5 and poll_interval([]) == 0.5
    # switchedAt 20.0 to finalizing 22.0, widened by one poll; the role change seen at
    # 20.3 lies inside and adds nothing.
    assert switch_windows(HEALTHY, 0.5) == [(19.5, 22.5)]
    segs = [(s.start, s.end, s.version) for s in routed_segments(HEALTHY, 0.5)]
    assert segs == [(-math.inf, 19.5, "app:1"), (22.5, 30.0, "app:2")]
    assert switch_windows(NO_SWITCH_TIME, 0.5) == [(11.5, 22.5)]
    assert switch_windows(NEVER_READY, 0.5) == []
    # Locust's own markers (its load started 15 s in) say nothing of when the switch came
    load = {**marker(15.0, "load started", workers=0), "role": "locust"}
    assert switch_windows(sorted([*NO_SWITCH_TIME, load], key=lambda e: e["ts"]), 0.5) == [
        (11.5, 22.5)
    ]


def test_attribute_many_rows_keeps_dtypes_and_counts():
    rows = [(t / 10, 5.0, 200, "unknown", "none") for t in range(0, 300)]
    out = attribute(frame_of(rows), HEALTHY)
    assert isinstance(out["version"].dtype, pd.CategoricalDtype)
    counts = out["version"].astype(str).value_counts().to_dict()
    # 0.0..19.4 before (195 rows), 22.6..29.9 after (74 rows), the rest inside the window.
    assert counts == {"app:1": 195, "app:2": 74, "unknown": 31}
    assert set(out.loc[out["version"] != "unknown", "tag_source"].astype(str)) == {"timeline"}
    plain = attribute(frame_of(rows, categorical=False), HEALTHY)
    assert plain["version"].astype(str).value_counts().to_dict() == counts
