"""``probes sim`` as a user runs it: banner, token handling, clean stop, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.sim.conftest import alive, wait_for

PROBES = [sys.executable, "-c", "import sys; from probes.cli import main; sys.exit(main())"]


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


def start(env_token: str | None, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SIM_TEST_TOKEN"}
    if env_token is not None:
        env["SIM_TEST_TOKEN"] = env_token
    return subprocess.Popen(
        [*PROBES, "sim", "--token-env", "SIM_TEST_TOKEN", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def banner(proc: subprocess.Popen[str]) -> dict[str, str]:
    info: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
        if line.startswith("Ctrl-C"):
            return info
    raise AssertionError(f"no banner; stderr: {proc.stderr.read() if proc.stderr else ''}")


def test_refuses_without_token() -> None:
    proc = start(None)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "SIM_TEST_TOKEN" in err and "not set" in err


def test_banner_serves_and_sigterm_stops_protons() -> None:
    proc = start(
        "cli-secret-123",
        "--time-scale",
        "600",
        "--scenario",
        "bad-candidate",
        "--candidate-error-rate",
        "0.5",
        "--seed",
        "3",
    )
    try:
        info = banner(proc)
        assert "cli-secret-123" not in "".join(f"{k}{v}" for k, v in info.items())
        invoke = info["invoke URL"]
        assert invoke.endswith(f"/api/v2/endpoints/workloads/{info['workload id']}/")
        assert "(proton-app:1)" in info["baseline"] and "(proton-app:2)" in info["candidate"]
        assert "candidate_error_rate': 0.5" in info["knobs"]
        r = httpx.get(invoke + "version", headers={"Authorization": "Bearer cli-secret-123"})
        assert r.json()["version"] == "proton-app:1"
        kids = children(proc.pid)
        assert kids and all(alive(k) for k in kids)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "cli-secret-123" not in out + err
    assert not any(alive(k) for k in kids)


def test_killed_simulator_leaves_no_orphans() -> None:
    proc = start("tok", "--time-scale", "600", "--replicas", "2")
    try:
        banner(proc)
        kids = children(proc.pid)
        assert len(kids) == 2
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs; the apps see their stdin close
        proc.communicate(timeout=30)
    wait_for(lambda: not any(alive(k) for k in kids), timeout=20)
