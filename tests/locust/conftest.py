"""Helpers of the Locust tests: run Locust as a subprocess, read what it recorded.

Tests in this directory may import Locust (and so gevent's monkey-patching); the Makefile
runs them in their own pytest process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from probes.records import read_samples

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "locustfiles" / "invoke.py"


def locust_cmd(host: str, *args: str) -> list[str]:
    """``python -m locust -f locustfiles/invoke.py --host HOST ARGS``."""
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", host, *args]


def run_locust(host: str, *args: str, cwd: Path, timeout: float = 90) -> str:
    """Run Locust to completion; its combined output (asserting a clean exit)."""
    result = subprocess.run(
        locust_cmd(host, *args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode in (0, 1), out[-3000:]  # 1: Locust saw failed requests
    return out


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def counts(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "locust.json").read_text()))


def json_total(prefix: Path) -> tuple[int, int]:
    """Locust's own final (requests, failures), from its ``--json-file`` (written at exit;
    the CSV files are only written every few seconds)."""
    entries = json.loads(Path(f"{prefix}.json").read_text())
    return sum(e["num_requests"] for e in entries), sum(e["num_failures"] for e in entries)


def locust_samples(run_dir: Path) -> Any:
    frame = read_samples(run_dir)
    return frame[frame["source"] == "locust"]
