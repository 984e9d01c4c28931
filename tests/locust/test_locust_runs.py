"""Locust itself, headless and with the web UI: every request Locust counts is a sample.

Real Locust processes against the shared version server on 127.0.0.1; assertions compare
three independent counts: Locust's own (CSV), ours (Parquet rows) and the server's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from probes.recording.locustproc import master_port_args
from tests.helpers import VersionServer
from tests.locust.conftest import (
    ROOT,
    counts,
    json_total,
    locust_cmd,
    locust_samples,
    only_run,
    run_locust,
)

pytestmark = pytest.mark.slow


def answered(server: VersionServer) -> dict[str, int]:
    """Requests the server answered per version (any status)."""
    return {v: sum(s.values()) for v, s in server.stats()["answered"].items()}


@pytest.mark.parametrize("processes", [0, 2], ids=["one-process", "two-workers"])
def test_headless_counts_agree_exactly(tmp_path: Path, processes: int) -> None:
    with VersionServer(v2_share=0.3, error_share={"v2": 0.1}) as server:
        extra = ["--processes", str(processes), *master_port_args()] if processes else []
        out = run_locust(
            server.url, "--headless", "-u", "4", "-r", "4", "-t", "3s", "--only-summary",
            "--json-file", str(tmp_path / "stats"), "--probes-runs-dir", str(tmp_path / "runs"),
            *extra, cwd=tmp_path,
        )  # fmt: skip
        served = answered(server)
    run_dir = only_run(tmp_path / "runs")
    samples = locust_samples(run_dir)
    locust_requests, locust_failures = json_total(tmp_path / "stats")
    assert locust_requests > 100
    assert len(samples) == locust_requests == counts(run_dir)["requests"]
    assert int(samples["error"].notna().sum()) == locust_failures
    ours = samples["version"].value_counts().to_dict()
    # A user stopped mid-request was answered, but counted neither by Locust nor by us.
    assert set(ours) == set(served) == {"v1", "v2"}
    assert all(ours[v] <= served[v] for v in served)
    assert sum(served.values()) - len(samples) <= 4
    assert set(samples["error"].dropna()) == {"http_5xx"}
    assert set(samples["status"]) == {200, 500}
    assert set(samples["tag_source"]) == {"header"}
    # one caller stream per user (process/user), the users spread over the processes
    callers = samples["worker"].astype(str)
    assert callers.nunique() == 4
    assert callers.str.rsplit("/", n=1).str[0].nunique() == max(processes, 1)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "load" and manifest["ended_at"] is not None
    # the run ends at its last answer, not when Locust quit; the output says where it went
    last = float((samples["ts"] + samples["latency_ms"] / 1000).max())
    assert manifest["ended_ts"] == pytest.approx(last, abs=1e-6)
    assert f"probes report {run_dir}" in out


def test_master_and_workers_started_separately(tmp_path: Path) -> None:
    """``--master`` and two ``--worker`` processes: the same exact counts."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with VersionServer(v2_share=0.5) as server:
        workers = [
            subprocess.Popen(
                locust_cmd(server.url, "--worker", "--master-port", str(port)),
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            run_locust(
                server.url, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                str(port), "--expect-workers", "2", "--headless", "-u", "4", "-r", "4", "-t",
                "3s", "--only-summary", "--json-file", str(tmp_path / "stats"),
                "--probes-runs-dir", str(tmp_path / "runs"), cwd=tmp_path,
            )  # fmt: skip
            for worker in workers:  # the master told them to quit
                assert worker.wait(timeout=30) == 0
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
    run_dir = only_run(tmp_path / "runs")
    samples = locust_samples(run_dir)
    locust_requests, _ = json_total(tmp_path / "stats")
    assert len(samples) == locust_requests == counts(run_dir)["requests"] > 100
    assert samples["worker"].astype(str).str.rsplit("/", n=1).str[0].nunique() == 2


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # 127.0.0.1 only
        return json.loads(resp.read())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def check_tab_in_chromium(base: str) -> list[str]:
    """Open the Versions tab in headless Chromium; the texts of its table's cells."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/?tab=versions", timeout=20_000)
            page.get_by_role("tab", name="Versions").wait_for(timeout=20_000)
            page.get_by_role("columnheader", name="Traffic share").wait_for(timeout=20_000)
            page.get_by_role("cell", name="v2", exact=True).wait_for(timeout=20_000)
            return [t.strip() for t in page.get_by_role("cell").all_inner_texts()]
        finally:
            browser.close()


def test_versions_endpoint_tab_and_sigterm(tmp_path: Path) -> None:
    """The Versions JSON over HTTP, the rendered tab in Chromium, then SIGTERM loses nothing."""
    browser_ok = CHROMIUM.exists()
    if not browser_ok and os.environ.get("CI") != "true":
        pytest.skip("Chromium is not installed (apt-get install -y chromium); CI installs it")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with VersionServer(v2_share=0.25) as server:
        cmd = locust_cmd(
            server.url, "--autostart", "-u", "2", "-r", "2", "-t", "60s", "--web-host",
            "127.0.0.1", "--web-port", str(port), "--probes-runs-dir", str(tmp_path / "runs"),
        )  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = (tmp_path / "locust.log").open("w")
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            data = wait_for(
                lambda: (d := get_json(f"{base}/probes/versions"))["samples"] > 200 and d
            )
            window = data["window"]
            shares = {v["version"]: v["share"] for v in window["versions"]}
            assert set(shares) == {"v1", "v2"}
            assert shares["v2"] == pytest.approx(0.25, abs=0.02)  # every 4th request
            assert [r["version"] for r in data["rows"]] == ["v1", "v2"]
            assert window["window_s"] == 10.0 and data["rollout"] is None
            stats = get_json(f"{base}/stats/requests")
            assert stats["extended_stats"][0]["key"] == "versions"
            assert {r["version"] for r in stats["extended_stats"][0]["data"]} == {"v1", "v2"}
            assert browser_ok, "Chromium missing on CI: .ci/run installs the chromium package"
            cells = check_tab_in_chromium(base)
            assert "v1" in cells and "v2" in cells
            assert any(c.endswith("%") for c in cells)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            log.close()
        served = answered(server)
    run_dir = only_run(tmp_path / "runs")
    samples = locust_samples(run_dir)
    assert len(samples) == counts(run_dir)["requests"]
    assert 0 <= sum(served.values()) - len(samples) <= 2  # users stopped mid-request


def test_web_ui_run_ends_at_its_last_answer_not_at_quit(tmp_path: Path) -> None:
    """With the web UI, a test stopped by its time limit idles until Locust quits: that idle
    time is no part of the run (duration_s, req/s), which ends at its last answer."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with VersionServer() as server:
        cmd = locust_cmd(
            server.url, "--autostart", "-u", "2", "-r", "2", "-t", "2s", "--web-host",
            "127.0.0.1", "--web-port", str(port), "--probes-runs-dir", str(tmp_path / "runs"),
        )  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = (tmp_path / "locust.log").open("w")
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda: get_json(f"{base}/stats/requests")["state"] == "stopped")
            stopped_at = time.time()
            # idle with the UI open, bounded: until the clock is 3 s past the stop
            wait_for(lambda: time.time() > stopped_at + 3)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            log.close()
    run_dir = only_run(tmp_path / "runs")
    samples = locust_samples(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    last = float((samples["ts"] + samples["latency_ms"] / 1000).max())
    assert manifest["ended_ts"] == pytest.approx(last, abs=1e-6)
    assert manifest["ended_ts"] < stopped_at  # none of the idle time after the stop
    assert f"probes report {run_dir}" in (tmp_path / "locust.log").read_text()
