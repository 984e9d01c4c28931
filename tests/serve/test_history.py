"""Each target's history in buckets (``probes.serve.history``), its route, the health at a
glance (``probes.serve.health``), the Run page's file links, and that runs started by a
schedule or the API carry their target."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from probes.serve.config import parse_config
from probes.serve.health import judge, target_item
from probes.serve.history import CURRENT_S, FINE_S, History, parse_minutes
from probes.serve.index import row_from_run_dir
from probes.serve.pages import run_file
from probes.serve.runner import Job, RecordingRunner
from tests.helpers import VersionServer
from tests.serve.test_http import FakeView, get, make_reported_run, run
from tests.serve.test_http import view as view  # the fixture

T0 = 1_800_000_000.0  # a multiple of 60: bucket starts are round


def fed(rows: list[tuple[float, str, bool, float]], target: str = "web") -> History:
    history = History()
    for ts, version, ok, latency in rows:
        history.add(target, ts, version, ok, latency)
    return history


def test_buckets_count_share_and_exact_percentiles_per_bucket() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(200):  # 20 s at 10 req/s: v1 for 10 s, then v2
        version = "v1" if i < 100 else "v2"
        rows.append((T0 + i / 10, version, i % 25 != 0, float(rng.uniform(10, 30))))
    history = fed(rows)
    answer = history.buckets("web", 15, T0 + 25)
    assert answer["bucket_s"] == FINE_S and answer["minutes"] == 15
    buckets = answer["buckets"]
    assert [b["t"] for b in buckets] == [T0, T0 + 5, T0 + 10, T0 + 15]
    assert sum(b["requests"] for b in buckets) == 200
    assert sum(b["errors"] for b in buckets) == 8
    assert buckets[0]["versions"] == {"v1": 1.0} and buckets[-1]["versions"] == {"v2": 1.0}
    # each bucket's p99 is exact over its own successful rows (bucketed by answer time)
    answered = [(ts + lat / 1000, v, ok, lat) for ts, v, ok, lat in rows]
    first = [lat for at, _, ok, lat in answered if ok and T0 <= at < T0 + 5]
    assert buckets[0]["p99_ms"] == pytest.approx(float(np.percentile(first, 99)))
    assert set(buckets[-1]["p99_by_version"]) == {"v2"}
    # a shorter window leaves the older buckets out
    assert [b["t"] for b in history.buckets("web", 1, T0 + 76)["buckets"]] == [T0 + 15]
    assert history.buckets("nobody", 15, T0)["buckets"] == []


def test_streamed_answers_carry_their_ttft_per_bucket_and_version() -> None:
    """A streaming target: each bucket's TTFT p50 (whole and per version) is exact over its
    successful streamed rows; a target that does not stream has none."""
    history = History()
    ttfts = {"v1": [], "v2": []}
    for i in range(100):  # 10 s at 10 req/s, v1 then v2 whose first token is 5x later
        version = "v1" if i < 50 else "v2"
        ttft = (20.0 if version == "v1" else 100.0) + i % 7
        ok = i % 10 != 3
        history.add("llm", T0 + i / 10, version, ok, 200.0, ttft)
        if ok and i < 40:  # the first bucket's rows (answered 200 ms after sending)
            ttfts[version].append(ttft)
    buckets = history.buckets("llm", 15, T0 + 20)["buckets"]
    assert buckets[0]["ttft_p50_ms"] == pytest.approx(float(np.percentile(ttfts["v1"], 50)))
    assert buckets[0]["ttft_p50_by_version"] == {"v1": buckets[0]["ttft_p50_ms"]}
    assert buckets[-1]["ttft_p50_by_version"]["v2"] >= 100.0
    plain = fed([(T0, "v1", True, 10.0)]).buckets("web", 15, T0 + 1)["buckets"][0]
    assert plain["ttft_p50_ms"] is None and plain["ttft_p50_by_version"] == {}


def test_long_windows_use_minute_buckets() -> None:
    history = fed([(T0 + 30 * i, "v1", True, 5.0) for i in range(10)])  # 5 minutes
    answer = history.buckets("web", 120, T0 + 300)
    assert answer["bucket_s"] == 60.0
    assert [b["requests"] for b in answer["buckets"]] == [2, 2, 2, 2, 2]


def test_current_follows_a_switch_within_seconds() -> None:
    rows = [(T0 + i / 10, "v1", True, 5.0) for i in range(600)]  # 60 s of v1
    rows += [(T0 + 60 + i / 10, "v2", True, 5.0) for i in range(30)]  # then 3 s of v2
    history = fed(rows)
    # the 60 s window still has 95 % v1; the last CURRENT_S seconds say v2
    assert history.current("web", T0 + 63) == "v2"
    assert history.current("web", T0 + 63 + CURRENT_S + 1) is None
    mixed = fed([(T0, "unknown", True, 1.0), (T0 + 0.1, "unknown", True, 1.0),
                 (T0 + 0.2, "v3", True, 1.0)])  # fmt: skip
    assert mixed.current("web", T0 + 1) == "v3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, 15), ("", 15), ("1", 1), ("1440", 1440), ("0", "minutes:"), ("1441", "minutes:"),
     ("abc", "minutes:"), ("1.5", "minutes:"), ("-3", "minutes:")],
)  # fmt: skip
def test_parse_minutes(text: str | None, expected: Any) -> None:
    if isinstance(expected, int):
        assert parse_minutes(text) == expected
    else:
        with pytest.raises(ValueError, match=f"^{expected}"):
            parse_minutes(text)


def test_history_route(view: FakeView) -> None:
    view.history = fed([(T0 + i, "v1", True, 5.0) for i in range(10)])  # type: ignore[attr-defined]

    async def go(c: TestClient) -> None:
        status, body, _ = await get(c, "/api/v1/targets/chat/history")
        assert status == 200 and body["minutes"] == 15 and body["target"] == "chat"
        for bad in ("0", "1441", "x"):
            status, body, _ = await get(c, f"/api/v1/targets/chat/history?minutes={bad}")
            assert status == 400 and body["error"].startswith("minutes:"), bad
        status, body, _ = await get(c, "/api/v1/targets/chat/history?hours=1")
        assert status == 400 and body["error"].startswith("hours:")
        status, body, _ = await get(c, "/api/v1/targets/nope/history")
        assert status == 404

    run(view, go)


@pytest.mark.parametrize(
    ("item", "health"),
    [
        ({"requests": 100, "error_rate": 0.0}, "ok"),
        ({"requests": 100, "error_rate": 0.005}, "ok"),
        ({"requests": 100, "error_rate": 0.05}, "degraded"),
        ({"requests": 100, "error_rate": 0.31}, "failing"),
        ({"requests": 3, "error_rate": 1.0}, "failing"),
        ({"requests": 0, "error_rate": None}, "ok"),
        ({"requests": 100, "error_rate": 0.0, "verdict": "fail"}, "degraded"),
        ({"requests": 100, "error_rate": 0.0, "problems": ["recording stopped"]}, "failing"),
    ],
)
def test_health(item: dict[str, Any], health: str) -> None:
    got, problems = judge({"window_s": 60, **item})
    assert got == health
    assert (problems == []) == (health == "ok")


def test_target_item_keeps_what_the_service_says_and_adds_the_rest(view: FakeView) -> None:
    view.history = fed([(T0 + i, "v2", True, 5.0) for i in range(5)], "chat")  # type: ignore[attr-defined]
    view.metrics.verdict("chat", "fail")
    item = target_item(view, "chat", now=T0 + 5)
    assert item["current_version"] == "v2" and item["current_window_s"] == CURRENT_S
    assert item["verdict"] == "fail" and item["health"] == "degraded"
    assert target_item(view, "emb", now=T0 + 5)["verdict"] is None


def test_run_files_stay_inside_the_run(tmp_path: Path) -> None:
    run_dir = make_reported_run(tmp_path, "r1")
    (tmp_path / "secret.txt").write_text("no")
    (run_dir / "link").symlink_to(tmp_path / "secret.txt")
    assert run_file(run_dir, "summary.json") == (run_dir / "summary.json").resolve()
    for bad in ("../secret.txt", "link", "/etc/passwd", "figures", "nope.json"):
        assert run_file(run_dir, bad) is None, bad


def test_run_file_route(view: FakeView) -> None:
    make_reported_run(view.runs_dir, "chat-rollout-7")

    async def go(c: TestClient) -> None:
        resp = await c.get("/runs/chat-rollout-7/files/summary.json")
        assert resp.status == 200 and json.loads(await resp.text())["run_id"]
        assert (await c.get("/runs/chat-rollout-7/files/..%2Findex.sqlite")).status == 404
        assert (await c.get("/runs/chat-rollout-7/files/nope")).status == 404

    run(view, go)


def test_an_open_runs_page_says_it_is_open_not_404(view: FakeView) -> None:
    """Every list links an open run (a canary segment, a capture): its page answers 200 with
    what the index knows and says the report comes when it closes; an unknown run is 404."""
    from probes.run import Run

    run_dir = Run.create(view.runs_dir, "web-canary-1", "canary", target={}, settings={}).path
    view.index.put_run_dir(run_dir)
    view.index.flush(30.0)

    async def go(c: TestClient) -> None:
        resp = await c.get("/runs/web-canary-1")
        page = await resp.text()
        assert resp.status == 200, page
        assert "Open: still recording." in page and "Full report" not in page
        assert (await c.get("/runs/nobody-1")).status == 404

    run(view, go)


def test_a_scheduled_run_carries_its_target(tmp_path: Path) -> None:
    """The real runner (probes.recording), not a fake: the manifest names the target, so
    the index lists the run under it."""
    with VersionServer() as server:
        data = {"serve": {"runs_dir": "runs"}, "targets": [{"name": "web", "url": server.url}]}
        cfg = parse_config(data, tmp_path, env={})
        job = Job(run_id="nightly-1", kind="observe", target=cfg.targets[0],
                  runs_dir=cfg.serve.runs_dir, trigger="schedule", duration_s=1.0,
                  schedule="nightly", args={"rate": 5})  # fmt: skip
        result = RecordingRunner().run(job, threading.Event())
    assert result.failure is None and result.run_dir is not None
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["target_name"] == "web"
    row = row_from_run_dir(result.run_dir)
    assert row is not None and row.target == "web" and row.trigger == "schedule"


def test_a_day_uses_five_minute_buckets() -> None:
    history = fed([(T0 + 60 * i, "v1", True, 5.0) for i in range(30)])  # 30 minutes
    answer = history.buckets("web", 1440, T0 + 1800)
    assert answer["bucket_s"] == 300.0
    assert [b["requests"] for b in answer["buckets"]] == [5, 5, 5, 5, 5, 5]


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000])
def test_bucket_percentiles_are_numpys(n: int) -> None:
    from probes.serve.history import _pct

    values = sorted(np.random.default_rng(n).lognormal(3, 1, n).tolist())
    for q in (50, 99):
        assert _pct(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
