"""Rows per second one Locust master ingests from 1, 4 and 8 workers (``python -m bench.run
master_ingest``), and the master's CPU.

The question is the master's ceiling, not the target's: each worker runs synthetic users that
fire Locust request events with a canned tagged response (no network), through the package's
real glue (``probes.locustglue.glue``: recorder, worker buffer, rows in the stats reports,
the master's store and Parquet shards). Every worker offers ``--rate`` rows/s (paced with
``constant_throughput``), so the offered total is workers x rate; the master keeps up while
the rows it writes per second match the offered total and its CPU stays below one core.

Master, workers: separate ``python -m locust`` processes over TCP on 127.0.0.1 (the master
``--expect-workers N``). Measured from the run directory and the processes themselves:
rows written (== Locust's request count, checked), the time between the first and the last
row, the master's CPU seconds from its test start to its exit (its final flush included).

Options: ``--workers 1,4,8``, ``--rate R`` rows/s per worker (default 4000), ``--duration S``
(default 10), ``--rounds N`` (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Rows fired per task call (a task per row would measure the users' scheduling instead).
BATCH = 50
LOCUSTFILE = """
import json, os, time

from locust import User, constant_throughput, events, task

import probes.locustglue.glue  # noqa: F401  (the glue: recorder, buffer, master store)

RATE = float(os.environ["BENCH_RATE"])
BATCH = int(os.environ["BENCH_BATCH"])
_start = {}


class Response:
    status_code = 200
    headers = {"X-Proton-Version": "v1"}
    content = b'{"ok": true}'


class SyntheticUser(User):
    wait_time = constant_throughput(RATE / BATCH)

    @task
    def fire(self):
        fire = self.environment.events.request.fire
        now = time.time()
        for _ in range(BATCH):
            fire(request_type="POST", name="/invoke", response_time=1.0, response_length=12,
                 response=Response, exception=None, context={}, start_time=now)


@events.test_start.add_listener
def _started(environment, **_):
    _start.setdefault("cpu", time.process_time())


@events.quitting.add_listener
def _quitting(environment, **_):
    if "cpu" in _start and not environment.parsed_options.worker:
        with open(os.environ["BENCH_CPU_FILE"], "w") as fh:
            fh.write(json.dumps(time.process_time() - _start["cpu"]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_once(workers: int, rate: float, duration: int, tmp: Path) -> dict[str, Any]:
    """One master and ``workers`` workers for ``duration`` seconds; what the master did."""
    locustfile = tmp / "ingest_locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    cpu_file = tmp / "master-cpu.txt"
    cpu_file.unlink(missing_ok=True)
    runs = tmp / f"runs-{workers}-{time.monotonic_ns()}"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_RATE": str(rate),
           "BENCH_BATCH": str(BATCH), "BENCH_CPU_FILE": str(cpu_file)}  # fmt: skip
    base = [sys.executable, "-m", "locust", "-f", str(locustfile), "--loglevel", "WARNING"]
    master_cmd = [*base, "--master", "--headless", "--only-summary", "--host",
                  "http://127.0.0.1:9/", "--expect-workers", str(workers),
                  "--expect-workers-max-wait", "60", "--master-bind-host", "127.0.0.1",
                  "--master-bind-port", str(port), "-u", str(workers), "-r", str(workers),
                  "-t", f"{duration}s", "--stop-timeout", "0",
                  "--probes-runs-dir", str(runs)]  # fmt: skip
    worker_cmd = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    procs = [
        subprocess.Popen(worker_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    try:
        master = subprocess.run(
            master_cmd, env=env, capture_output=True, text=True, timeout=duration + 150
        )
    finally:
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    if master.returncode not in (0, 1):
        raise RuntimeError(f"the master failed: {master.stderr[-2000:]}")
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    counts = json.loads((run_dir / "locust.json").read_text())
    first = min(w["first_ts"] for w in counts["workers"] if w["first_ts"] is not None)
    last = max(w["last_ts"] for w in counts["workers"] if w["last_ts"] is not None)
    span = max(last - first, 1e-9)
    cpu_s = float(cpu_file.read_text())
    return {
        "workers": workers,
        "offered": workers * rate,
        "rows": counts["samples"],
        "match": counts["samples"] == counts["requests"],
        "rows_per_s": counts["samples"] / span,
        "master_cpu_share": cpu_s / span,
        "master_cpu_us_per_row": 1e6 * cpu_s / max(counts["samples"], 1),
        "connected": len(counts["workers"]),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench master_ingest")
    parser.add_argument("--workers", default="1,4,8")
    parser.add_argument("--rate", type=float, default=4000.0)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    args, _ = parser.parse_known_args(argv)  # other benchmarks' options are ignored
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp_name:
        for _ in range(args.rounds):
            for workers in (int(w) for w in args.workers.split(",")):
                res = run_once(workers, args.rate, args.duration, Path(tmp_name))
                results.append(res)
                print(
                    f"  workers={workers}: offered {res['offered']:,.0f} rows/s, ingested "
                    f"{res['rows_per_s']:,.0f} rows/s, master CPU {res['master_cpu_share']:.0%} "
                    f"({res['master_cpu_us_per_row']:.1f} µs/row)",
                    flush=True,
                )
    print("| workers | offered rows/s | ingested rows/s | ingested/offered | master CPU "
          "(share of one core) | master CPU µs/row | rows == Locust count |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(
            f"| {r['workers']} | {r['offered']:,.0f} | {r['rows_per_s']:,.0f} "
            f"| {r['rows_per_s'] / r['offered']:.2f} | {r['master_cpu_share']:.0%} "
            f"| {r['master_cpu_us_per_row']:.1f} | {'yes' if r['match'] else 'NO'} |"
        )
    return 0 if all(r["match"] and r["connected"] == r["workers"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
