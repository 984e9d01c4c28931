"""Load beyond one machine: ``probes load --expect-workers N`` as a Locust master, with plain
``locust -f locustfiles/invoke.py --worker`` processes connecting over TCP on 127.0.0.1.

Every process is a subprocess (this one never imports Locust); every run is a few seconds of
load, bounded by ``--duration`` and the subprocess timeouts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from probes.cli import main
from probes.locustglue.options import ENV_OPTIONS, request_spec
from probes.locustglue.workers import LOST_MISSING, LOST_QUIT, WorkerTally, worker_host
from probes.recording.load import LoadSettings
from probes.recording.locustproc import MasterBind, locust_command, parse_master_bind
from probes.records import read_events, read_samples
from probes.settings import build_request

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "locustfiles" / "invoke.py"
PROBES = str(Path(sys.executable).with_name("probes"))


# ----------------------------------------------------------------- flags and pure parts


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--expect-workers", "-1"], "--expect-workers"),
        (["--expect-workers", "2", "--workers", "2"], "--expect-workers"),
        (["--expect-workers", "2", "--master-bind", "127.0.0.1"], "--master-bind"),
        (["--expect-workers", "2", "--master-bind", "127.0.0.1:99999"], "--master-bind"),
        (["--expect-workers", "2", "--master-bind", ":5557"], "--master-bind"),
        (["--expect-workers", "2", "--worker-timeout", "0"], "--worker-timeout"),
        (["--expect-workers", "2", "--worker-timeout", "nan"], "--worker-timeout"),
    ],
)
@pytest.mark.parametrize("verb", ["load", "capacity"])
def test_bad_master_flags_exit_2_naming_the_flag(
    tmp_path, capsys, verb: str, args: list[str], flag: str
) -> None:
    code = main([verb, "http://127.0.0.1:9/", "--runs-dir", str(tmp_path), "-q", *args])
    err = capsys.readouterr().err
    assert code == 2 and flag in err, err
    assert not list(tmp_path.iterdir())


def test_master_bind_forms() -> None:
    assert parse_master_bind("0.0.0.0:5557", "x") == ("0.0.0.0", 5557)
    assert parse_master_bind("[::1]:6000", "x") == ("::1", 6000)
    assert MasterBind("::1", 6000).address == "[::1]:6000"
    assert MasterBind("127.0.0.1").loopback and not MasterBind("0.0.0.0").loopback


def test_master_command_line_and_manifest(tmp_path) -> None:
    load = LoadSettings.build(
        duration=5, users=3, expect_workers=3, master_bind="0.0.0.0:6001", worker_timeout=7.5
    )
    spec = build_request("http://127.0.0.1:9/")
    text = " ".join(locust_command(spec, load.locust, tmp_path))
    for part in ("--master --expect-workers 3", "--expect-workers-max-wait 8",
                 "--master-bind-host 0.0.0.0", "--master-bind-port 6001"):  # fmt: skip
        assert part in text, text
    from probes.recording.load import load_manifest_settings

    block = load_manifest_settings(spec, load, None)
    assert block["master_bind"] == "0.0.0.0:6001" and block["master_bind_loopback"] is False
    assert block["expect_workers"] == 3 and block["worker_timeout_s"] == 7.5


def test_headers_and_body_reach_workers_through_the_options(monkeypatch) -> None:
    """A worker elsewhere has none of the master's environment: the shared options carry
    the request's headers and body (Locust sends custom options with every spawn)."""
    from types import SimpleNamespace

    monkeypatch.delenv("PROBES_LOCUST_HEADERS", raising=False)
    monkeypatch.delenv("PROBES_LOCUST_BODY", raising=False)
    options = SimpleNamespace(
        **{ENV_OPTIONS[0]: json.dumps(["X-A: 1"]), ENV_OPTIONS[1]: "eyJhIjogMX0="}
    )
    spec = request_spec(options, "http://127.0.0.1:9/")
    assert ("X-A", "1") in spec.headers and spec.body == b'{"a": 1}'


def test_worker_tally_counts_rows_and_losses() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    tally = WorkerTally(lambda status, detail: events.append((status, detail)))
    for worker in ("h1_aa", "h2_bb", "h2_cc"):
        tally.connected(worker)
    tally.connected("h1_aa")  # a duplicate client_ready: one connection
    tally.add_rows("h1_aa", [(10.0,), (12.5,), (11.0,)])
    tally.add_rows("h2_bb", [(10.5,)])
    assert tally.check({"h1_aa": "running", "h2_bb": "missing"}, now=20.0) == ["h2_bb", "h2_cc"]
    assert tally.check({"h1_aa": "running"}, now=21.0) == []  # recorded once
    tally.quitting = True
    assert tally.check({}, now=22.0) == []  # asked to leave: not lost
    by_id = {w["id"]: w for w in tally.as_list()}
    assert (by_id["h1_aa"]["rows"], by_id["h1_aa"]["first_ts"], by_id["h1_aa"]["last_ts"]) == (
        3, 10.0, 12.5,
    )  # fmt: skip
    assert by_id["h2_bb"]["lost"] == LOST_MISSING and by_id["h2_cc"]["lost"] == LOST_QUIT
    assert [s for s, _ in events] == ["worker connected"] * 3 + ["worker lost"] * 2
    assert worker_host("my-host_1_abcdef") == "my-host_1" and worker_host("plain") == "plain"


# ----------------------------------------------------------------- end to end


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def workers(n: int, port: int, logs: Path, env: dict[str, str]) -> Iterator[list[Any]]:
    """``n`` plain Locust workers dialling 127.0.0.1:``port``; stopped at the end."""
    logs.mkdir(exist_ok=True)
    procs = []
    try:
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
               "--master-host", "127.0.0.1", "--master-port", str(port)]  # fmt: skip
        for i in range(n):
            with (logs / f"worker-{i}.log").open("wb") as log:
                proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=logs,
                    start_new_session=True,
                )  # fmt: skip
                procs.append(proc)
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def probes_load(tmp_path: Path, port: int, n: int, *extra: str, env: dict[str, str]) -> Any:
    cmd = [PROBES, "load", *extra, "--expect-workers", str(n),
           "--master-bind", f"127.0.0.1:{port}", "--runs-dir", str(tmp_path / "runs"),
           "--run-id", "r", "-q"]  # fmt: skip
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def finished(proc: Any, timeout: float = 150) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return int(proc.returncode), err


def check_rows(run_dir: Path) -> tuple[dict[str, Any], Any]:
    """Rows recorded == Locust's own count summed over workers; the summary."""
    counts = json.loads((run_dir / "locust.json").read_text())
    frame = read_samples(run_dir)
    frame = frame[frame["source"] == "locust"]
    assert len(frame) == counts["samples"] == counts["requests"] > 0, counts
    summary = json.loads((run_dir / "summary.json").read_text())
    assert sum(w["rows"] for w in summary["workers"]) == counts["requests"]
    return summary, frame


@pytest.mark.slow
def test_three_workers_see_a_switch(tmp_path: Path) -> None:
    from probes.sim import SimConfig, Simulator

    env = {**os.environ, "SIM_TOKEN": "t", "PYTHONPATH": str(ROOT)}
    port = free_port()
    cfg = SimConfig(scenario="healthy", time_scale=60.0, token="t", port=0)
    with Simulator(cfg) as sim, workers(3, port, tmp_path / "w", env):
        proc = probes_load(
            tmp_path, port, 3, "--api", sim.api_url, "--workload", sim.workload_id,
            "--replace-with", sim.candidate_artifact_id, "--replace-at", "2",
            "--duration", "8", "--users", "6", "--spawn-rate", "6", "--probe-rate", "10",
            "--token-env", "SIM_TOKEN", env=env,
        )  # fmt: skip
        code, err = finished(proc)
    assert code == 0, err[-3000:]
    run_dir = tmp_path / "runs" / "r"
    summary, frame = check_rows(run_dir)
    assert len(summary["workers"]) == 3 and all(w["rows"] > 0 for w in summary["workers"])
    assert {w["host"] for w in summary["workers"]} == {socket.gethostname()}
    assert all(w["lost"] is None for w in summary["workers"])
    assert frame["version"].nunique() == 2, frame["version"].value_counts()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["settings"]["master_bind"] == f"127.0.0.1:{port}"
    assert manifest["settings"]["expect_workers"] == 3
    events = read_events(run_dir)
    connected = [e for e in events if e.get("status") == "worker connected"]
    assert len(connected) == 3
    # the probe beside the load starts with the load, not with the wait for the workers
    (started,) = [e["ts"] for e in events if e.get("status") == "load started"]
    probe_ts = read_samples(run_dir).query("source == 'probe'")["ts"]
    assert len(probe_ts) > 0 and probe_ts.min() >= started
    assert "Locust workers" in (run_dir / "report.md").read_text()


@pytest.mark.slow
def test_too_few_workers_exit_3_naming_how_many_came(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()
    with workers(1, port, tmp_path / "w", env):
        proc = probes_load(
            tmp_path, port, 2, "http://127.0.0.1:9/", "--duration", "5", "--worker-timeout",
            "3", env=env,
        )  # fmt: skip
        code, err = finished(proc, timeout=120)
    assert code == 3, err[-3000:]
    assert "only 1 of 2 Locust workers connected" in err, err[-3000:]


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_recorded_and_the_run_completes(tmp_path: Path) -> None:
    from tests.helpers import VersionServer

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()
    with VersionServer() as server, workers(3, port, tmp_path / "w", env) as procs:
        proc = probes_load(
            tmp_path, port, 3, server.url, "--duration", "12", "--users", "6",
            "--spawn-rate", "6", env=env,
        )  # fmt: skip
        samples = tmp_path / "runs" / "r" / "samples"
        wait_for(lambda: any(samples.glob("locust-*.parquet")), 90, "the first shard")
        procs[0].kill()  # SIGKILL: no goodbye, its heartbeat just stops
        code, err = finished(proc)
    assert code == 0, err[-3000:]
    run_dir = tmp_path / "runs" / "r"
    summary, _ = check_rows(run_dir)
    lost = [w for w in summary["workers"] if w["lost"]]
    assert len(summary["workers"]) == 3 and [w["lost"] for w in lost] == [LOST_MISSING]
    others = [w for w in summary["workers"] if not w["lost"]]
    assert all(w["last_s"] > lost[0]["last_s"] for w in others)
    events = [e for e in read_events(run_dir) if e.get("status") == "worker lost"]
    assert [e["detail"]["id"] for e in events] == [lost[0]["id"]]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [w["lost"] for w in manifest["locust"]["workers"]].count(LOST_MISSING) == 1
    assert "1 Locust worker(s) lost mid-run" in (run_dir / "report.md").read_text()


@pytest.mark.slow
def test_capacity_steps_on_remote_workers(tmp_path: Path) -> None:
    from tests.helpers import VersionServer

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()
    with VersionServer() as server, workers(2, port, tmp_path / "w", env):
        cmd = [PROBES, "capacity", server.url, "--expect-workers", "2", "--master-bind",
               f"127.0.0.1:{port}", "--start-users", "2", "--step-users", "2",
               "--step-seconds", "3", "--max-users", "4", "--runs-dir", str(tmp_path / "runs"),
               "--run-id", "c", "-q"]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]
    summary, _ = check_rows(tmp_path / "runs" / "c")
    assert len(summary["workers"]) == 2 and all(w["rows"] > 0 for w in summary["workers"])
    steps = summary["capacity"]["steps"]
    assert [s["users"] for s in steps] == [2, 4], steps


class _Recording:
    """A tiny HTTP/1.1 server on 127.0.0.1:0 that records what each request carried."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen: list[tuple[str, str, str | None, str | None, bytes]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append((self.command, self.path, self.headers.get("X-A"),
                             self.headers.get("Authorization"), body))  # fmt: skip
                self.send_response(200)
                self.send_header("X-Proton-Version", "v1")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.seen = seen
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Recording:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/w/"


@pytest.mark.slow
def test_workers_need_only_their_token(tmp_path: Path) -> None:
    """Method, path, headers, body and the token's variable name reach a plain worker from
    the master; the token itself is only in the workers' environment."""
    master_env = {k: v for k, v in os.environ.items() if k != "MY_TOKEN"}
    master_env["PYTHONPATH"] = str(ROOT)
    worker_env = {**master_env, "MY_TOKEN": "tok-1"}
    port = free_port()
    with _Recording() as server, workers(2, port, tmp_path / "w", worker_env):
        proc = probes_load(
            tmp_path, port, 2, server.url, "--method", "POST", "--path", "/chat/completions",
            "--header", "X-A: 1", "--body", '{"a": 1}', "--token-env", "MY_TOKEN",
            "--duration", "3", "--users", "2", "--spawn-rate", "2", env=master_env,
        )  # fmt: skip
        code, err = finished(proc)
        seen = list(server.seen)
    assert code == 0, err[-3000:]
    summary, frame = check_rows(tmp_path / "runs" / "r")
    assert len(seen) >= len(frame) > 0
    assert set(seen) == {("POST", "/w/chat/completions", "1", "Bearer tok-1", b'{"a": 1}')}
    assert set(frame["version"]) == {"v1"} and len(summary["workers"]) == 2


@pytest.mark.slow
def test_rate_steps_split_across_remote_workers(tmp_path: Path) -> None:
    """``--mode rate`` on two workers: together they offer exactly the plan (every slot is a
    row, sent or ``client_saturated``), each exactly half of it."""
    from tests.helpers import VersionServer

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()
    with VersionServer() as server, workers(2, port, tmp_path / "w", env):
        cmd = [PROBES, "capacity", server.url, "--mode", "rate", "--expect-workers", "2",
               "--master-bind", f"127.0.0.1:{port}", "--start-rate", "20", "--step-rate", "20",
               "--max-rate", "40", "--step-seconds", "3", "--max-in-flight", "8",
               "--runs-dir", str(tmp_path / "runs"), "--run-id", "rate", "-q"]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=150)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "rate"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    t0 = manifest["capacity"]["t0"]
    counts = json.loads((run_dir / "locust.json").read_text())
    frame = read_samples(run_dir)
    frame = frame[frame["source"] == "locust"]
    unsent = int((frame["error"] == "client_saturated").sum())
    assert len(frame) == counts["samples"] == counts["requests"] + unsent
    assert counts["not_sent"] == unsent
    step = ((frame["intended_ts"] - t0) // 3).astype(int)
    assert step.value_counts().sort_index().to_dict() == {0: 60, 1: 120}  # the plan, exactly
    summary = json.loads((run_dir / "summary.json").read_text())
    assert sorted(w["rows"] for w in summary["workers"]) == [90, 90]
    steps = summary["capacity"]["steps"]
    assert [s["offered_rps"] for s in steps] == [20, 40]
    assert all(s["achieved_rps"] > 0 for s in steps)
