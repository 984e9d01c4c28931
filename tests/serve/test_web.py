"""The web UI's pages rendered from their JSON twins (fixture JSON and a real summary.json),
and, with Chromium, the live split at 390 px against a test server whose answer changes."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from probes.records import Sample, ShardWriter
from probes.run import Run
from probes.serve.ui import PAGES, STATIC_DIR, chart, color, render, rollout_item, split
from reports import make_report
from reports.trends import trends

NOW = 1_764_651_600.0  # 2025-12-02T05:00:00Z


def target(name: str = "chat", versions: dict[str, float] | None = None, **kw: Any) -> dict:
    return {
        "name": name,
        "url": "https://host/api/v2/endpoints/workloads/WL/",
        "state": "capturing",
        "current_version": "v1",
        "versions": {"v1": 0.75, "v2": 0.25} if versions is None else versions,
        "window_s": 60,
        "requests": 120,
        "error_rate": 0.0125,
        "p50_ms": 12.5,
        "p99_ms": 80.0,
        "rollout": {"run_id": "chat-rollout-1", "from_version": "v1", "to_version": "v2",
                    "started_at": "2025-12-02T04:59:00Z", "status": "open"},
        **kw,
    }  # fmt: skip


def run_item(run_id: str, **kw: Any) -> dict:
    return {
        "run_id": run_id, "target": "chat", "kind": "rollout", "trigger": "auto",
        "schedule": None, "started_at": "2025-12-02T04:59:00.000Z", "ended_at": None,
        "requests": 1200, "error_rate": 0.002, "verdict": None, "from_version": "v1",
        "to_version": "v2", "pinned": False, **kw,
    }  # fmt: skip


def capacity_summaries() -> list[dict]:
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(300, 6, 30), rng.normal(265, 5, 8)])
    out = []
    for i, v in enumerate(values):
        started = datetime.fromtimestamp(NOW - (len(values) - i) * 86400, UTC).isoformat()
        cap = {"max_rps_within_slo": float(v), "knee_rps": None, "steps": []}
        out.append({"run_id": f"nightly-{i:02d}", "kind": "capacity", "started_at": started,
                    "capacity": cap})  # fmt: skip
    return out


def no_external_resources(page: str) -> None:
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "width=device-width" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "external resource"
    # the stylesheet is inline; the one link is an empty icon, so a browser does not ask for
    # /favicon.ico (a 401 before login, a 404 after)
    assert re.findall(r"<link[^>]*>", page) == ['<link rel="icon" href="data:,">']


def test_targets_page_shows_split_state_numbers_and_rollout() -> None:
    page = render("targets", [target(), target("other", versions={}, rollout=None, state="idle")],
                  now=NOW)  # fmt: skip
    no_external_resources(page)
    assert 'href="/targets/chat"' in page and 'href="/targets/other"' in page
    assert f'style="width:75.0%;background:{color("v1")}"' in page
    assert f'style="width:25.0%;background:{color("v2")}"' in page
    assert "badge state-capturing" in page and "badge state-idle" in page
    assert 'data-live="p99_ms" data-kind="ms">80.0 ms<' in page
    assert 'data-live="error_rate" data-kind="pct">1.25%<' in page
    assert '<a href="/runs/chat-rollout-1">v1 → v2</a>' in page
    assert "no answers in the window" in page and "No rollout captured yet." in page
    assert 'src="/static/live.js"' in page and 'href="/api/v1/targets">JSON<' in page
    assert "Rendered 2025-12-02 05:00:00Z" in page


def test_everything_is_escaped_and_links_are_quoted() -> None:
    evil = target("a<b", versions={"<script>x</script>": 1.0}, url='"><img src=x>')
    page = render("targets", [evil], now=NOW, base="/ui/")
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<img src=x>" not in page
    assert 'href="/ui/targets/a%3Cb"' in page and 'src="/ui/static/live.js"' in page


def test_target_page_with_schedules_recent_runs_and_trends() -> None:
    data = target(
        recent_runs=[run_item("chat-rollout-1"), run_item("nightly-37", kind="capacity",
                     trigger="schedule", schedule="nightly", ended_at="2025-12-02T02:10:00Z",
                     verdict="pass", from_version=None, to_version=None, pinned=True)],
        schedules=[{"name": "nightly", "kind": "capacity", "cron": "0 2 * * *", "every": None,
                    "next_fire_at": "2025-12-03T02:00:00Z", "last_run_id": "nightly-37",
                    "last_result": "pass", "missed": 1}],
        trends=trends(capacity_summaries()),
    )  # fmt: skip
    page = render("target", data, now=NOW)
    no_external_resources(page)
    assert "<h1>chat " in page and 'data-live-one="/api/v1/targets/chat"' in page
    assert "<code>0 2 * * *</code>" in page and "2025-12-03 02:00:00Z" in page
    assert (
        'href="/runs/nightly-37">nightly-37</a> <span class="badge pinned"' in page
        and "badge open" in page
    )
    assert page.count('class="cp regression"') == 1  # the drop from 300 to 265 req/s
    assert 'Regression at run <a href="/runs/nightly-30">nightly-30</a>' in page
    assert "<noscript>" in page


def test_runs_page_filters_and_pager() -> None:
    runs = [run_item(f"r{i}") for i in range(3)]
    page = render("runs", runs, query={"kind": "rollout", "limit": "3", "offset": "3"}, now=NOW)
    no_external_resources(page)
    assert "<option selected>rollout</option>" in page
    assert 'href="/runs?kind=rollout&amp;limit=3&amp;offset=0">← newer' in page
    assert 'href="/runs?kind=rollout&amp;limit=3&amp;offset=6">older →' in page
    assert "Runs 4–6, newest first." in page
    assert 'href="/api/v1/runs?kind=rollout&amp;limit=3&amp;offset=3">JSON' in page
    last = render("runs", runs[:1], query={"limit": "3"}, now=NOW)
    assert "older →" not in last and "← newer" not in last
    assert "no runs" in render("runs", [], now=NOW)


def real_summary(tmp_path: Path) -> dict:
    """make_report over a synthetic rollout run: v1, then v2 (slower), every 10th v2 errors."""
    start = NOW - 120
    run = Run.create(tmp_path, "chat-rollout-1", "rollout", target={"url": "http://x/"},
                     settings={}, started_at=start, trigger="auto")  # fmt: skip
    with ShardWriter(run.path, "probe", background=False) as writer:
        for i in range(1200):
            v = "v1" if i < 600 else "v2"
            bad = v == "v2" and i % 10 == 0
            t, latency = start + i * 0.1, 20.0 + (i % 7) + (15 if v == "v2" else 0)
            writer.add(Sample(t, t, latency, "probe", "w", "GET", "/", 503 if bad else 200,
                              "http_5xx" if bad else None, v, "header", 10, None))  # fmt: skip
    run.finish(ended_at=start + 121)
    return make_report(run.path, figures=False)


def test_run_page_from_a_real_summary(tmp_path: Path) -> None:
    summary = real_summary(tmp_path)
    row = run_item("chat-rollout-1", ended_at=summary["ended_at"], verdict="fail")
    page = render("run", json.loads(json.dumps(summary)), extra={"row": row,
                  "files": ["manifest.json", "summary.json", "report.html"]}, now=NOW)  # fmt: skip
    no_external_resources(page)
    assert '<h1>Run chat-rollout-1 <span class="badge fail">fail</span>' in page
    assert 'href="/api/v1/runs/chat-rollout-1/report">Full report' in page
    # why: the guardrail that failed it, the decision, when, on how many samples, and each
    # guardrail's bounds and margin
    q = summary["comparison"]["sequential"]
    beyond = [g["metric"] for g in q["guardrails"] if g["at_decision"]["state"] == "beyond"]
    assert beyond and f"comparison.sequential.{beyond[0]}" in page and "error_rate" in page
    assert q["decision"] == "fail" and f"at {q['decided_at_s']:g} s" in page.replace(",", "")
    assert "<td>latency_p50_ratio</td><td>≤ 1.1 or +5 ms</td>" in page
    assert "<dt>versions</dt><dd>v1 → v2 (inferred)</dd>" in page
    link = '<a href="/runs/chat-rollout-1/files/report.html"><code>report.html</code></a>'
    assert f"<li>{link}</li>" in page
    assert 'href="/targets/chat">chat</a> · auto' in page
    v2 = summary["versions"]["v2"]
    assert f"{100 * v2['error_rate']:.3g}%" in page


def test_rollouts_page(tmp_path: Path) -> None:
    summary = real_summary(tmp_path)
    item = rollout_item(run_item("chat-rollout-1", verdict="fail", pinned=True), summary)
    assert item["rollout"]["flips"] == summary["rollout"]["flips"]
    page = render("rollouts", [item], now=NOW)
    no_external_resources(page)
    assert (
        'href="/runs/chat-rollout-1">chat-rollout-1</a> <span class="badge pinned"' in page
        and "badge fail" in page
    )
    assert f">{summary['rollout']['errors_during_switch']} (" in page
    assert "No rollout captured yet." in render("rollouts", [], now=NOW)


def test_trends_page_marks_regressions() -> None:
    series = trends(capacity_summaries())
    page = render("trends", {"scope": "schedule", "name": "nightly", "series": series}, now=NOW)
    no_external_resources(page)
    assert "Regressions: max_rps_within_slo at run nightly-30" in page
    assert '<svg class="chart"' in page and "<details>" in page
    flat = render("trends", {"scope": "target", "name": "chat", "series": []}, now=NOW)
    assert "No run with these numbers yet." in flat and "No regression detected." in flat


def test_pure_helpers() -> None:
    assert [s["label"] for s in split({"b": 0.2, "a": 0.8, "c": 0})] == ["a", "b"]
    assert split(None) == []
    points = [{"run_id": "a", "ts": 0, "value": 1.0}, {"run_id": "b", "ts": 1, "value": 3.0}]
    c = chart({"points": points, "change_points": [{"index": 1, "regression": True}]})
    assert c["polyline"] == "44.0,142.0 592.0,10.0" and c["cps"][0]["x"] == 318.0
    with pytest.raises(ValueError, match="unknown page"):
        render("nope", {})
    assert set(PAGES) == {"targets", "target", "runs", "run", "rollouts", "trends"}
    assert (STATIC_DIR / "live.js").is_file() and (STATIC_DIR / "web.css").is_file()


def test_missing_keys_render_as_dashes() -> None:
    page = render("targets", [{"name": "bare"}], now=NOW)
    assert 'data-live="p99_ms" data-kind="ms">—<' in page


# -- in a browser ------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


class UiServer:
    """Serves rendered pages, the vendored static files and a targets JSON twin whose split
    the test switches (a stand-in for the service's HTTP layer, which mounts the same pages)."""

    def __init__(self) -> None:
        self.targets = [target(versions={"v1": 1.0}, rollout=None, state="idle")]
        self.lock = threading.Lock()
        runs = [run_item(f"chat-rollout-{i}-with-a-long-run-id") for i in range(30)]
        series = trends(capacity_summaries())
        self.pages = {
            "/runs": render("runs", runs, query={"kind": "rollout"}),
            "/rollouts": render("rollouts", [rollout_item(r, None) for r in runs]),
            "/targets/chat": render("target", target(recent_runs=runs, trends=series)),
            "/trends": render("trends", {"scope": "schedule", "name": "nightly", "series": series}),
        }
        ui = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with ui.lock:
                    data = json.loads(json.dumps(ui.targets))
                if self.path == "/api/v1/targets":
                    self.answer(json.dumps(data).encode(), "application/json")
                elif self.path.startswith("/static/"):
                    name = self.path.removeprefix("/static/")
                    self.answer((STATIC_DIR / name).read_bytes(), "text/javascript")
                elif self.path == "/":
                    self.answer(render("targets", data).encode(), "text/html; charset=utf-8")
                elif self.path in ui.pages:
                    self.answer(ui.pages[self.path].encode(), "text/html; charset=utf-8")
                else:
                    self.send_error(404)

            def answer(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def switch(self, versions: dict[str, float]) -> None:
        with self.lock:
            self.targets[0]["versions"] = versions
            self.targets[0]["current_version"] = max(versions, key=lambda k: versions[k])


@pytest.fixture
def ui_server() -> Iterator[UiServer]:
    server = UiServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.mark.slow
def test_targets_page_live_split_at_390_px(ui_server: UiServer, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            raise AssertionError("Chromium missing on CI: .ci/run installs the chromium package")
        pytest.skip("Chromium is not installed (apt-get install -y chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(ui_server.url + "/", timeout=20_000)
            bar = page.locator("[data-target=chat] .split")
            assert bar.get_attribute("aria-label") == "traffic split: v1 100%"
            legend = page.locator("[data-target=chat] .legend").inner_text()
            assert legend.strip() == "v1 100%"
            ui_server.switch({"v1": 0.4, "v2": 0.6})
            page.wait_for_function(
                "document.querySelector('[data-target=chat] .split')"
                ".getAttribute('aria-label') === 'traffic split: v2 60%, v1 40%'",
                timeout=10_000,
            )
            assert page.locator("[data-live=current_version]").inner_text() == "v2"
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            page.screenshot(path=str(tmp_path / "targets-390.png"), full_page=True)
            assert widths[0] <= widths[1] == 390, widths  # no horizontal scroll
            for path in ui_server.pages:  # wide tables scroll inside their box, not the page
                page.goto(ui_server.url + path, timeout=20_000)
                widths = page.evaluate(
                    "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
                )
                assert widths[0] <= widths[1] == 390, (path, widths)
            page.goto(ui_server.url + "/targets/chat", timeout=20_000)
            page.screenshot(path=str(tmp_path / "target-390.png"), full_page=True)
        finally:
            browser.close()
