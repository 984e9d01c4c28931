"""`probes demo`: simulator + Locust + probe + a replacement + report, end to end."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_end_to_end(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "probes.cli", "demo", "--runs-dir", str(tmp_path), "--run-id", "d1",
         "--duration", "12", "--replace-at", "3", "--users", "2", "--probe-rate", "10", "-q"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "d1"
    assert str(run / "report.html") in result.stdout
    assert "verdict: pass" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sources"]["locust"] > 0 and summary["sources"]["probe"] > 0
    rollout = summary["rollout"]
    assert rollout["outcome"] == "completed"
    assert rollout["from_version"] == "proton-app:1" and rollout["to_version"] == "proton-app:2"
    assert rollout["platform"]["switched_at_s"] is not None
    statuses = [s["status"] for s in rollout["platform"]["statuses"]]
    assert statuses[0] == "submitted" and statuses[-1] == "completed"
    assert {v["role"] for v in summary["versions"].values()} >= {"baseline", "candidate"}
    # the demo's token never reaches disk
    manifest = (run / "manifest.json").read_text()
    assert "PROBES_DEMO_TOKEN" in manifest  # the variable's name is recorded ...
    for path in run.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".html", ".log"):
            assert "Bearer " not in path.read_text(errors="replace")
