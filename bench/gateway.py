"""Benchmark of the simulator's invoke gateway (``python -m bench.run gateway``).

Starts a healthy :class:`probes.sim.Simulator` (proton app with zero latency) and measures
with ``wrk`` (Debian package) on 127.0.0.1, in bounded runs:

- overhead: ``wrk -t1 -c1 --latency`` against the proton directly and through the gateway;
  added p50/p99 = gateway minus direct;
- maximum rate: ``wrk -t1 -cN`` through the gateway for N in ``--connections`` (and the
  proton directly, for reference); the best rate and its latency.

It also checks that the gateway's per-proton count grew by at least the requests wrk
completed (a request wrk abandons at the end of a run still reaches the proton).

Goal (issue 3): at least 3,000 req/s through the gateway with under 1 ms p50 added. Exit
code 1 when the goal is missed, 2 when wrk is not installed.

On two or more cores the gateway (this process) is pinned to CPU 1 and the proton and wrk to
CPU 0, so the gateway's rate is that of one core.

Options: ``--duration S`` (default 5), ``--connections 8,32,64``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from typing import Any

from probes.sim import SimConfig, Simulator

TOKEN = "bench-token"  # a local throwaway token for a loopback-only simulator
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
PIN_WRK: list[str] = []  # ["taskset", "-c", "0"] once pinning is set up


def pin(sim: Simulator) -> str:
    """On 2+ cores: the gateway (this process) on CPU 1, the proton and wrk on CPU 0."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return "not pinned (one CPU or no taskset)"
    os.sched_setaffinity(0, {1})
    for pid in sim.proton_pids():
        os.sched_setaffinity(pid, {0})
    PIN_WRK[:] = ["taskset", "-c", "0"]
    return "gateway on CPU 1; proton and wrk on CPU 0"


def parse_wrk(text: str) -> dict[str, float]:
    """Requests/sec, total requests and latency percentiles (ms) from ``wrk --latency``."""
    out: dict[str, float] = {}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if rate:
        out["rps"] = float(rate.group(1))
    if total:
        out["requests"] = float(total.group(1))
    for pct, value, unit in re.findall(
        r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE
    ):
        out[f"p{pct}_ms"] = float(value) * UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return out


def wrk(url: str, connections: int, duration: float, auth: bool) -> dict[str, float]:
    cmd = [
        *PIN_WRK,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    if auth:
        cmd += ["-H", f"Authorization: Bearer {TOKEN}"]
    done = subprocess.run(
        [*cmd, url], capture_output=True, text=True, timeout=duration + 30, check=True
    )
    return parse_wrk(done.stdout)


def run(duration: float, connections: list[int]) -> dict[str, Any]:
    cfg = SimConfig(scenario="healthy", time_scale=60.0, token=TOKEN, seed=1)
    results: dict[str, Any] = {"overhead": {}, "rate": []}
    with Simulator(cfg) as sim:
        proton_id, port = sim.call(_active_port, sim)
        results["pinning"] = pin(sim)
        direct = f"http://127.0.0.1:{port}/echo"
        via = sim.invoke_url + "echo"
        wrk(via, 4, 1.0, True)  # warm both paths (connection pools, caches)
        before = sim.proton_request_counts().get(proton_id, 0)
        d1 = wrk(direct, 1, duration, False)
        g1 = wrk(via, 1, duration, True)
        results["overhead"] = {
            "direct": d1,
            "gateway": g1,
            "added_p50_ms": g1["p50_ms"] - d1["p50_ms"],
            "added_p99_ms": g1["p99_ms"] - d1["p99_ms"],
        }
        for n in connections:
            results["rate"].append(
                {
                    "connections": n,
                    "gateway": wrk(via, n, duration, True),
                    "direct": wrk(direct, n, duration, False),
                }
            )
        routed = sim.proton_request_counts().get(proton_id, 0) - before
        sent = g1["requests"] + sum(r["gateway"]["requests"] for r in results["rate"])
        results["counted"] = {"wrk_completed": sent, "gateway_counted": routed}
    return results


def _active_port(sim: Simulator) -> tuple[str, int]:
    wl = sim.cluster.workloads[sim.workload_id]
    proton = sim.cluster.protons[wl.proton_id or ""]
    port = proton.replicas[0].port
    assert port is not None
    return proton.id, port


def report(res: dict[str, Any]) -> bool:
    """Print a Markdown summary; True when the goal is met."""
    o = res["overhead"]
    print(f"pinning: {res['pinning']}\n")
    print("| path (1 connection) | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|")
    for name in ("direct", "gateway"):
        r = o[name]
        print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    print(
        f"\nadded by the gateway: p50 {o['added_p50_ms']:.3f} ms, p99 {o['added_p99_ms']:.3f} ms\n"
    )
    print("| connections | gateway req/s | gateway p50 / p99 ms | direct req/s | non-2xx |")
    print("|---:|---:|---:|---:|---:|")
    for row in res["rate"]:
        g, d = row["gateway"], row["direct"]
        print(
            f"| {row['connections']} | {g['rps']:.0f} | {g['p50_ms']:.2f} / {g['p99_ms']:.2f} "
            f"| {d['rps']:.0f} | {g['non_2xx']:.0f} |"
        )
    best = max(row["gateway"]["rps"] for row in res["rate"])
    c = res["counted"]
    print(
        f"\nmax gateway rate: {best:.0f} req/s; wrk completed {c['wrk_completed']:.0f}, "
        f"gateway counted {c['gateway_counted']}"
    )
    ok = best >= 3000 and o["added_p50_ms"] < 1.0
    print(f"goal (>= 3000 req/s, < 1 ms p50 added): {'met' if ok else 'MISSED'}")
    return ok


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench gateway")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", default="8,32,64")
    args, _ = parser.parse_known_args(argv)
    if shutil.which("wrk") is None:
        print("bench gateway: wrk is not installed (apt-get install wrk)")
        return 2
    conns = [int(x) for x in args.connections.split(",") if x]
    return 0 if report(run(args.duration, conns)) else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
