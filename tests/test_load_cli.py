"""``probes load``: flags, the Locust command line, SIGTERM, a replacement on the simulator.

Locust runs as a subprocess here (this process never imports it).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from probes.cli import main
from probes.locustglue import BODY_ENV, HEADERS_ENV
from probes.recording import LoadSettings
from probes.recording.locustproc import locust_command, locust_env
from probes.records import read_events, read_samples
from probes.settings import build_request
from probes.shapes import parse_shape
from tests.helpers import VersionServer

PROBES = str(Path(sys.executable).with_name("probes"))


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--users", "0"], "--users"),
        (["--spawn-rate", "0"], "--spawn-rate"),
        (["--workers", "-1"], "--workers"),
        (["--shape", "wave"], "--shape"),
        (["--shape", "ramp:peak=3"], "--shape"),
        (["--probe-rate", "-2"], "--probe-rate"),
        (["--replace-at", "3"], "--replace-at"),
        (["--replace-with", "a1"], "--replace-with"),
        (["--duration", "0"], "--duration"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path, capsys, args: list[str], flag: str) -> None:
    code = main(["load", "http://127.0.0.1:9/", "--runs-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and flag in err, err
    assert not list(tmp_path.iterdir())  # nothing recorded, no run directory


def test_url_or_workload_is_required(tmp_path, capsys) -> None:
    assert main(["load", "--runs-dir", str(tmp_path)]) == 2
    assert "URL" in capsys.readouterr().err


def params(**over: Any) -> dict[str, Any]:
    base = {"users": 5, "spawn_rate": 2.0, "duration": 30.0, "workers": 2, "probe_rate": 0.0,
            "shape": None}  # fmt: skip
    base.update(over)
    return base


def spec():
    return build_request(
        "http://127.0.0.1:9/w/", method="POST", timeout=5.0, token_env="MY_TOKEN",
        path="/chat/completions", body='{"a": 1}', headers=("X-A: 1",), tag_headers=("X-V",),
    )  # fmt: skip


def test_locust_command_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "s3cret-token")
    load = LoadSettings.build(**params(shape="step:step=2,every=5"))
    cmd = locust_command(spec(), load.locust, tmp_path)
    text = " ".join(cmd)
    assert "s3cret" not in text
    for part in ("--headless", "--processes 2", "--master-bind-host 127.0.0.1", "--run-time 30s",
                 "--users 5", "--spawn-rate 2",
                 f"--probes-run-dir {tmp_path}", "--probes-method POST",
                 "--probes-tag-header X-V", "--probes-shape step:every=5,step=2",
                 "--probes-token-env MY_TOKEN",
                 "--host http://127.0.0.1:9/w/chat/completions"):  # fmt: skip
        assert part in text, part
    # headers and body travel in Locust's environment, not its command line (ps shows it)
    assert "X-A" not in text and '"a"' not in text
    env = locust_env(spec())
    assert json.loads(env[HEADERS_ENV]) == ["X-A: 1", "Content-Type: application/json"]
    assert base64.b64decode(env[BODY_ENV]) == b'{"a": 1}'
    one = locust_command(spec(), LoadSettings.build(**params(workers=0)).locust, tmp_path)
    assert "--processes" not in one and "--probes-shape" not in one


def test_run_time_is_whole_seconds() -> None:
    assert LoadSettings(parse_shape(None, duration=2.2)).run_time_s == 3


def wait_for_shard(run_dir: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((run_dir / "samples").glob("locust-*.parquet")):
            return
        time.sleep(0.2)
    raise AssertionError(f"no Locust shard: {(run_dir / 'locust.log').read_text()[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "extra"),
    [
        (signal.SIGTERM, ["--workers", "2"]),
        # Ctrl-C on a shaped single-process run: Locust must still flush (it dies on a
        # SIGTERM of its own while a shape starts, hence SIGINT-first in stop_locust)
        (signal.SIGINT, ["--shape", "ramp:from=1,over=5"]),
    ],
    ids=["SIGTERM-workers", "Ctrl-C-shape"],
)
def test_signal_stops_locust_cleanly_and_loses_no_sample(
    tmp_path: Path, sig: signal.Signals, extra: list[str]
) -> None:
    with VersionServer(v2_share=0.5) as server:
        proc = subprocess.Popen(
            [PROBES, "load", server.url, "--users", "4", "--duration", "120", *extra,
             "--runs-dir", str(tmp_path), "--run-id", "r", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        run_dir = tmp_path / "r"
        try:
            wait_for_shard(run_dir)
        finally:
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=90)
        served = server.stats()
    assert proc.returncode in (0, 1), err
    assert sig.name in err and "report.html" in out
    counts = json.loads((run_dir / "locust.json").read_text())
    frame = read_samples(run_dir)
    answered = sum(sum(s.values()) for s in served["answered"].values())
    assert counts["requests"] == counts["samples"] == len(frame) > 0
    # Users killed mid-request were answered but never counted, by Locust or by us.
    assert 0 <= answered - len(frame) <= 4
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["interrupted"] == sig.name and manifest["ended_at"]
    assert (run_dir / "summary.json").exists()


@pytest.mark.slow
def test_replacement_under_load_on_the_simulator(tmp_path: Path) -> None:
    from probes.sim import SimConfig, Simulator

    env = {**os.environ, "SIM_TOKEN": "t"}
    cfg = SimConfig(scenario="healthy", time_scale=60.0, token="t", port=0)
    with Simulator(cfg) as sim:
        result = subprocess.run(
            [PROBES, "load", "--api", sim.api_url, "--workload", sim.workload_id,
             "--replace-with", sim.candidate_artifact_id, "--replace-at", "2",
             "--duration", "10", "--users", "4", "--workers", "2", "--probe-rate", "20",
             "--token-env", "SIM_TOKEN", "--runs-dir", str(tmp_path), "--run-id", "r", "-q",
             # the healthy protons answer in ~1 ms: their p50/p99 are the machine's, which a
             # busy CI moves by 10x between before and after; the test is the replacement's
             # mechanics, so the latency guardrails get margins no machine noise reaches
             "--slo", "comparison.latency_p50_ratio=100",
             "--slo", "comparison.latency_p99_ratio=100"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        per_proton = sim.proton_request_counts()
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "r"
    frame = read_samples(run_dir)
    sources = frame["source"].value_counts().to_dict()
    counts = json.loads((run_dir / "locust.json").read_text())
    assert sources["locust"] == counts["requests"] == counts["samples"]
    assert sources["probe"] > 100
    label = {
        e["proton_id"]: e["detail"]["version"]
        for e in read_events(run_dir)
        if e["kind"] == "proton"
    }
    sim_versions: Counter[str] = Counter()
    for proton_id, n in per_proton.items():
        sim_versions[label[proton_id]] += n
    ours = frame["version"].value_counts().to_dict()
    assert len(sim_versions) == 2 and set(ours) == set(sim_versions)
    for version, n in sim_versions.items():
        assert ours[version] == pytest.approx(n, rel=0.01, abs=2), (ours, dict(sim_versions))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rollout"]["outcome"] == "completed"


def get_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:  # 127.0.0.1 only
        return json.loads(resp.read())


@pytest.mark.slow
def test_versions_tab_shows_the_rollout_of_a_standalone_locust(tmp_path: Path, monkeypatch) -> None:
    """``locust -f locustfiles/invoke.py --probes-api --probes-workload`` (web UI): the
    Versions endpoint shows both versions and the replacement's state from the watcher."""
    import socket

    from probes.sim import SimConfig, Simulator
    from probes.workload import WorkloadClient

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("SIM_TOKEN", "t")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    cfg = SimConfig(scenario="healthy", time_scale=60.0, token="t", port=0)
    with Simulator(cfg) as sim:
        cmd = [sys.executable, "-m", "locust", "-f", "locustfiles/invoke.py", "--host",
               sim.invoke_url, "--autostart", "-u", "2", "-r", "2", "-t", "60s", "--web-host",
               "127.0.0.1", "--web-port", str(port), "--probes-runs-dir", str(tmp_path),
               "--probes-token-env", "SIM_TOKEN", "--probes-api", sim.api_url,
               "--probes-workload", sim.workload_id]  # fmt: skip
        log = (tmp_path / "locust.log").open("w")
        proc = subprocess.Popen(cmd, cwd=Path(__file__).parents[1], stdout=log,
                                stderr=subprocess.STDOUT, env=env)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            data: dict[str, Any] = {}
            requested = False
            while time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    data = get_json(f"{base}/probes/versions")
                except OSError:
                    continue
                if not requested and data["samples"] > 50:
                    with WorkloadClient(sim.api_url, token_env="SIM_TOKEN") as client:
                        client.start_replacement(sim.workload_id, sim.candidate_artifact_id)
                    requested = True
                rollout = data.get("rollout") or {}
                if rollout.get("status") == "completed" and len(data["window"]["versions"]) == 2:
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            log.close()
    rollout = data["rollout"]
    assert rollout["status"] == "completed", data
    assert {v["version"] for v in data["window"]["versions"]} == set(rollout["roles"])
    assert "(rollout)" in [r["version"] for r in data["rows"]]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["platform"]["workload_id"] == sim.workload_id
    counts = json.loads((run_dir / "locust.json").read_text())
    assert counts["samples"] == counts["requests"] == len(read_samples(run_dir))
