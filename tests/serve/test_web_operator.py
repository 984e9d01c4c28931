"""The operator's view in Debian's Chromium against a real ``probes serve`` with auth on:
log in and out; a version at 100 % reads 100 %; a failing target is red on the overview; a
switch shows in "now" within seconds and in the history chart; a scheduled run is listed
under its target and its Run page shows its figure; no page scrolls sideways at 390 px.

Screenshots go to ``$PROBES_SHOTS_DIR`` (default: the test's tmp_path), to be looked at.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from probes.serve.config import parse_config
from tests.helpers import VersionServer
from tests.serve.test_service_e2e import Running, wait_for
from tests.serve.test_web import BROWSER_ARGS, CHROMIUM

SCROLL = "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
FAIL_RGB = "rgb(207, 34, 46)"  # --fail
PASS_RGB = "rgb(26, 127, 55)"  # --pass


def _chromium() -> Any:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            raise AssertionError("Chromium missing on CI: .ci/run installs the chromium package")
        pytest.skip("Chromium is not installed (apt-get install -y chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    return sync_playwright()


@pytest.fixture
def servers() -> Iterator[dict[str, VersionServer]]:
    switch_at = time.time() + 20.0
    with ExitStack() as stack:
        yield {
            "web": stack.enter_context(VersionServer(switch_at=switch_at)),
            "steady": stack.enter_context(VersionServer()),
            "broken": stack.enter_context(VersionServer(error_share={"v1": 0.31})),
        }


def _config(tmp_path: Path, servers: dict[str, VersionServer], token: str) -> Any:
    data = {
        "serve": {"runs_dir": "runs", "listen": "127.0.0.1:0", "auth_token_env": "PP_TOKEN"},
        "targets": [
            {"name": "web", "url": servers["web"].url, "canary_rate": 10, "capture_rate": 20,
             "settle_s": 2, "capture_tail_s": 1},
            {"name": "steady", "url": servers["steady"].url, "canary_rate": 5},
            {"name": "broken", "url": servers["broken"].url, "canary_rate": 10},
        ],
        "schedules": [
            {"name": "quick", "target": "steady", "kind": "observe", "every": "20s",
             "duration_s": 3, "args": {"rate": 10}},
        ],
    }  # fmt: skip
    return parse_config(data, tmp_path, env={"PP_TOKEN": token})


def _no_sideways_scroll(page: Any, path: str) -> None:
    widths = page.evaluate(SCROLL)
    assert widths[0] <= widths[1] == 390, (path, widths)


def _style(page: Any, selector: str, prop: str) -> str:
    return str(page.eval_on_selector(selector, f"e => getComputedStyle(e).{prop}"))


@pytest.mark.slow
def test_the_operator_view_in_a_browser(tmp_path: Path, servers: dict[str, VersionServer]) -> None:
    shots = Path(os.environ.get("PROBES_SHOTS_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    switch_at = servers["web"].config.switch_at
    assert switch_at is not None
    with Running(_config(tmp_path, servers, token)) as svc, _chromium() as pw:
        auth = {"Authorization": f"Bearer {token}"}
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            # -- the door: a browser is sent to the form, and back where it wanted to go
            page.goto(svc.url + "/targets/steady", timeout=20_000)
            assert page.url.startswith(svc.url + "/login?next=")
            _no_sideways_scroll(page, "/login")
            page.fill("input[name=token]", token + "x")
            page.click("button[type=submit]")
            assert "not the service" in page.inner_text("main")
            page.fill("input[name=token]", token)
            page.screenshot(path=str(shots / "login-390.png"), full_page=True)
            page.click("button[type=submit]")
            page.wait_for_url(svc.url + "/targets/steady", timeout=20_000)
            assert page.locator("form.logout button").inner_text() == "Log out"

            # -- a version at 100 % reads 100 % (the server's page and live.js alike)
            page.goto(svc.url + "/", timeout=20_000)
            assert page.evaluate("window.protonProbe.fmt(1, 'pct')") == "100%"
            page.wait_for_function(
                "document.querySelector('[data-target=steady] .legend').innerText.trim()"
                " === 'v1 100%'",
                timeout=30_000,
            )
            # -- a failing target is red; a healthy one green
            page.wait_for_selector("[data-target=broken].card.health-failing", timeout=30_000)
            assert page.inner_text("[data-target=broken] [data-live=health]").strip() == "FAILING"
            assert _style(
                page, "[data-target=broken] .health-failing.badge", "backgroundColor"
            ) == (FAIL_RGB)
            assert _style(page, "[data-target=broken]", "borderLeftColor") == FAIL_RGB
            assert "failed over the last" in page.inner_text("[data-target=broken] .problems")
            page.wait_for_selector("[data-target=steady].card.health-ok", timeout=30_000)
            assert _style(page, "[data-target=steady]", "borderLeftColor") == PASS_RGB
            assert page.inner_text("[data-target=steady] [data-live=state]").strip() in (
                "WATCHING",
                "RUNNING A SCHEDULE",
            )
            _no_sideways_scroll(page, "/")
            page.screenshot(path=str(shots / "targets-390.png"), full_page=True)

            # -- the switch: "now" follows within seconds; the history chart shows it
            page.goto(svc.url + "/targets/web", timeout=20_000)
            page.wait_for_selector("[data-history]:not([hidden])", timeout=20_000)
            wait_for(lambda: time.time() >= switch_at, 40)
            page.wait_for_function(
                "document.querySelector('[data-live=current_version]').innerText === 'v2'",
                timeout=30_000,
            )
            lag = time.time() - switch_at
            print(f"'now' read v2 {lag:.1f} s after the switch (a 2 s refresh, a 5 s window)")
            page.wait_for_function(
                "Array.from(document.querySelectorAll('svg[data-chart=share] text'))"
                ".some(t => t.textContent === 'switch to v2')",
                timeout=30_000,
            )
            lines = page.locator("svg[data-chart=share] polyline").count()
            p99_lines = page.locator("svg[data-chart=latency] polyline").count()
            assert lines == 2 and p99_lines == 3, (lines, p99_lines)  # v1, v2; p50 + p99 each
            _no_sideways_scroll(page, "/targets/web")
            page.screenshot(path=str(shots / "target-web-390.png"), full_page=True)

            # -- a scheduled run is listed under its target, and its Run page has a figure
            def scheduled() -> Any:
                rows = httpx.get(
                    f"{svc.url}/api/v1/runs",
                    params={"target": "steady", "trigger": "schedule"},
                    headers=auth,
                    timeout=10,
                ).json()
                done = [r for r in rows if r["ended_at"] and r["verdict"]]
                return done[0]["run_id"] if done else None

            run_id = wait_for(scheduled, 90)
            page.goto(svc.url + "/targets/steady", timeout=20_000)
            assert page.locator(f"a:text-is('{run_id}')").count() >= 1
            page.goto(svc.url + "/runs?target=steady", timeout=20_000)
            assert page.locator(f"a:text-is('{run_id}')").count() == 1
            page.goto(f"{svc.url}/runs/{run_id}", timeout=20_000)
            img = page.locator("figure.fig img").first
            img.wait_for(timeout=20_000)
            page.wait_for_function(
                "Array.from(document.querySelectorAll('figure.fig img'))"
                ".some(i => i.complete && i.naturalWidth > 0)",
                timeout=20_000,
            )
            assert page.locator("ul.files a").count() >= 3
            _no_sideways_scroll(page, f"/runs/{run_id}")
            page.screenshot(path=str(shots / "run-390.png"), full_page=True)
            # its report: figures at a legible size on a phone, swiped inside their box
            page.goto(f"{svc.url}/runs/{run_id}/files/report.html", timeout=20_000)
            _no_sideways_scroll(page, "report.html")
            width = page.eval_on_selector("figure img", "i => i.getBoundingClientRect().width")
            assert width > 390, width
            page.screenshot(path=str(shots / "report-390.png"), full_page=True)
            for path in ("/targets/broken", "/runs", "/rollouts", "/trends?target=steady"):
                page.goto(svc.url + path, timeout=20_000)
                _no_sideways_scroll(page, path)

            # -- logout: the session ends; pages send the browser to the form again
            page.goto(svc.url + "/", timeout=20_000)
            page.click("form.logout button")
            page.wait_for_url(svc.url + "/login", timeout=20_000)
            page.goto(svc.url + "/runs", timeout=20_000)
            assert page.url.startswith(svc.url + "/login?next=")
        finally:
            browser.close()
