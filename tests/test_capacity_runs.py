"""Real stepped capacity runs through the CLI (Locust as a subprocess) against local servers
whose answer is known: a hard concurrency limit with a fixed service time, its maximum
measured with wrk in the same test; and a server whose service time grows with the requests
it holds at once (retrograde). The knee and the model's peak must land within 15%."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from probes.cli import main
from tests.capacity_server import capacity_server

WRK = shutil.which("wrk")
needs_wrk = pytest.mark.skipif(
    WRK is None, reason="wrk is not installed (apt-get install wrk; .ci/run and make bench-deps do)"
)


def wrk_max_rps(url: str, connections: int = 16, seconds: int = 3) -> float:
    """The server's maximum as wrk measures it: ``Requests/sec`` with many connections."""
    assert WRK is not None
    out = subprocess.run(
        [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True, text=True, timeout=seconds + 20, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"Requests/sec:\s*([\d.]+)", out)
    assert found, out
    return float(found.group(1))


def capacity_run(url: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    code = main(["capacity", url, "--runs-dir", str(tmp_path), "--run-id", "c", "-q", *args])
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert code == 0 and summary["kind"] == "capacity", summary["verdict"]
    block: dict[str, Any] = summary["capacity"]
    assert (tmp_path / "c" / "figures" / "capacity.png").stat().st_size > 0
    return block


@pytest.mark.slow
@needs_wrk
def test_plateau_knee_and_peak_match_wrk(tmp_path: Path) -> None:
    """4 slots x 40 ms: wrk measures the ceiling (about 100 req/s). Users 1..10: throughput
    grows by about 25 req/s per user up to 4 users, then stays flat."""
    with capacity_server(slots=4, work_ms=40.0, max_seconds=90.0) as url:
        ceiling = wrk_max_rps(url)
        block = capacity_run(
            url, tmp_path, "--start-users", "1", "--step-users", "1", "--max-users", "10",
            "--step-seconds", "2.5", "--spawn-rate", "20", "--slo", "p99_ms<5000",
        )  # fmt: skip
    rps = [s["rps"] for s in block["steps"]]
    print(f"wrk {ceiling:.1f} req/s; steps {rps}; knee {block['knee_rps']} at "
          f"{block['knee_users']} ({block['knee_case']}); model {block['model']}")  # fmt: skip
    assert 70 < ceiling < 110  # the server's own limit (slots / work), not the client's
    assert len(rps) == 10, rps
    model = block["model"]
    # plateau on a quiet machine; on a busy one the generator's own share of the 2 cores
    # falls at the top steps and the fit may read "retrograde": either way the knee is at
    # the ceiling (below), and a retrograde reading must be in the steps themselves
    assert block["knee_case"] in ("plateau", "retrograde"), block
    if block["knee_case"] == "retrograde":
        assert rps[-1] < max(rps), rps
    assert block["knee_rps"] == pytest.approx(ceiling, rel=0.15), (ceiling, block)
    assert model["peak_rps"] == pytest.approx(ceiling, rel=0.15), (ceiling, model)
    assert max(rps) == pytest.approx(ceiling, rel=0.15)
    assert 3 <= block["knee_users"] <= 6  # the corner: slots = 4 users
    assert block["max_rps_within_slo"] == max(rps)
    assert block["limit_reason"] == "max users reached"


@pytest.mark.slow
def test_retrograde_knee_at_the_measured_peak(tmp_path: Path) -> None:
    """Service time 30 ms x (1 + n(n-1)/36) for n requests held at once: N closed-model users
    get N / (0.03 (1 + N(N-1)/36)) req/s, peaking at N* = 6 users (about 109 req/s) and
    falling to about 70 req/s at 16 users."""
    with capacity_server(slots=1000, work_ms=30.0, max_seconds=90.0, kappa=1 / 36) as url:
        block = capacity_run(
            url, tmp_path, "--start-users", "2", "--step-users", "2", "--max-users", "16",
            "--step-seconds", "3", "--spawn-rate", "20", "--slo", "p99_ms<5000",
        )  # fmt: skip
    steps = block["steps"]
    print(f"steps {[(s['users'], s['rps']) for s in steps]}; knee {block['knee_rps']} at "
          f"{block['knee_users']} ({block['knee_case']}); model {block['model']}")  # fmt: skip
    assert len(steps) == 8, steps
    best = max(steps, key=lambda s: s["rps"])
    assert block["knee_case"] == "retrograde", block
    assert block["knee_rps"] == pytest.approx(best["rps"], rel=0.15), block
    assert abs(block["knee_users"] - best["users"]) <= 2  # one step
    assert steps[-1]["rps"] < 0.85 * best["rps"]  # it really falls
    model = block["model"]
    # The model's peak agrees with the measured one (within two steps). How close both come to
    # the server's true N* = 6 depends on how much CPU the load generator got: on a busy
    # machine the 2- and 4-user steps fall short (31.5 and 48.5 req/s seen for 65 and 100)
    # and both peaks move right. That accuracy is a benchmark figure, not a test.
    assert abs(model["peak_users"] - best["users"]) <= 4, model
    assert model["kappa"] > 0 and model["r2"] > 0.8, model
