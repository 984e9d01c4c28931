"""Run-over-run trends: change points (E-divisive means + t-test) on synthetic series with known
shifts, and the series extracted from run summaries."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from reports.trends import (
    P_VALUE,
    ChangePoint,
    Point,
    Series,
    analyse_series,
    capacity_series,
    change_points,
    common_step_users,
    daily_canary_series,
    merge,
    regressions,
    step_p99_series,
    t_test,
    trends,
)


def noisy(rng: np.random.Generator, *segments: tuple[int, float], sd: float) -> np.ndarray:
    """Gaussian noise of ``sd`` (relative to each segment's mean) around piecewise means."""
    return np.concatenate([rng.normal(mean, mean * sd, n) for n, mean in segments])


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize(("after", "shift"), [(20, 1.10), (20, 0.90), (5, 1.10)])
def test_a_ten_percent_step_after_30_points_is_found_at_the_right_run(
    seed: int, after: int, shift: float
) -> None:
    z = noisy(np.random.default_rng(seed), (30, 100.0), (after, 100.0 * shift), sd=0.01)
    found = change_points(z)
    assert [c.index for c in found] == [30]
    cp = found[0]
    assert cp.p_value < P_VALUE
    assert cp.change == pytest.approx(shift - 1.0, abs=0.02)


def test_with_more_noise_the_step_is_found_within_one_run() -> None:
    """sd 2 % (the step is 5 sd): in 100 seeds always within one run, nearly always exact."""
    found = []
    for seed in range(100):
        z = noisy(np.random.default_rng(seed), (30, 100.0), (10, 110.0), sd=0.02)
        found.append([c.index for c in change_points(z)])
    assert all(len(f) == 1 and abs(f[0] - 30) <= 1 for f in found), found
    assert sum(f == [30] for f in found) >= 95


def test_a_flat_noisy_series_gives_no_change_point_in_100_seeds() -> None:
    alarms = {
        seed: change_points(noisy(np.random.default_rng(seed), (60, 100.0), sd=0.05))
        for seed in range(100)
    }
    assert {s: a for s, a in alarms.items() if a} == {}


def test_a_flat_series_at_a_loose_p_value_does_raise_false_alarms() -> None:
    """The flat-series test can fail: at p=0.01 the same seeds do give change points."""
    hits = sum(
        bool(change_points(noisy(np.random.default_rng(seed), (60, 100.0), sd=0.05), p_value=0.01))
        for seed in range(100)
    )
    assert hits > 5


def test_two_shifts_in_a_long_series_are_both_found() -> None:
    """Sliding windows: shifts far apart in a 120-point series, each found where it is."""
    rng = np.random.default_rng(7)
    z = noisy(rng, (40, 100.0), (40, 112.0), (40, 95.0), sd=0.02)
    assert [c.index for c in change_points(z)] == [40, 80]


def test_constant_and_tiny_series() -> None:
    assert change_points([5.0] * 40) == []
    assert change_points([1.0, 2.0, 3.0]) == []
    # no noise at all: a step is certain
    found = change_points([10.0] * 10 + [20.0] * 10)
    assert [(c.index, c.p_value) for c in found] == [(10, 0.0)]


def test_a_single_outlier_is_not_a_change_point() -> None:
    z = noisy(np.random.default_rng(3), (40, 100.0), sd=0.02)
    z[-1] = 70.0  # one bad night at the end
    z[20] = 140.0  # and one in the middle
    assert change_points(z) == []


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="p_value"):
        change_points([1.0] * 10, p_value=0)
    with pytest.raises(ValueError, match="window"):
        change_points([1.0] * 10, window=4)
    with pytest.raises(ValueError, match="finite"):
        change_points([1.0, float("nan")] * 10)


def test_t_test_edges() -> None:
    assert t_test(np.array([1.0]), np.array([])) == 1.0
    assert t_test(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 1.0
    assert t_test(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == 0.0
    assert 0.0 < t_test(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])) < 1.0


def test_merge_drops_the_weak_point_and_re_tests_its_neighbours() -> None:
    rng = np.random.default_rng(11)
    z = noisy(rng, (30, 100.0), (30, 110.0), sd=0.02)
    kept = merge(z, [15, 30, 45], 1e-5)  # 15 and 45 split no real shift
    assert [c.index for c in kept] == [30]
    assert kept[0].mean_before == pytest.approx(float(z[:30].mean()))
    assert kept[0].mean_after == pytest.approx(float(z[30:].mean()))
    small = merge(z, [30], 1e-5, min_magnitude=0.5)  # significant but below the magnitude
    assert small == []


def test_change_point_magnitude() -> None:
    cp = ChangePoint(3, 0.0, 100.0, 80.0, 1.0, 1.0)
    assert cp.change == pytest.approx(-0.2) and cp.magnitude == pytest.approx(0.25)


# -- series from summaries ------------------------------------------------------------------


def iso(day: int, hour: int = 2) -> str:
    return datetime(2026, 11, day, hour, tzinfo=UTC).isoformat().replace("+00:00", "Z")


def capacity_summary(day: int, max_rps: float | None, knee: float | None, p99_at: dict) -> dict:
    steps = [{"users": u, "rps": 10.0 * u, "latency_ms": {"p99": p}} for u, p in p99_at.items()]
    return {
        "run_id": f"nightly-{day}",
        "kind": "capacity",
        "started_at": iso(day),
        "capacity": {"steps": steps, "max_rps_within_slo": max_rps, "knee_rps": knee},
    }


def canary_summary(day: int, hour: int, requests: int, errors: int, p99: float) -> dict:
    return {
        "run_id": f"canary-{day}-{hour}",
        "kind": "canary",
        "started_at": iso(day, hour),
        "requests": requests,
        "errors": errors,
        "latency_ms": {"p99": p99},
    }


def test_capacity_series_are_ordered_by_start_and_skip_missing_numbers() -> None:
    runs = [
        capacity_summary(3, 300.0, 250.0, {5: 20.0, 10: 40.0}),
        capacity_summary(1, 310.0, None, {5: 21.0, 10: 41.0}),
        capacity_summary(2, None, 240.0, {5: 22.0}),
        {"run_id": "x", "kind": "load", "started_at": iso(1)},
    ]
    max_rps, knee = capacity_series(runs)
    assert [(p.run_id, p.value) for p in max_rps.points] == [
        ("nightly-1", 310.0),
        ("nightly-3", 300.0),
    ]
    assert [(p.run_id, p.value) for p in knee.points] == [
        ("nightly-2", 240.0),
        ("nightly-3", 250.0),
    ]
    assert max_rps.better == "higher" and max_rps.points[0].ts < max_rps.points[1].ts
    assert common_step_users(runs) == 5  # reached by all three runs; 10 users by two
    p99 = step_p99_series(runs, 10)
    assert p99.name == "p99_ms at 10 users" and p99.values == [41.0, 40.0] and p99.better == "lower"


def test_daily_canary_series_weight_by_requests() -> None:
    runs = [
        canary_summary(1, 0, 1000, 10, 100.0),
        canary_summary(1, 1, 3000, 0, 200.0),
        canary_summary(2, 5, 500, 50, 50.0),
        canary_summary(2, 6, 0, 0, 999.0),  # an empty segment counts for nothing
    ]
    errors, p99 = daily_canary_series(runs)
    assert [(p.run_id, p.value) for p in errors.points] == [
        ("canary-1-0", 10 / 4000),
        ("canary-2-5", 50 / 500),
    ]
    assert p99.values == [pytest.approx((100.0 * 990 + 200.0 * 3000) / 3990), 50.0]


def test_trends_mark_a_capacity_regression_at_its_run() -> None:
    rng = np.random.default_rng(5)
    values = noisy(rng, (30, 300.0), (10, 270.0), sd=0.02)
    runs = [capacity_summary(1, float(v), None, {5: 20.0}) for v in values]
    for i, run in enumerate(runs):  # one run per night
        run["run_id"] = f"n{i:02d}"
        run["started_at"] = datetime.fromtimestamp(1_780_000_000 + i * 86400, UTC).isoformat()
    analysed = trends(runs)
    names = [s["name"] for s in analysed]
    assert names == ["max_rps_within_slo", "p99_ms at 5 users"]  # knee: no points
    found = regressions(analysed)
    assert [(r["series"], r["run_id"], r["regression"]) for r in found] == [
        ("max_rps_within_slo", "n30", True)
    ]
    assert found[0]["change"] == pytest.approx(-0.10, abs=0.02)


def test_a_latency_drop_is_a_change_but_not_a_regression() -> None:
    rng = np.random.default_rng(8)
    values = noisy(rng, (20, 100.0), (20, 80.0), sd=0.02)
    points = tuple(Point(f"r{i}", float(i), float(v)) for i, v in enumerate(values))
    out = analyse_series(Series("p99_ms per day", "ms", "lower", points))
    assert [(c["index"], c["run_id"], c["regression"]) for c in out["change_points"]] == [
        (20, "r20", False)
    ]


def test_observe_and_rollout_runs_are_points_of_their_own() -> None:
    runs = []
    for i, (kind, p99, errors) in enumerate(
        [("observe", 10.0, 0), ("observe", 12.0, 5), ("rollout", 30.0, 1), ("canary", 9.0, 0)]
    ):
        runs.append({
            "run_id": f"r{i}", "kind": kind, "requests": 100, "errors": errors,
            "started_at": datetime.fromtimestamp(1_780_000_000 + i * 60, UTC).isoformat(),
            "latency_ms": {"p99": p99},
        })  # fmt: skip
    runs.append({"run_id": "empty", "kind": "observe", "requests": 0, "errors": 0,
                 "started_at": datetime.fromtimestamp(1_780_000_000, UTC).isoformat()})  # fmt: skip
    by_name = {s["name"]: s for s in trends(runs)}
    assert [(p["run_id"], p["value"]) for p in by_name["p99_ms per observe run"]["points"]] == [
        ("r0", 10.0),
        ("r1", 12.0),
    ]
    errors = by_name["error_rate per observe run"]["points"]
    assert [p["value"] for p in errors] == [0.0, 0.05]
    assert [p["run_id"] for p in by_name["p99_ms per rollout run"]["points"]] == ["r2"]
    assert "p99_ms per load run" not in by_name  # no load run: no series
    assert "p99_ms per day" in by_name  # the canary stays per day
