"""Reconciliation: the platform's per-proton counts (``platform stats`` markers the rollout
driver writes at the end) beside what callers saw, table-driven and through the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from probes.cli import main
from probes.records import read_events
from probes.sim import SimConfig, Simulator
from reports.reconciliation import PLATFORM_STATS, reconcile

TOKEN = "recon-test-token"
TOKEN_ENV = "PROBES_TEST_RECON_TOKEN"
T0 = 1_700_000_000.0


def _marker(pid: str, version: str, total: int, server: int = 0, user: int = 0) -> dict[str, Any]:
    metrics = {"totalRequests": total, "serverErrors": server, "userErrors": user}
    return {
        "ts": T0 + 100, "kind": "marker", "status": PLATFORM_STATS, "proton_id": pid,
        "detail": {"version": version, "start_ts": T0, "end_ts": T0 + 100, "metrics": metrics},
    }  # fmt: skip


def _rows(spec: list[tuple[str, int, str]]) -> dict[str, Any]:
    """Arrays of a run from ``(version, status, error class or "")`` rows, 0.1 s apart."""
    labels = sorted({v for v, _, _ in spec} | {"unknown"})
    errors = sorted({e for _, _, e in spec} | {""})
    return {
        "t0": T0,
        "ts": T0 + 1 + np.arange(len(spec)) * 0.1,
        "ok": np.array([e == "" for _, _, e in spec]),
        "status": np.array([s for _, s, _ in spec], dtype=np.int16),
        "version": np.array([labels.index(v) for v, _, _ in spec]),
        "labels": labels,
        "error": np.array([errors.index(e) for _, _, e in spec]),
        "error_labels": errors,
    }


def test_no_platform_counts_no_block() -> None:
    assert reconcile([], interrupted=0, **_rows([("v1", 200, "")])) is None


def test_counts_that_agree() -> None:
    rows = [("v1", 200, "")] * 100 + [("v2", 200, "")] * 50 + [("v2", 500, "http_5xx")] * 5
    events = [_marker("p1", "v1", 100), _marker("p2", "v2", 55, server=5)]
    block = reconcile(events, interrupted=0, **_rows(rows))
    assert block is not None and block["agrees"]
    p1, p2 = block["protons"]
    assert (p1["platform_requests"], p1["caller_requests"], p1["difference"]) == (100, 100, 0)
    assert (p2["platform_errors"], p2["caller_errors"], p2["difference_pct"]) == (5, 5, 0.0)
    assert p1["cause"] is None and block["total"]["difference"] == 0


def test_answers_never_got_explain_a_platform_surplus() -> None:
    rows = [("v1", 200, "")] * 90 + [("unknown", 0, "reset")] * 6 + [("unknown", 0, "timeout")]
    block = reconcile([_marker("p1", "v1", 98, server=8)], interrupted=1, **_rows(rows))
    assert block is not None
    (p1,) = block["protons"]
    assert p1["difference"] == 8 and p1["difference_pct"] == pytest.approx(100 * 8 / 98, abs=1e-3)
    assert not p1["agrees"] and p1["explained"]
    assert p1["cause"] == "answers the client never got (1 interrupted, 6 reset, 1 timeout)"
    assert block["unattributed"]["no_answer"] == {"reset": 6, "timeout": 1, "interrupted": 1}
    assert block["total"]["difference"] == 0  # every row reached some proton


def test_gateway_answers_count_for_no_proton() -> None:
    rows = [("v1", 200, "")] * 100 + [("unknown", 503, "http_5xx")] * 4
    rows += [("unknown", 401, "http_4xx")] * 2
    block = reconcile([_marker("p1", "v1", 100)], interrupted=0, **_rows(rows))
    assert block is not None and block["protons"][0]["agrees"]
    assert block["unattributed"]["gateway"] == {"503": 4, "401": 2}
    total = block["total"]
    assert total["difference"] == -6 and "gateway before any proton" in total["cause"]


def test_callers_surplus_is_the_counting_window_and_failed_fetches_are_listed() -> None:
    rows = [("v1", 200, "")] * 100
    events = [_marker("p1", "v1", 80)]
    events.append({**_marker("p2", "v2", 0), "detail": {"version": "v2", "error": "403"}})
    block = reconcile(events, interrupted=0, **_rows(rows))
    assert block is not None and not block["agrees"]
    (p1,) = block["protons"]
    assert p1["difference"] == -20 and "counting window" in p1["cause"] and not p1["explained"]
    assert block["failed_fetches"] == [{"proton_id": "p2", "error": "403"}]


def test_rows_outside_the_window_are_not_counted() -> None:
    spec = _rows([("v1", 200, "")] * 10)
    spec["ts"][:3] = T0 - 5  # before the platform's startTime
    block = reconcile([_marker("p1", "v1", 7)], interrupted=0, **spec)
    assert block is not None and block["protons"][0]["caller_requests"] == 7


# ----------------------------------------------------------------------------- end to end


def _observe(tmp_path: Path, scenario: str, rate: int = 50) -> tuple[dict[str, Any], Path]:
    config = SimConfig(scenario=scenario, time_scale=60.0, token=TOKEN, port=0, seed=7)
    with Simulator(config) as sim:
        code = main(
            ["observe", "--api", sim.api_url, "--workload", sim.workload_id,
             "--replace-with", sim.candidate_artifact_id, "--token-env", TOKEN_ENV,
             "--rate", str(rate), "--duration", "12", "--tail", "1.5",
             "--runs-dir", str(tmp_path), "--run-id", scenario, "-q"]
        )  # fmt: skip
        routed = sim.proton_request_counts()
    assert code in (0, 1)
    run_dir = tmp_path / scenario
    summary = json.loads((run_dir / "summary.json").read_text())
    # The platform's counts are in the run directory: the report needs nothing else.
    markers = [e for e in read_events(run_dir) if e.get("status") == PLATFORM_STATS]
    assert {m["proton_id"] for m in markers} == set(routed)
    for m in markers:
        assert m["detail"]["metrics"]["totalRequests"] == routed[m["proton_id"]]
    assert TOKEN not in (run_dir / "events.jsonl").read_text()
    return summary, run_dir


@pytest.fixture()
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@pytest.mark.slow
@pytest.mark.usefixtures("_token")
def test_healthy_counts_agree_within_one_percent(tmp_path: Path) -> None:
    summary, run_dir = _observe(tmp_path, "healthy")
    block = summary["reconciliation"]
    assert block["agrees"] and len(block["protons"]) == 2
    for p in block["protons"]:
        assert p["platform_requests"] > 0 and abs(p["difference_pct"]) <= 1.0
        assert p["platform_errors"] == p["caller_errors"] == 0
    assert "Reconciliation with the platform" in (run_dir / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.usefixtures("_token")
def test_bad_candidate_requests_and_errors_agree(tmp_path: Path) -> None:
    summary, _ = _observe(tmp_path, "bad-candidate", rate=100)
    block = summary["reconciliation"]
    cand = next(p for p in block["protons"] if p["version"] == summary["rollout"]["to_version"])
    assert cand["platform_errors"] == cand["caller_errors"] > 0
    for p in block["protons"]:
        assert p["agrees"] and abs(p["difference_pct"]) <= 1.0


@pytest.mark.slow
@pytest.mark.usefixtures("_token")
def test_drop_inflight_difference_is_answers_never_got(tmp_path: Path) -> None:
    summary, _ = _observe(tmp_path, "drop-inflight")
    block = summary["reconciliation"]
    base = next(p for p in block["protons"] if p["version"] == summary["rollout"]["from_version"])
    cand = next(p for p in block["protons"] if p["version"] == summary["rollout"]["to_version"])
    resets = summary["error_classes"]["reset"]
    assert resets > 0
    # The old proton counted the requests cut at the switch; callers got no answer (and so
    # no version) for them: exactly the difference.
    assert base["difference"] == resets == block["unattributed"]["no_answer"]["reset"]
    assert base["error_difference"] == resets
    assert base["explained"]
    if abs(base["difference_pct"]) > 1.0:
        assert base["cause"].startswith("answers the client never got")
    assert cand["agrees"] and block["total"]["difference"] == 0
