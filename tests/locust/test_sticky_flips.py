"""``sticky`` through ``probes load``: several callers, each pinned, none flipping.

Locust users each hold their own connection: with a ``ramp`` shape, users started before the
switch stay pinned to the old proton (while it drains, 3 s real here) and users started
after it reach the new one, so both versions answer at once (a mixed window). Each user is a
caller of its own (``worker`` = process/user), and a pinned caller never sees the baseline
again after the candidate: flips are 0. (A caller whose own pool holds connections opened
before and after the switch does flip: the canary probe's sticky test in
``tests/test_observe_api.py`` shows that.)

``probes load`` runs as a subprocess (this file imports no Locust); bounded: 14 s of load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from probes.records import read_events, read_samples
from probes.sim import SimConfig, Simulator

PROBES = str(Path(sys.executable).with_name("probes"))
TOKEN = "sticky-token"


def test_sticky_ramp_mixed_window_and_no_caller_flips(tmp_path: Path) -> None:
    env = {**os.environ, "STICKY_TOKEN": TOKEN}
    # 10-30 ms per request keeps each closed-model user near 50 req/s on a 2-core machine.
    cfg = SimConfig(
        scenario="sticky",
        time_scale=60.0,
        token=TOKEN,
        seed=11,
        baseline_latency_ms="10-30",
        candidate_latency_ms="10-30",
    )
    with Simulator(cfg) as sim:
        result = subprocess.run(
            [PROBES, "load", "--api", sim.api_url, "--workload", sim.workload_id,
             "--replace-with", sim.candidate_artifact_id, "--replace-at", "1",
             "--duration", "14", "--users", "8", "--shape", "ramp:from=1,over=10",
             "--token-env", "STICKY_TOKEN", "--runs-dir", str(tmp_path), "--run-id", "r",
             "-q"],
            capture_output=True, text=True, env=env, timeout=90,
        )  # fmt: skip
        per_proton = sim.proton_request_counts()
        baseline = sim.labels[sim.baseline_artifact_id]
        candidate = sim.labels[sim.candidate_artifact_id]
    assert result.returncode in (0, 1), result.stderr[-3000:]
    run_dir = tmp_path / "r"
    summary = json.loads((run_dir / "summary.json").read_text())
    ro = summary["rollout"]
    assert (ro["from_version"], ro["to_version"], ro["outcome"]) == (
        baseline,
        candidate,
        "completed",
    )
    assert ro["mixed_window_s"] > 0 and ro["flips"] == 0
    assert ro["last_baseline_s"] > ro["platform"]["switched_at_s"] + 1.0
    # Both versions answered after the switch, each caller old-then-new at most once.
    frame = read_samples(run_dir)
    late = frame[frame["ts"] > frame["ts"].min() + ro["platform"]["switched_at_s"] + 0.5]
    assert {baseline, candidate} <= set(late["version"].astype(str))
    callers = frame.groupby("worker", observed=True)["version"].agg(
        lambda v: [k for i, k in enumerate(v.astype(str)) if i == 0 or k != v.iloc[i - 1]]
    )
    assert len(callers) >= 8  # one stream per user
    assert all(seq in ([baseline], [candidate], [baseline, candidate]) for seq in callers)
    assert any(seq == [baseline, candidate] for seq in callers)  # moved when the old stopped
    # Every request the gateway routed was recorded (the sim counts agree, ±1%).
    label_of = {
        e["proton_id"]: e["detail"]["version"]
        for e in read_events(run_dir)
        if e["kind"] == "proton"
    }
    by_label: dict[str, int] = {}
    for pid, n in per_proton.items():
        by_label[label_of[pid]] = by_label.get(label_of[pid], 0) + n
    for label in (baseline, candidate):
        recorded = summary["versions"][label]["requests"]
        assert abs(recorded - by_label[label]) <= max(2, 0.01 * by_label[label])
