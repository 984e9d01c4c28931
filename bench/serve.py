"""Benchmark of ``probes serve``: N targets at 1 request/s each against one local server
(``python -m bench.run serve``).

For each N (default 10, 100, 500) it starts the Service in this process (no HTTP routes:
they idle while nobody asks) with N url targets on one aiohttp server in a child process,
lets it settle, then measures over ``--duration`` seconds:

- the service's CPU share: process CPU time (all its threads) / wall time, in cores;
- the canaries' lateness ``ts - intended_ts`` (p50, p99, max) from the recorded rows: how
  late the one event loop sent each request due;
- rows recorded vs due, and errors.

Goal (issue 8): 500 targets within one core, lateness p99 < 20 ms.
Options: ``--duration S`` (default 20), ``--targets 10,100,500``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from probes.records import read_manifest, read_samples
from probes.serve.config import parse_config
from probes.serve.service import Service

SERVER = """
import sys
from aiohttp import web
async def hello(request):
    return web.json_response({"version": "v1"}, headers={"X-Proton-Version": "v1"})
app = web.Application()
app.router.add_get("/{tail:.*}", hello)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


class NullIndex:
    """The index's interface, doing nothing (its writer has its own benchmark)."""

    def put_run_dir(self, run_dir: Path) -> None:
        return None

    def query(self, **kw: Any) -> list[Any]:
        return []

    def expire(self, now: float, retention_days: float) -> list[str]:
        return []

    def flush(self, timeout: float = 5.0) -> None:
        return None

    def close(self) -> None:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the benchmark server did not start")


def metrics() -> Any:
    try:
        from probes.serve.metrics import Metrics
    except ModuleNotFoundError:
        return None
    return Metrics("bench")


def run_once(url: str, n: int, duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        targets = [{"name": f"t{i}", "url": f"{url}t{i}", "canary_rate": 1.0} for i in range(n)]
        cfg = parse_config({"serve": {"runs_dir": tmp}, "targets": targets}, Path(tmp), env={})
        service = Service(cfg, index=NullIndex(), metrics=metrics())
        window: dict[str, float] = {}
        lag: list[float] = []

        async def heartbeat() -> None:
            """How late a 10 ms sleep wakes: the loop's own lag, whoever causes it."""
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lag.append((time.perf_counter() - t - 0.01) * 1000.0)

        async def main() -> None:
            await service.start()
            while not service.ready():
                await asyncio.sleep(0.05)
            await asyncio.sleep(3.0)  # every probe past its first requests
            beat = asyncio.create_task(heartbeat())
            window["t0"], window["c0"] = time.time(), time.process_time()
            await asyncio.sleep(duration)
            window["t1"], window["c1"] = time.time(), time.process_time()
            beat.cancel()
            await service.stop("bench over")

        asyncio.run(main())
        rows = []
        for path in Path(tmp).iterdir():
            if (path / "manifest.json").exists() and read_manifest(path)["kind"] == "canary":
                rows.append(read_samples(path, ["ts", "intended_ts", "error"]))
    import pandas as pd

    frame = pd.concat(rows)
    inside = frame[(frame["intended_ts"] >= window["t0"]) & (frame["intended_ts"] < window["t1"])]
    lateness = (inside["ts"] - inside["intended_ts"]).to_numpy() * 1000.0
    wall = window["t1"] - window["t0"]
    return {
        "targets": n,
        "cpu_cores": (window["c1"] - window["c0"]) / wall,
        "rows": len(inside),
        "due": round(n * wall),
        "errors": int(inside["error"].notna().sum()),
        "late_p50_ms": float(np.percentile(lateness, 50)),
        "late_p99_ms": float(np.percentile(lateness, 99)),
        "late_max_ms": float(lateness.max()),
        "loop_lag_p99_ms": float(np.percentile(lag, 99)) if lag else float("nan"),
    }


def _opt(argv: list[str], name: str, default: str) -> str:
    if name in argv:
        return argv[argv.index(name) + 1]
    return default


def main(argv: list[str]) -> int:
    duration = float(_opt(argv, "--duration", "20"))
    counts = [int(x) for x in _opt(argv, "--targets", "10,100,500").split(",")]
    proc, url = start_server()
    try:
        print(f"{'targets':>8} {'cpu':>6} {'rows/due':>12} {'errors':>6} "
              f"{'late p50':>9} {'p99':>8} {'max':>8} {'loop lag p99':>12}")  # fmt: skip
        for n in counts:
            r = run_once(url, n, duration)
            print(
                f"{r['targets']:>8} {r['cpu_cores']:>6.2f} {r['rows']:>6}/{r['due']:<5} "
                f"{r['errors']:>6} {r['late_p50_ms']:>7.2f}ms {r['late_p99_ms']:>6.2f}ms "
                f"{r['late_max_ms']:>6.1f}ms {r['loop_lag_p99_ms']:>10.2f}ms",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
