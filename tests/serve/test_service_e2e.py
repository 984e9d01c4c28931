"""``probes serve`` end to end: the real index, metrics, verdict and HTTP routes, the
simulator and plain test servers on 127.0.0.1.

- an api target on the simulator: a replacement started by someone else is captured with no
  request to the service; its run has the platform's statuses and switchedAt; the verdict is
  ``pending`` before enough samples, then ``pass`` (healthy) or ``fail`` (bad-candidate);
- the service started while a replacement is already under way still captures it;
- SIGTERM with a capture and a scheduled load open: exit 0, both runs reported, no process left;
- SIGKILL, then a restart: the open runs are ``interrupted``, reported, indexed;
- a real ``every`` schedule firing a run of each kind.

These need serve-http's modules (index, metrics, verdict, http) and, for scheduled runs,
``probes.recording``; each test is skipped while its pieces are missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("probes.serve.http")
pytest.importorskip("probes.serve.index")

from probes.records import read_events, read_manifest, read_samples
from probes.run import read_summary
from probes.serve.config import ServeConfig, load_config, parse_config
from probes.serve.service import Service
from probes.sim import SimConfig, Simulator
from probes.workload import WorkloadClient
from tests.helpers import ROOT, VersionServer

pytestmark = pytest.mark.slow

TOKEN = "e2e-sim-token"
TOKEN_ENV = "PROBES_TEST_SIM_TOKEN"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


class Running:
    """A Service with HTTP in a thread of its own (its own event loop)."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.service = Service(cfg)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.service.run())
        except BaseException as exc:  # reported to the test
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        wait_for(lambda: self.service.bound_port and self.service.ready(), 30)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.bound_port}"

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.service.request_stop, "test over")
        self.thread.join(30)
        assert not self.thread.is_alive() and self.error is None, self.error


def sim_config(tmp_path: Path, sim: Simulator, **target: Any) -> ServeConfig:
    entry = {
        "name": "wl", "api": sim.api_url, "workload": sim.workload_id, "token_env": TOKEN_ENV,
        "canary_rate": 20, "capture_rate": 50, "capture_tail_s": 3, **target,
    }  # fmt: skip
    return parse_config(
        {"serve": {"runs_dir": "runs", "listen": "127.0.0.1:0"}, "targets": [entry]},
        tmp_path,
        env={},
    )


def replace_by_someone_else(sim: Simulator, **kw: Any) -> str:
    with WorkloadClient(sim.api_url, token_env=TOKEN_ENV) as client:
        return client.start_replacement(sim.workload_id, sim.candidate_artifact_id, **kw).id


@pytest.mark.parametrize(("scenario", "verdict"), [("healthy", "pass"), ("bad-candidate", "fail")])
def test_api_replacement_by_someone_else_captured(
    tmp_path: Path, scenario: str, verdict: str
) -> None:
    config = SimConfig(scenario=scenario, time_scale=60.0, token=TOKEN, port=0, seed=3)
    with Simulator(config) as sim:
        cfg = sim_config(tmp_path, sim)
        with Running(cfg) as svc:
            assert svc.get("/api/v1/verdict", target="wl")["verdict"] == "pending"
            # baseline evidence for the sequential decision: the canary's rows before the
            # capture (its pre-roll), 600 of them at 20 req/s
            worker = svc.service.workers["wl"]
            wait_for(lambda: len(worker.preroll) >= 600, 60)
            rid = replace_by_someone_else(sim)
            worker = svc.service.workers["wl"]
            wait_for(lambda: worker.capture is not None, 10)
            early = svc.get("/api/v1/verdict", target="wl")
            assert early["verdict"] == "pending"
            status = svc.get("/api/v1/targets/wl")
            assert status["state"] == "capturing" and status["rollout"]["run_id"]
            wait_for(lambda: worker.capture is None and worker.recent, 40)
            final = svc.get("/api/v1/verdict", target="wl")
            run_id = worker.recent[0].run_id
            wait_for(lambda: read_summary(cfg.serve.runs_dir / run_id), 30)

            def indexed() -> Any:
                rows = svc.get("/api/v1/runs", kind="rollout")
                return [r for r in rows if r["run_id"] == run_id and r["verdict"]]

            (row,) = wait_for(indexed, 20)
        labels = dict(sim.labels)
        baseline, candidate = labels[sim.baseline_artifact_id], labels[sim.candidate_artifact_id]
    if verdict == "pass":
        # a healthy candidate never fails; this rollout's window is ~2 s (keepOldVersionMinutes
        # 0 at 60x), a few hundred candidate samples: pass or pending. That it passes while a
        # longer window is open, read as Argo reads it: tests/serve/test_verdict_as_argo.py
        assert final["verdict"] in ("pass", "pending") and final["decision"] != "fail", final
    else:
        assert final["verdict"] == "fail" and final["decision"] == "fail", final
    assert (final["baseline"], final["candidate"]) == (baseline, candidate)
    run_dir = cfg.serve.runs_dir / run_id
    manifest = read_manifest(run_dir)
    assert (manifest["kind"], manifest["trigger"], manifest["target_name"]) == (
        "rollout", "auto", "wl",
    )  # fmt: skip
    assert manifest["platform"]["replacement_id"] == rid
    summary = read_summary(run_dir)
    assert summary is not None
    ro = summary["rollout"]
    assert (ro["from_version"], ro["to_version"], ro["outcome"]) == (
        baseline,
        candidate,
        "completed",
    )
    statuses = [s["status"] for s in ro["platform"]["statuses"]]
    assert statuses[-1] == "completed" and ro["platform"]["switched_at_s"] is not None
    assert summary["verdict"]["result"] == ("pass" if verdict == "pass" else "fail")
    assert (summary["comparison"]["sequential"]["decision"] == "fail") is (verdict == "fail")
    events = read_events(run_dir)
    assert any(e["kind"] == "proton" and e.get("role") == "active" for e in events)
    assert TOKEN not in (run_dir / "events.jsonl").read_text()
    assert TOKEN not in (run_dir / "manifest.json").read_text()
    assert row["pinned"] is (verdict == "fail") and row["ended_at"] is not None


def test_service_started_mid_rollout_captures_it(tmp_path: Path) -> None:
    config = SimConfig(scenario="healthy", time_scale=60.0, token=TOKEN, port=0, seed=4, dwell=3.0)
    with Simulator(config) as sim:
        rid = replace_by_someone_else(sim)
        cfg = sim_config(tmp_path, sim, capture_tail_s=1)
        with Running(cfg) as svc:
            worker = svc.service.workers["wl"]
            wait_for(lambda: worker.capture is not None, 10)
            assert worker.state.replacement_id == rid
            wait_for(lambda: worker.capture is None and worker.recent, 60)
            run_id = worker.recent[0].run_id
            wait_for(lambda: read_summary(cfg.serve.runs_dir / run_id), 30)
    summary = read_summary(cfg.serve.runs_dir / run_id)
    assert summary is not None and summary["rollout"]["outcome"] == "completed"


# --------------------------------------------------------------------------- the CLI process


def start_cli(config: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "probes.cli", "serve", "--config", str(config)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if "listening on " in line:
            url = line.strip().rsplit(" ", 1)[1].rstrip("/")
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc, url
        assert time.monotonic() < deadline, "the service did not start"
    raise AssertionError(f"the service exited early: {proc.wait()}")


def children(pid: int) -> list[int]:
    psutil = pytest.importorskip("psutil")
    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def open_runs(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/runs", params={"limit": 100}, timeout=10)
    return [row for row in r.json() if row["ended_at"] is None]


@pytest.fixture
def mixed_server() -> Iterator[VersionServer]:
    """v2 answers every 20th request: a url target's capture opens and stays open."""
    with VersionServer(v2_share=0.05) as srv:
        yield srv


def write_config(tmp_path: Path, url: str, schedules: str = "") -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(
        f'[serve]\nlisten = "127.0.0.1:0"\nruns_dir = "runs"\n'
        f'[[targets]]\nname = "web"\nurl = "{url}"\ncanary_rate = 20\ncapture_rate = 40\n'
        f"settle_s = 600\n{schedules}"
    )
    return path


def test_sigterm_with_capture_and_scheduled_load_open(tmp_path: Path) -> None:
    schedules = (
        '[[schedules]]\nname = "soak"\ntarget = "web"\nkind = "load"\nevery = "2s"\n'
        "duration_s = 120\nargs = { users = 2 }\n"
    )
    # The load must start before the capture opens (a schedule never starts load on a
    # target while a capture is open there): the server switches once the load run is open.
    with VersionServer() as server:
        _sigterm_with_capture_and_load(tmp_path, server, schedules)


def _sigterm_with_capture_and_load(tmp_path: Path, server: VersionServer, schedules: str) -> None:
    cfg_path = write_config(tmp_path, server.url, schedules)
    proc, url = start_cli(cfg_path)
    try:
        wait_for(lambda: "load" in {r["kind"] for r in open_runs(url)}, 60)
        server.switch_now()
        kinds = wait_for(lambda: {r["kind"] for r in open_runs(url)} >= {"rollout", "load"} and
                         {r["kind"]: r["run_id"] for r in open_runs(url)}, 60)  # fmt: skip
        time.sleep(2.0)  # Locust running
        kids = children(proc.pid)
        assert kids  # the Locust process(es)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0  # a bounded stop: Locust, the capture and the index closed
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = load_config(cfg_path, env={}).serve.runs_dir
    for kind in ("rollout", "load"):
        run_dir = runs / kinds[kind]
        assert read_manifest(run_dir)["ended_ts"] is not None
        assert read_summary(run_dir) is not None, kind
    psutil = pytest.importorskip("psutil")
    assert not [pid for pid in kids if psutil.pid_exists(pid) and
                psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]  # fmt: skip


def rows_on_disk(run_dir: Path) -> int:
    """Rows in a run's shards plus the whole lines of its shards' journals."""
    samples = run_dir / "samples"
    shards = [p for p in samples.glob("*.parquet") if not p.name.startswith(".")]
    rows = len(read_samples(run_dir)) if shards else 0
    for journal in samples.glob("*.journal"):
        try:
            lines = journal.read_bytes().count(b"\n")
        except FileNotFoundError:  # its shard was just written
            continue
        if not journal.with_suffix(".parquet").exists():  # else its rows are in the shard
            rows += lines
    return rows


def left_canary(runs: Path, left: list[str]) -> str:
    (rid,) = [rid for rid in left if read_manifest(runs / rid)["kind"] == "canary"]
    return rid


def test_sigkill_then_restart_marks_open_runs_interrupted(
    tmp_path: Path, mixed_server: VersionServer
) -> None:
    cfg_path = write_config(tmp_path, mixed_server.url)
    proc, url = start_cli(cfg_path)
    try:
        left = wait_for(lambda: {r["kind"] for r in open_runs(url)} >= {"rollout", "canary"} and
                        [r["run_id"] for r in open_runs(url)], 60)  # fmt: skip
        runs = load_config(cfg_path, env={}).serve.runs_dir
        # rows on disk within a second: captures flush every second, canary segments write
        # a shard every 10 s and journal their new rows every second in between
        wait_for(lambda: all(rows_on_disk(runs / rid) for rid in left), 30)
        wait_for(lambda: list((runs / left_canary(runs, left) / "samples").glob("*.journal")), 30)
        before = {rid: rows_on_disk(runs / rid) for rid in left}
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(read_manifest(runs / rid)["ended_ts"] is None for rid in left)
    proc, url = start_cli(cfg_path)
    try:

        def indexed() -> Any:
            rows = {r["run_id"]: r for r in httpx.get(f"{url}/api/v1/runs",
                    params={"limit": 100}, timeout=10).json()}  # fmt: skip
            return all(rows.get(rid, {}).get("state") == "interrupted" for rid in left) and rows

        wait_for(indexed, 60)
        for rid in left:
            manifest = read_manifest(runs / rid)
            assert manifest["ended_ts"] is not None and "crash" in manifest["interrupted"]
            assert read_summary(runs / rid) is not None
            # every row that was on disk (journals included) is in the shards now
            assert len(read_samples(runs / rid)) >= before[rid] > 0
            assert not list((runs / rid / "samples").glob("*.journal"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_every_schedule_fires_each_kind(tmp_path: Path) -> None:
    pytest.importorskip("probes.recording")
    with VersionServer() as srv:
        schedules = "".join(
            f'[[schedules]]\nname = "{kind}-every"\ntarget = "web"\nkind = "{kind}"\n'
            f'every = "5s"\nduration_s = {duration}\nargs = {args}\n'
            for kind, duration, args in (
                ("observe", 2, "{ rate = 5 }"),
                ("load", 3, "{ users = 1 }"),
                (
                    "capacity",
                    6,
                    "{ start_users = 1, step_users = 1, step_seconds = 3, max_users = 2 }",
                ),
            )
        )
        cfg_path = write_config(tmp_path, srv.url, schedules)
        proc, url = start_cli(cfg_path)
        runs = load_config(cfg_path, env={}).serve.runs_dir
        try:

            def done() -> Any:
                rows = httpx.get(f"{url}/api/v1/runs", params={"limit": 100}, timeout=10).json()
                finished = {r["kind"] for r in rows if r["trigger"] == "schedule" and r["ended_at"]}
                return finished >= {"observe", "load", "capacity"} and rows

            rows = wait_for(done, 90)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    for row in rows:
        if row["trigger"] == "schedule" and row["ended_at"]:
            assert row["run_id"] == f"{row['schedule']}-{row['run_id'].rsplit('-', 1)[1]}"
            assert int(row["run_id"].rsplit("-", 1)[1]) % 5 == 0
            assert read_summary(runs / row["run_id"]) is not None
    assert json.loads((runs / rows[0]["run_id"] / "manifest.json").read_text())
