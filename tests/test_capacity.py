"""``probes capacity``: the pure step analysis (table-driven), the live step judge on real
shards, flag errors, and one real short run against a server whose latency grows with
concurrency (Locust as a subprocess; this process never imports it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from probes.cli import main
from probes.recording import CapacitySettings, NoProgress, StepWatch
from probes.records import Sample, ShardWriter, read_samples
from probes.shapes import parse_shape, users_at
from reports.capacity import (
    CAPACITY_SLOS,
    StepPlan,
    analyse_capacity,
    capacity_block,
    check_slos,
    cut_steps,
)
from tests.capacity_server import capacity_server

T0 = 1_700_000_000.0


def plan(**kw: Any) -> StepPlan:
    base = dict(
        start_users=2, step_users=2, step_seconds=10.0, max_users=8, spawn_rate=10.0,
        duration_s=40.0,
    )  # fmt: skip
    return StepPlan(**{**base, **kw})  # type: ignore[arg-type]


def synth(
    steps: list[tuple[float, float, float]], p: StepPlan, ramp_ms: float = 5000.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples of steps ``(rps, latency_ms, error_share)``: in each step's measured window,
    ``rps`` evenly spaced requests/s at exactly ``latency_ms``, every n-th one an error;
    in its skipped ramp-up, requests at ``ramp_ms`` (which must not count)."""
    ts, lat, ok = [], [], []
    for k, (rps, latency, err) in enumerate(steps):
        start = T0 + k * p.step_seconds
        skip = p.skip_s(k)
        for t in np.arange(start, start + skip, 0.1):
            ts.append(t), lat.append(ramp_ms), ok.append(True)
        n = round(rps * (p.step_seconds - skip))
        every = round(1 / err) if err else 0
        for i in range(n):
            ts.append(start + skip + i / rps), lat.append(latency)
            ok.append(not (every and i % every == every - 1))
    ts[0] = T0  # the first sample starts the clock
    return np.array(ts), np.array(lat), np.array(ok)


@pytest.mark.parametrize(
    ("steps", "slos", "expected"),
    [
        # throughput plateau after 4 users while p99 doubles: knee at 4 users (200 rps);
        # p99 crosses 30 ms at 8 users, after the plateau began
        (
            [(100, 10, 0), (200, 10, 0), (205, 20, 0), (206, 40, 0)],
            ["p99_ms<30"],
            (205.0, 200.0, 4, "plateau", "p99_ms 40 >= 30 at 8 users", [True, True, True, False]),
        ),
        # linear scaling, flat latency: no knee, no failure, the plan ran to its end
        (
            [(100, 10, 0), (200, 10, 0), (300, 10, 0), (400, 10, 0)],
            list(CAPACITY_SLOS),
            (400.0, None, None, "scaling", "max users reached", [True] * 4),
        ),
        # errors from 6 users on (1 in 10 > 1%); a throughput plateau from 4 users on without
        # a latency bend is still a plateau (Little's law: in a closed model p99 need not bend)
        (
            [(100, 10, 0), (200, 10, 0), (200, 12, 0.1), (200, 12, 0.1)],
            list(CAPACITY_SLOS),
            (200.0, 200.0, 4, "plateau", "error_rate 0.1 >= 0.01 at 6 users", [1, 1, 0, 0]),
        ),
        # the first step already fails: nothing within the SLO, no knee
        (
            [(50, 2000, 0), (50, 4000, 0)],
            ["p99_ms<1000", "error_rate<0.01"],
            (None, None, None, "slo", "p99_ms 2000 >= 1000 at 2 users", [False, False]),
        ),
    ],
)
def test_capacity_block(steps, slos, expected) -> None:
    p = plan()
    ts, lat, ok = synth(steps, p)
    block = capacity_block(cut_steps(ts, lat, ok, p), p, slos)
    max_rps, knee_rps, knee_users, knee_case, reason, passed = expected
    got = block["steps"]
    assert [s["users"] for s in got] == [2, 4, 6, 8][: len(steps)]
    assert [s["rps"] for s in got] == pytest.approx([float(s[0]) for s in steps], abs=0.01)
    # the ramp-up samples (5000 ms) were skipped: p99 is exactly the step's latency
    assert [s["latency_ms"]["p99"] for s in got] == [float(s[1]) for s in steps]
    assert [s["passed"] for s in got] == passed
    assert block["max_rps_within_slo"] == (pytest.approx(max_rps) if max_rps else None)
    assert block["knee_rps"] == (pytest.approx(knee_rps) if knee_rps else None)
    assert block["knee_users"] == knee_users
    assert block["knee_case"] == knee_case
    assert block["limit_reason"] == reason


@pytest.mark.parametrize(
    ("kw", "stopped_at", "n", "reason"),
    [
        ({"duration_s": 25.0}, None, 2, "duration reached"),  # the 3rd step ends at 30 s
        ({}, 21.5, 2, "interrupted (SIGINT)"),  # stopped inside the 3rd step
        ({"max_users": 20, "duration_s": 100.0}, None, 4, "load ended early"),  # no samples
    ],
)
def test_incomplete_steps_are_left_out(kw, stopped_at, n, reason) -> None:
    p = plan(**kw)
    ts, lat, ok = synth([(100, 10, 0)] * 4, plan())
    stopped = None if stopped_at is None else T0 + stopped_at
    steps = cut_steps(ts, lat, ok, p, stopped_ts=stopped)
    assert len(steps) == n
    interrupted = "SIGINT" if stopped is not None else None
    block = capacity_block(steps, p, ["p99_ms<500"], interrupted=interrupted)
    assert block["limit_reason"] == reason


@pytest.mark.parametrize(("cut_s", "n"), [(0.0, 4), (0.6, 4), (3.0, 4), (6.0, 3)])
def test_load_ending_inside_the_last_step(cut_s, n) -> None:
    """Locust's run clock starts before the first send, so the load stops a little before
    the plan's end: the last step is measured up to its last send (not under-counted), and
    left out once less than half of its 9 s window had load."""
    p = plan()
    ts, lat, ok = synth([(100, 10, 0)] * 4, p)
    keep = ts < T0 + 40.0 - cut_s
    steps = cut_steps(ts[keep], lat[keep], ok[keep], p)
    assert len(steps) == n
    assert [s["rps"] for s in steps] == pytest.approx([100.0] * n, abs=0.01)
    assert steps[-1]["measured_s"] == pytest.approx(9.0 - cut_s if n == 4 else 9.0, abs=0.02)


def test_verdict_and_manifest_plan() -> None:
    p = plan()
    ts, lat, ok = synth([(100, 10, 0), (200, 50, 0)], p)
    manifest = {"settings": {"slos": [], "capacity": p.describe()}, "capacity": {}}
    block, verdict = analyse_capacity(ts, lat, ok, manifest, ["p99_ms<20"]) or ({}, {})
    assert block["limit_reason"] == "p99_ms 50 >= 20 at 4 users"
    assert verdict["result"] == "pass"
    assert verdict["checks"][0]["value"] == 1
    assert verdict["checks"][1]["name"] == "p99_ms at 2 users"
    _, failing = analyse_capacity(ts, lat, ok, manifest, ["p99_ms<5"]) or ({}, {})
    assert failing["result"] == "fail" and failing["checks"][1]["passed"] is False
    none = analyse_capacity(ts[:0], lat[:0], ok[:0], manifest, None)
    assert none is not None and none[1]["result"] == "inconclusive"
    assert analyse_capacity(ts, lat, ok, {"settings": {}}, None) is None


def test_plan_and_step_shape() -> None:
    p = plan(start_users=1, step_users=3, max_users=9, spawn_rate=2.0)
    assert (p.n_steps, p.planned_s) == (4, 40.0)
    assert [p.users(k) for k in range(4)] == [1, 4, 7, 9]
    assert [p.skip_s(k) for k in range(4)] == [1.0, 1.5, 1.5, 1.0]
    shape = CapacitySettings(p).locust.shape
    assert [users_at(shape, t) for t in (0, 9.9, 10, 25, 39.9, 40)] == [
        (1, 2.0), (1, 2.0), (4, 2.0), (7, 2.0), (9, 2.0), None,
    ]  # fmt: skip
    # the same shape as text, the way the Locust glue parses --probes-shape
    text = parse_shape("step:from=1,step=3,every=10", users=9, spawn_rate=2.0, duration=40)
    assert text == shape


def test_check_slos() -> None:
    assert check_slos(["p99_ms<5", "error_rate<=0.1"]) == ["p99_ms<5", "error_rate<=0.1"]
    for bad in ("candidate.p99_ms<5", "p99_ms<1.2*baseline.p99_ms", "flips==0"):
        with pytest.raises(ValueError, match="per step"):
            check_slos([bad])


def _plan(**kw: Any) -> StepPlan:
    base = dict(start_users=1, step_users=2, step_seconds=5.0, max_users=5, spawn_rate=10.0)
    return CapacitySettings.build(**{**base, **kw}).plan


def test_duration_caps_the_plan() -> None:
    assert _plan().duration_s == 15.0
    assert _plan(duration=7.0).duration_s == 7.0
    assert _plan(duration=99.0).duration_s == 15.0


def test_step_watch_judges_shards(tmp_path: Path) -> None:
    """The live judge reads real shards and stops at the first step that breaks a check,
    once the step's samples had ``grace_s`` to arrive."""
    p = plan(step_seconds=4.0, max_users=8, duration_s=16.0)
    ts, lat, ok = synth([(50, 10, 0), (50, 10, 0), (50, 90, 0), (50, 10, 0)], p)
    writer = ShardWriter(tmp_path, "locust-1", background=False)
    writer.add_many(
        Sample(t, t, la, "locust", "w", "GET", "/", 200 if k else 500, None if k else "http_5xx",
               "v1", "header", 0, None)
        for t, la, k in zip(ts.tolist(), lat.tolist(), ok.tolist(), strict=True)
    )  # fmt: skip
    writer.close()
    watch = StepWatch(tmp_path, NoProgress(), p, ["p99_ms<50"], grace_s=1.0)
    watch.poll()
    assert watch.rows == len(ts) and watch.t0 == T0
    assert watch.judge(T0 + 8.5) is None and watch.next_step == 1  # step 2 not yet in
    assert watch.judge(T0 + 9.0) is None and watch.next_step == 2
    broken = watch.judge(T0 + 13.0)
    assert broken is not None and broken["users"] == 6 and broken["latency_ms"]["p99"] == 90.0
    assert watch.judge(T0 + 99.0) is broken and watch.next_step == 3


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--start-users", "0"], "--start-users"),
        (["--step-users", "0"], "--step-users"),
        (["--start-users", "10", "--max-users", "5"], "--max-users"),
        (["--spawn-rate", "0"], "--spawn-rate"),
        (["--step-seconds", "1.5"], "--step-seconds"),
        (["--step-users", "50", "--spawn-rate", "10", "--step-seconds", "5"], "--step-seconds"),
        (["--duration", "0"], "--duration"),
        (["--workers", "-1"], "--workers"),
        (["--slo", "candidate.p99_ms<5"], "--slo"),
        (["--slo", "p99_ms<<5"], "--slo"),
    ],
)
def test_bad_flags_exit_2(args, flag, tmp_path: Path, capsys) -> None:
    code = main(["capacity", "http://127.0.0.1:9/", "--runs-dir", str(tmp_path), "-q", *args])
    assert code == 2
    assert flag in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before any run directory or traffic


def test_url_or_workload_is_required(tmp_path: Path, capsys) -> None:
    assert main(["capacity", "--runs-dir", str(tmp_path)]) == 2
    assert "URL" in capsys.readouterr().err


def test_capacity_run_stops_when_the_slo_breaks(tmp_path: Path) -> None:
    """2 slots x 20 ms: at most 100 req/s, so the mean latency of U users is >= U * 10 ms.
    Steps of 1, 7, 13, ... 31 users under p99_ms<100: one user passes; 13 users cannot. A step
    is judged 1.5 s after its end (its samples in): the plan goes on three steps past 13 users
    so that the stop comes well before Locust's own end (a stop asked within 1 s of it waits
    for it), however late a busy machine judges."""
    with capacity_server(slots=2, work_ms=20.0, max_seconds=90.0) as url:
        code = main(
            ["capacity", url, "--runs-dir", str(tmp_path), "--run-id", "c", "-q",
             "--start-users", "1", "--step-users", "6", "--max-users", "31",
             "--step-seconds", "2.5", "--spawn-rate", "20", "--slo", "p99_ms<100"]
        )  # fmt: skip
    run_dir = tmp_path / "c"
    summary = json.loads((run_dir / "summary.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    counts = json.loads((run_dir / "locust.json").read_text())
    assert code == 0 and summary["kind"] == "capacity" and summary["verdict"]["result"] == "pass"
    cap = summary["capacity"]
    steps = cap["steps"]
    users = [s["users"] for s in steps]
    assert users == [1, 7, 13, 19, 25, 31][: len(users)] and len(users) >= 2
    # stopped early: after the first breaking step, before the plan's last one
    assert manifest["capacity"]["stopped_at_users"] in (7, 13)
    assert manifest["capacity"]["stopped_ts"] is not None
    assert users[-1] == manifest["capacity"]["stopped_at_users"]
    assert steps[0]["passed"] and not steps[-1]["passed"]
    assert cap["limit_reason"].startswith("p99_ms ") and cap["limit_reason"].endswith(
        f">= 100 at {users[-1]} users"
    )
    passing = [s["rps"] for s in steps if s["passed"]]
    assert cap["max_rps_within_slo"] == max(passing) and 0 < max(passing) <= 110
    # 7 users already saturate 100 req/s: broken at 7, the SLO came first (knee at 1 user);
    # broken at 13, the plateau did (knee at 7 users, the first step at the ceiling)
    expected = ("slo", 1) if users[-1] == 7 else ("plateau", 7)
    assert (cap["knee_case"], cap["knee_users"]) == expected, cap
    # the stop was clean: Locust's own count equals the samples written
    assert counts["requests"] == counts["samples"] == len(read_samples(run_dir)) > 0
    assert sum(s["requests"] for s in steps) < counts["samples"]  # ramp-ups left out
    assert "Capacity" in (run_dir / "report.html").read_text()
