"""The service on a streaming target: a canary whose ``body_file`` asks for ``"stream": true``
records TTFT per row, its canary segments' summaries carry ``stream`` blocks, and the metrics
get each answer's TTFT (``proton_probe_ttft_seconds``). The target is the simulator's proton
app in its own process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.records import read_samples
from probes.run import read_summary
from probes.serve.config import parse_config
from probes.serve.service import Service
from probes.sim.protons import standalone
from tests.serve.test_service import config, run_service, runs_of, wait_until
from tests.serve.test_service_e2e import Running
from tests.serve.test_web import BROWSER_ARGS, CHROMIUM
from tests.serve.test_web_operator import _chromium

pytestmark = pytest.mark.slow

FIRST_MS = 40.0


@pytest.fixture()
def proton() -> Iterator[str]:
    env = {"SIM_VERSION": "m:3", "SIM_FIRST_TOKEN_MS": str(FIRST_MS),
           "SIM_INTER_TOKEN_MS": "2", "SIM_TOKENS": "4"}  # fmt: skip
    with standalone(env) as url:
        yield url


def test_a_streaming_targets_canary_carries_ttft(tmp_path: Path, proton: str) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"stream": True, "messages": [{"role": "user", "content": "x"}]}))
    target = {"name": "llm", "url": proton, "path": "/v1/chat/completions", "method": "POST",
              "body_file": str(body), "canary_rate": 10}  # fmt: skip
    cfg = config(tmp_path, [target], serve={"segment_s": 2})

    seen: dict[str, object] = {}

    async def wait(svc: Service) -> None:
        def reported() -> bool:
            return any(read_summary(p) for p in runs_of(cfg.serve.runs_dir, "canary"))

        await wait_until(reported, 20)
        # the live view and the history carry the streamed answers' TTFT
        seen["status"] = svc.target_status("llm")
        seen["history"] = svc.history.buckets("llm", 15, time.time())

    svc = run_service(cfg, wait)
    segments = [p for p in runs_of(cfg.serve.runs_dir, "canary") if read_summary(p)]
    summary = read_summary(segments[0])
    assert summary is not None
    stream = summary["versions"]["m:3"]["stream"]
    assert stream["requests"] == summary["requests"] > 0 and stream["aborted"] == 0
    assert stream["ttft_ms"]["p50"] >= FIRST_MS and stream["tokens"]["max"] == 4
    rows = read_samples(segments[0])
    assert (rows["ttft_ms"] >= FIRST_MS).all() and set(rows["tokens"]) == {4}
    status = seen["status"]
    assert isinstance(status, dict) and status["ttft_p50_ms"] >= FIRST_MS
    assert status["ttft_p99_ms"] >= status["ttft_p50_ms"]
    history = seen["history"]
    assert isinstance(history, dict)
    by_version = [b["ttft_p50_by_version"] for b in history["buckets"] if b["requests"]]
    assert by_version and all(b["m:3"] >= FIRST_MS for b in by_version)
    # Every request's metrics call carried its TTFT (seconds).
    calls = svc.metrics.named("request")
    assert calls and all(args[5] is not None and args[5] >= FIRST_MS / 1000 for args in calls)


def test_a_streaming_targets_page_draws_its_ttft(tmp_path: Path, proton: str) -> None:
    """The target page in Chromium: a streaming target's live charts add the time to first
    token per version (hidden for a target whose answers do not stream)."""
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"stream": True, "messages": [{"role": "user", "content": "x"}]}))
    target = {"name": "llm", "url": proton, "path": "/v1/chat/completions", "method": "POST",
              "body_file": str(body), "canary_rate": 10}  # fmt: skip
    cfg = parse_config(
        {"serve": {"runs_dir": "runs", "listen": "127.0.0.1:0"}, "targets": [target]},
        tmp_path, env={},
    )  # fmt: skip
    shots = Path(os.environ.get("PROBES_SHOTS_DIR") or tmp_path)
    with Running(cfg) as svc, _chromium() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(svc.url + "/targets/llm", timeout=20_000)
            line = "figure[data-only=ttft]:not([hidden]) svg[data-chart=ttft] polyline"
            page.wait_for_selector(line, timeout=30_000)
            assert page.text_content(f"{line} >> title") == "TTFT p50 m:3"
            legend = page.inner_text("[data-legend=ttft]")
            assert "TTFT p50 m:3" in legend
            page.screenshot(path=str(shots / "target-stream-1280.png"), full_page=True)
        finally:
            browser.close()
