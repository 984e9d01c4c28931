"""Benchmark of the Locust glue (``python -m bench.run locust``): does recording cost rate?

Against Debian's nginx on 127.0.0.1 (``bench.canary.nginx``: a small JSON body with an
``X-Proton-Version`` header), A/B alternated in rounds (ABBA order, so drift in the shared
machine's load hits both sides alike): **bare** Locust (a ``FastHttpUser`` doing
``client.get("/")`` and nothing else) vs **ours** (``locustfiles/invoke.py``: ``InvokeUser``
with tagging, sample rows, Parquet shards, the Versions window), both headless with the same
users for the same time, one process and ``--processes 2``.

Rate = Locust's own request count over the time between its first and last request (from
``--json-file``). For ours the run is also checked: samples written == Locust's count.

Goal (issue 4): ours keeps >= 95 % of bare Locust's rate. Single runs on a shared 2-core VM
differ by up to ~15 %, so the verdict uses the median of per-round ratios over several rounds.

Options: ``--rounds N`` (default 5), ``--duration S`` (default 8), ``--users N`` (default 32),
``--processes 0,2``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.canary import nginx
from probes.recording.locustproc import master_port_args

ROOT = Path(__file__).resolve().parent.parent
OURS = ROOT / "locustfiles" / "invoke.py"
#: Added to either locustfile: every process appends the CPU it used from test start to its
#: exit (after the glue's final flush), so start-up imports do not count per request.
CPU_PROBE = """
import json, os, time
from locust import events

_start = {}


@events.test_start.add_listener
def _started(**_):
    _start.setdefault("cpu", time.process_time())


@events.quitting.add_listener
def _quitting(**_):
    if "cpu" in _start:
        with open(os.environ["BENCH_CPU_FILE"], "a") as fh:
            fh.write(json.dumps(time.process_time() - _start["cpu"]) + "\\n")
"""
BARE = """
from locust import FastHttpUser, task


class BareUser(FastHttpUser):
    @task
    def get(self):
        self.client.get("/")
"""


def run_once(
    mode: str, url: str, users: int, duration: int, processes: int, tmp: Path, cpu: int | None
) -> dict[str, Any]:
    """One headless Locust run; its rate from Locust's own final stats."""
    locustfile = OURS if mode == "ours" else tmp / "bare_locustfile.py"
    if mode == "bare":
        locustfile.write_text(BARE)
    cpu_probe = tmp / "bench_cpu.py"
    cpu_probe.write_text(CPU_PROBE)
    cpu_file = tmp / f"{mode}-cpu.txt"
    cpu_file.unlink(missing_ok=True)
    stats = tmp / f"{mode}-stats"
    runs = tmp / f"{mode}-runs"
    host = url.rstrip("/") if mode == "bare" else url  # bare requests "/" on the origin
    cmd = [sys.executable, "-m", "locust", "-f", f"{locustfile},{cpu_probe}", "--host", host,
           "--headless", "--only-summary", "-u", str(users), "-r", str(users), "-t", f"{duration}s",
           "--stop-timeout", "0", "--json-file", str(stats), "--loglevel", "WARNING"]  # fmt: skip
    if mode == "ours":
        cmd += ["--probes-runs-dir", str(runs)]
    if processes:
        cmd += ["--processes", str(processes), *master_port_args()]
    if cpu is not None and not processes:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_CPU_FILE": str(cpu_file)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 120)
    # CPU of every Locust process (master and workers) from test start to exit.
    cpu_s = sum(float(line) for line in cpu_file.read_text().split())
    if result.returncode not in (0, 1):
        raise RuntimeError(f"locust failed ({mode}): {result.stderr[-2000:]}")
    entries = json.loads(Path(f"{stats}.json").read_text())
    requests = sum(e["num_requests"] for e in entries)
    start = min(e["start_time"] for e in entries)
    last = max(e["last_request_timestamp"] or start for e in entries)
    out = {
        "mode": mode,
        "requests": requests,
        "rate": requests / max(last - start, 1e-9),
        "cpu_us": 1e6 * cpu_s / max(requests, 1),
    }
    if mode == "ours":
        (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
        counts = json.loads((run_dir / "locust.json").read_text())
        out["samples_match"] = counts["samples"] == counts["requests"] == requests
        shutil.rmtree(runs)  # one run directory per run; keeps the temp dir small
    return out


def bench(url: str, args: argparse.Namespace, processes: int, cpu: int | None) -> dict[str, Any]:
    """Rounds of ABBA-ordered runs for one process count; medians and per-round ratios."""
    rates: dict[str, list[float]] = {"bare": [], "ours": []}
    cpus: dict[str, list[float]] = {"bare": [], "ours": []}
    ratios: list[float] = []
    matches = []
    with tempfile.TemporaryDirectory(prefix="bench-locust-") as tmp_name:
        tmp = Path(tmp_name)
        for i in range(args.rounds):
            order = ("bare", "ours") if i % 2 == 0 else ("ours", "bare")
            got = {}
            for mode in order:
                res = run_once(mode, url, args.users, args.duration, processes, tmp, cpu)
                got[mode] = res["rate"]
                rates[mode].append(res["rate"])
                cpus[mode].append(res["cpu_us"])
                if mode == "ours":
                    matches.append(res["samples_match"])
            ratios.append(got["ours"] / got["bare"])
            print(
                f"  processes={processes} round {i + 1}: bare {got['bare']:,.0f}/s"
                f"  ours {got['ours']:,.0f}/s  ratio {ratios[-1]:.3f}"
                f"  CPU/req bare {cpus['bare'][-1]:.0f} µs ours {cpus['ours'][-1]:.0f} µs",
                flush=True,
            )
    return {
        "processes": processes,
        "bare_median": statistics.median(rates["bare"]),
        "ours_median": statistics.median(rates["ours"]),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "samples_match": all(matches),
        "cpu_bare_us": statistics.median(cpus["bare"]),
        "cpu_ours_us": statistics.median(cpus["ours"]),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench locust")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--processes", default="0,2")
    args, _ = parser.parse_known_args(argv)  # other benchmarks' options are ignored
    two_cpus = (os.cpu_count() or 1) >= 2
    results = []
    # One Locust process: nginx on CPU 0, Locust pinned to CPU 1. Two: nobody pinned.
    for processes in (int(p) for p in args.processes.split(",")):
        pin = two_cpus and processes == 0
        with nginx(0 if pin else None) as url:
            results.append(bench(url, args, processes, 1 if pin else None))
    print("| processes | bare req/s (median) | ours req/s (median) | ours/bare median "
          "| min–max | CPU µs/req bare | CPU µs/req ours | CPU-bound rate ours/bare "
          "| samples == Locust count |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    ok = True
    for r in results:
        print(
            f"| {r['processes'] or 1} | {r['bare_median']:,.0f} | {r['ours_median']:,.0f} "
            f"| {r['ratio_median']:.3f} | {r['ratio_min']:.3f}–{r['ratio_max']:.3f} "
            f"| {r['cpu_bare_us']:.0f} | {r['cpu_ours_us']:.0f} "
            f"| {r['cpu_bare_us'] / r['cpu_ours_us']:.3f} "
            f"| {'yes' if r['samples_match'] else 'NO'} |"
        )
        ok = ok and r["ratio_median"] >= 0.95 and r["samples_match"]
    print(f"goal (ours >= 95 % of bare, median of rounds): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
