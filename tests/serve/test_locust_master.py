"""``[serve] locust_master``: where scheduled runs with ``expect_workers`` start their Locust
master, one at a time; and a real schedule whose load comes from plain ``locust --worker``
processes connecting over TCP on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from probes.errors import ConfigError
from probes.serve.config import parse_config
from probes.serve.runner import Job, JobResult, RecordingRunner
from tests.helpers import VersionServer
from tests.serve.test_service_e2e import start_cli, wait_for
from tests.test_distributed import free_port, workers

BASE = {"serve": {"runs_dir": "runs"}, "targets": [{"name": "web", "url": "http://127.0.0.1:9/"}]}


def config(tmp_path: Path, **serve: Any) -> Any:
    data = {**BASE, "serve": {**BASE["serve"], **serve}}
    return parse_config(data, base_dir=tmp_path, env={})


def test_locust_master_default_and_value(tmp_path: Path) -> None:
    assert config(tmp_path).serve.locust_master == "127.0.0.1:5557"
    assert config(tmp_path, locust_master="0.0.0.0:6000").serve.locust_master == "0.0.0.0:6000"


@pytest.mark.parametrize("value", ["5557", "host:", "h:70000", ""])
def test_bad_locust_master_names_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"serve\.locust_master"):
        config(tmp_path, locust_master=value)


class BlockingRunner(RecordingRunner):
    """Records who is inside ``_run`` at once; each job waits for its own release."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1:5557")
        self.inside: list[str] = []
        self.most = 0
        self.release: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def _run(self, job: Job, stop: threading.Event) -> JobResult:
        with self.lock:
            self.inside.append(job.run_id)
            self.most = max(self.most, len(self.inside))
        self.release[job.run_id].wait(30)
        with self.lock:
            self.inside.remove(job.run_id)
        return JobResult(job.run_id, None, verdict="pass")


def job(run_id: str, expect: int, tmp_path: Path) -> Job:
    target = config(tmp_path).targets[0]
    return Job(run_id, "load", target, tmp_path, "schedule", 5.0, expect_workers=expect)


def test_runs_with_expect_workers_take_the_master_one_at_a_time(tmp_path: Path) -> None:
    runner = BlockingRunner()
    jobs = [job("a", 2, tmp_path), job("b", 3, tmp_path), job("local", 0, tmp_path)]
    runner.release = {j.run_id: threading.Event() for j in jobs}
    results: dict[str, JobResult] = {}

    def run(one: Job) -> None:
        results[one.run_id] = runner.run(one, threading.Event())

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(runner.inside) == 2, 10)  # one master run + the local run
    assert "local" in runner.inside and len({"a", "b"} & set(runner.inside)) == 1
    first = next(r for r in runner.inside if r != "local")
    runner.release[first].set()
    second = "b" if first == "a" else "a"
    wait_for(lambda: second in runner.inside, 10)
    for event in runner.release.values():
        event.set()
    for thread in threads:
        thread.join(10)
    assert runner.most == 2 and {r.verdict for r in results.values()} == {"pass"}


def test_a_waiting_master_run_ends_at_its_stop(tmp_path: Path) -> None:
    runner = BlockingRunner()
    runner.release = {"a": threading.Event(), "b": threading.Event()}
    first = threading.Thread(target=runner.run, args=(job("a", 1, tmp_path), threading.Event()))
    first.start()
    wait_for(lambda: runner.inside == ["a"], 10)
    stop = threading.Event()
    stop.set()
    assert runner.run(job("b", 1, tmp_path), stop).interrupted == "stop"
    runner.release["a"].set()
    first.join(10)


@pytest.mark.slow
def test_a_schedule_with_expect_workers_runs_on_remote_workers(tmp_path: Path) -> None:
    import os

    from tests.test_distributed import ROOT

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with VersionServer() as server:  # one version: no rollout capture defers the schedule
        cfg = tmp_path / "serve.toml"
        cfg.write_text(
            f'[serve]\nlisten = "127.0.0.1:0"\nruns_dir = "runs"\n'
            f'locust_master = "127.0.0.1:{port}"\n'
            f'[[targets]]\nname = "web"\nurl = "{server.url}"\ncanary_rate = 5\n'
            f'[[schedules]]\nname = "dist"\ntarget = "web"\nkind = "load"\nevery = "5s"\n'
            f"duration_s = 4\nexpect_workers = 2\nargs = {{ users = 4, spawn_rate = 4 }}\n"
        )
        with workers(2, port, tmp_path / "w", env):
            proc, url = start_cli(cfg)
            try:

                def done() -> Any:
                    rows = httpx.get(f"{url}/api/v1/runs", params={"kind": "load"}, timeout=10)
                    return [r for r in rows.json() if r["ended_at"]]

                finished = wait_for(done, 120)
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    run_dir = tmp_path / "runs" / finished[0]["run_id"]
    counts = json.loads((run_dir / "locust.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert counts["requests"] == counts["samples"] == summary["requests"] > 0
    assert (
        len(summary["workers"]) == 2
        and sum(w["rows"] for w in summary["workers"]) == (counts["requests"])
    )
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["settings"]["master_bind"] == f"127.0.0.1:{port}"
    assert manifest["trigger"] == "schedule" and manifest["schedule"] == "dist"
