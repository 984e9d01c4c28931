"""Micro-benchmark of the canary probe's own cost against a bare aiohttp open-model loop.

Not a test and not the official comparison (bench/canary.py runs the CLI beside peers): a
quick harness for the probe's hot path. A small aiohttp server runs pinned on CPU 0; each
contender runs in its own cold process pinned on CPU 1, at ``--rate`` for ``--duration`` s,
ABAB over ``--rounds``; printed per contender are medians of CPU µs per request, latency p50
(ms), lateness p99 over the first 3 s and over the rest (ms), and requests answered per second.

    python bench/probe_micro.py --rate 1000 --duration 6 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

SERVER = """
import sys
from aiohttp import web
async def ok(request):
    return web.Response(text='{"version": "v1"}', headers={"X-Proton-Version": "v1"})
app = web.Application(); app.router.add_get("/", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

BARE = """
import asyncio, json, resource, sys, time
import aiohttp
url, rate, duration, loopname = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
async def main():
    rows = []
    async with aiohttp.ClientSession() as session:
        async def one(intended):
            ts = time.monotonic(); t0 = time.perf_counter()
            try:
                async with session.get(url) as r:
                    await r.read()
                    ok = r.status == 200
            except Exception:
                ok = False
            rows.append((intended, ts, (time.perf_counter() - t0) * 1000, ok))
        tasks = set(); n = int(rate * duration)
        c0 = time.process_time(); start = time.monotonic(); i = 0
        while i < n:
            now = time.monotonic()
            while i < n and start + i / rate <= now:
                t = asyncio.create_task(one(start + i / rate)); tasks.add(t)
                t.add_done_callback(tasks.discard); i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        while tasks:
            await asyncio.wait(set(tasks))
        cpu = time.process_time() - c0; end = time.monotonic()
    return rows, cpu, start, end
factory = __import__("uvloop").new_event_loop if loopname == "uvloop" else None
runner = asyncio.Runner(loop_factory=factory)
rows, cpu, start, end = runner.run(main())
out = [(a - start, b - a, c, d) for a, b, c, d in rows]
print(json.dumps({"rows": out, "cpu": cpu, "elapsed": end - start}))
"""

PROBE = """
import asyncio, json, sys, tempfile, time
url, rate, duration, loopname, transport = sys.argv[1:6]
rate, duration = float(rate), float(duration)
from probes.canary import ProbeSettings, run_probe
from probes.records import ShardWriter, warm_writer
warm_writer()  # start-up cost, paid before the probe's schedule: not counted per request
from probes.settings import RequestSpec
rows = []
spec = RequestSpec(url=url)
settings = ProbeSettings(rate=rate, duration=duration, transport=transport, max_in_flight=2000)
with tempfile.TemporaryDirectory() as d:
    writer = ShardWriter(d, "probe")
    factory = __import__("uvloop").new_event_loop if loopname == "uvloop" else None
    runner = asyncio.Runner(loop_factory=factory)
    c0 = time.process_time()
    stats = runner.run(run_probe(spec, settings, writer, on_sample=rows.append))
    cpu = time.process_time() - c0
    writer.close()
start = stats.started_ts
out = [(s.intended_ts - start, s.ts - s.intended_ts, s.latency_ms, s.error is None) for s in rows]
print(json.dumps({"rows": out, "cpu": cpu, "elapsed": stats.ended_ts - start}))
"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_one(code: str, args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", "1", sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    data = json.loads(out)
    rows = data["rows"]
    ok = [r for r in rows if r[3]]
    first = [r[1] * 1000 for r in rows if r[0] < 3.0]
    rest = [r[1] * 1000 for r in rows if r[0] >= 3.0]
    return {
        "cpu_us": data["cpu"] / max(len(rows), 1) * 1e6,
        "p50_ms": pct([r[2] for r in ok], 0.5),
        "late_p99_first3_ms": pct(first, 0.99),
        "late_p99_rest_ms": pct(rest, 0.99),
        "answered_per_s": len(ok) / data["elapsed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--duration", type=float, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--contenders", default="bare:asyncio,probe:asyncio,bare:uvloop,probe:uvloop")
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", SERVER, str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/"
        results: dict[str, list[dict[str, float]]] = {}
        for _ in range(a.rounds):
            for c in a.contenders.split(","):
                kind, loop = c.split(":")[:2]
                transport = c.split(":")[2] if c.count(":") == 2 else "aiohttp"
                base = [url, str(a.rate), str(a.duration), loop]
                res = run_one(BARE, base) if kind == "bare" else run_one(PROBE, [*base, transport])
                results.setdefault(c, []).append(res)
        for c, runs in results.items():
            med = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
            print(c, json.dumps(med))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
