"""Benchmark of the canary probe against nginx on 127.0.0.1 (``python -m bench.run canary``).

Starts Debian's nginx with a generated config in a temp dir (one worker, a small static
JSON body and an ``X-Proton-Version`` header), then for each transport (httpx's default,
httpx-aiohttp) and rate (100, 1,000, 2,000 req/s) runs the probe for a few seconds and
reports: achieved vs requested rate, send lateness (``ts - intended_ts``) p50/p99, latency
p50/p99, CPU per request (process time, all threads, divided by requests). At 200 req/s it
compares the probe's latency p50 with ``wrk -t1 -c1 --latency`` on the same server.

Goal (issue 2): 2,000 req/s on one core within 1 % of requested, lateness p99 < 5 ms, and
at 200 req/s a p50 within 1 ms of wrk's. The probe process is pinned to one CPU and nginx
to the other when the machine has two or more.

Options: ``--duration S`` (default 5), ``--rates 100,1000,2000``, ``--transports aiohttp,httpx``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from probes.canary import ProbeSettings, run_probe_blocking
from probes.records import Sample, ShardWriter
from probes.settings import build_request

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{affinity}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            add_header X-Proton-Version bench-v1 always;
            return 200 '{{"version":"bench-v1","ok":true}}';
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on 127.0.0.1:{port}")


@contextmanager
def nginx(cpu: int | None) -> Iterator[str]:
    """nginx on 127.0.0.1:<free port>, stopped on exit; yields its URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise SystemExit("bench: nginx not found; install it with `apt-get install -y nginx`")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        affinity = f"worker_cpu_affinity {1 << cpu:b};" if cpu is not None else ""
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp, port=port, affinity=affinity))
        proc = subprocess.Popen([binary, "-p", tmp, "-c", str(conf), "-e", f"{tmp}/error.log"])
        try:
            _wait_listening(port)
            yield f"http://127.0.0.1:{port}/"
        finally:
            proc.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def probe_once(url: str, rate: float, duration: float, transport: str) -> dict[str, Any]:
    """One bounded probe run; numbers from its own rows."""
    rows: list[Sample] = []
    spec = build_request(url, timeout=5.0)
    settings = ProbeSettings(rate=rate, duration=duration, transport=transport)
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        writer = ShardWriter(tmp, "probe")  # the real write path, timer thread included
        cpu0, wall0 = time.process_time(), time.perf_counter()
        stats = run_probe_blocking(spec, settings, writer, on_sample=rows.append)
        writer.close()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    sent = [r for r in rows if r.error != "client_saturated"]
    ts = np.array([r.ts for r in sent])
    late = (ts - np.array([r.intended_ts for r in sent])) * 1000.0
    ok_lat = np.array([r.latency_ms for r in rows if r.error is None])
    span = float(ts.max() - ts.min()) if len(ts) > 1 else 0.0
    # Achieved rate: requests actually sent per second over the span of sends (n-1 intervals).
    achieved = (len(ts) - 1) / span if span > 0 else 0.0
    return {
        "transport": transport,
        "rate": rate,
        "scheduled": stats.scheduled,
        "sent": stats.sent,
        "ok": stats.ok,
        "errors": dict(stats.errors),
        "achieved": achieved,
        "achieved_pct": 100.0 * achieved / rate,
        "late_p50_ms": float(np.percentile(late, 50)) if len(late) else float("nan"),
        "late_p99_ms": float(np.percentile(late, 99)) if len(late) else float("nan"),
        "lat_p50_ms": float(np.percentile(ok_lat, 50)) if len(ok_lat) else float("nan"),
        "lat_p99_ms": float(np.percentile(ok_lat, 99)) if len(ok_lat) else float("nan"),
        "cpu_us_per_req": 1e6 * cpu / max(len(rows), 1),
        "cpu_share": cpu / wall if wall else 0.0,
    }


def wrk_p50(url: str, seconds: int = 5) -> dict[str, Any]:
    """wrk's closed-loop latency p50 with one connection (its own percentile output)."""
    binary = shutil.which("wrk")
    if not binary:
        return {"error": "wrk not found; install it with `apt-get install -y wrk`"}
    out = subprocess.run(
        [binary, "-t1", "-c1", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    ).stdout
    found = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        return {"error": "could not parse wrk output", "output": out}
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
    return {"p50_ms": float(found.group(1)) * scale, "rps": float(rps.group(1)) if rps else None}


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def _opt(argv: list[str], name: str, default: str) -> str:
    if name in argv:
        return argv[argv.index(name) + 1]
    return default


def main(argv: list[str]) -> int:
    duration = float(_opt(argv, "--duration", "5"))
    rates = [float(r) for r in _opt(argv, "--rates", "100,1000,2000").split(",")]
    transports = _opt(argv, "--transports", "httpx,aiohttp").split(",")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    probe_cpu, nginx_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    _pin(probe_cpu)
    print(f"probe pinned to cpu {probe_cpu}, nginx worker to cpu {nginx_cpu}; {duration:g} s runs")
    results = []
    with nginx(nginx_cpu) as url:
        run_probe_blocking(build_request(url), ProbeSettings(rate=50, duration=0.5), None)  # warm
        header = (
            f"{'transport':9} {'rate':>6} {'achieved':>9} {'%':>7} {'late p50':>9} "
            f"{'late p99':>9} {'lat p50':>8} {'lat p99':>8} {'cpu us/req':>10} {'cpu':>5} errors"
        )
        print(header)
        for rate in rates:
            for transport in transports:
                r = probe_once(url, rate, duration, transport)
                results.append(r)
                print(
                    f"{r['transport']:9} {r['rate']:6.0f} {r['achieved']:9.1f} "
                    f"{r['achieved_pct']:6.2f}% {r['late_p50_ms']:8.3f}ms "
                    f"{r['late_p99_ms']:8.3f}ms "
                    f"{r['lat_p50_ms']:7.3f}ms {r['lat_p99_ms']:7.3f}ms "
                    f"{r['cpu_us_per_req']:10.1f} {r['cpu_share']:5.0%} {r['errors'] or ''}",
                    flush=True,
                )
        print("latency p50 at 200 req/s vs wrk -t1 -c1 --latency:")
        wrk = wrk_p50(url, seconds=int(duration))
        print(f"  wrk: {wrk}")
        for transport in transports:
            r = probe_once(url, 200, duration, transport)
            diff = r["lat_p50_ms"] - wrk.get("p50_ms", float("nan"))
            print(
                f"  {transport}: p50 {r['lat_p50_ms']:.3f} ms (probe - wrk = {diff:+.3f} ms), "
                f"lateness p99 {r['late_p99_ms']:.3f} ms"
            )
    return 0
