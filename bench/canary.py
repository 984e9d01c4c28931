"""The canary probe run as a user runs it, cold, beside peers (``python -m bench.run canary``).

Starts Debian's nginx on 127.0.0.1 with a generated config (one worker pinned to CPU 0, a
small static JSON body and an ``X-Proton-Version`` header). Each client is its own process,
started cold and pinned to CPU 1, against the same server in the same bench:

- ``probe``: ``probes observe URL --rate R --duration S`` (the console script, writing a real
  run dir; figures from the Parquet sample rows it wrote);
- ``probe-uvloop``: the same command line in a Python (``-c``) that first installs uvloop's
  event loop policy, so the probe's ``asyncio.run`` runs it on a uvloop loop: whether uvloop
  would pay, measured as a user would see it;
- ``bare`` / ``bare-uvloop``: bench/bare_aiohttp.py, a bare aiohttp open-model loop (same
  in-flight bound 256), on asyncio's loop and on uvloop;
- ``raw-uvloop``: bench/bare_raw.py, the floor below aiohttp: the same schedule and bound on
  kept-alive connections of its own (``asyncio.Protocol`` on uvloop, httptools' C parser, a
  timer per request and a callback per response, no tasks, no probe features): the least CPU
  a Python open-model loop spends per request here (latency and CPU rates only);
- ``hey`` (Debian): ``-c C -q R/C -z S -o csv`` (C workers each paced at R/C req/s: closed loop
  per worker, so it slows down rather than queues when the server is slow);
- ``autocannon`` (npm, installed by ``make bench-deps`` into .bench/node): ``-R R -d S -c 16
  -j`` (its latencies have 1 ms resolution, and it gives no per-request rows);
- ``wrk -t1 -c1`` (Debian), unpaced closed loop, only for the latency p50 at the latency rate.

A client that is not installed is reported as missing and skipped.

Figures per run: achieved vs requested rate (sends over the span of sends); latency p50/p99
(successful requests); for probe and bare loops lateness p50/p99 (``ts - intended_ts``); CPU
per request from ``/proc/PID/stat`` (utime + stime, all threads) sampled every 20 ms: the
*steady* figure is the CPU between ``first send + W`` and the last send divided by the sends
in that window (W = 2 s, or half the duration if shorter), the *total* figure the CPU from
process start to the last send divided by all sends (interpreter start-up and imports
included), and *start-up* the CPU spent before the first send. For autocannon, which has no
rows, the window is taken from process start and its sends in it are estimated from its
achieved rate. The probe's start-up transient: lateness p99 over its first T s of sends
(T = 3 s, or half the duration if shorter) against the p99 after.

Rates: the latency rate (200 req/s: latency p50 added vs the bare loop, hey, autocannon, wrk),
the CPU rate (1,000 req/s: CPU per request), and a ladder (2k, 4k, 6k, 8k req/s) for the probe
and the bare loops, each on asyncio's loop and on uvloop. A run is **steady** when it sends
>= 99 % of the requested rate, has no client_saturated row, fewer than 1 % errors and a
lateness p99 below ``--late-bound`` (10 ms).
**Max steady rate**: the ladder is climbed from the bottom and stopped at the first rung that is
not steady; then, between the highest steady rung and that first failing one, the rate is
bisected on a grid of ``--step`` req/s (500; 0: no bisection): each midpoint is run once, a
steady one raises the lower end, a failing one lowers the upper end, until they are one step
apart. The max steady rate is the highest steady rate so found (0 if the first rung fails;
the top rung if every rung is steady). Every ladder client gets the same ladder and the same
bisection, interleaved (ABAB within each bisection step). Clients run in ABAB order
(reversed every other round) for
``--rounds`` rounds; tables show medians over rounds and ratios of those medians, all from
the same bench run. Every run is bounded in time; all traffic goes to 127.0.0.1.

Options: ``--duration S`` (6), ``--rounds N`` (3), ``--latency-rate 200``, ``--cpu-rate 1000``,
``--ladder 2000,4000,6000,8000``, ``--step 500``, ``--late-bound MS`` (10), ``--clients
probe,probe-uvloop,bare,bare-uvloop,raw-uvloop,hey,autocannon``, ``--json FILE`` (default
bench/out/canary.json).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

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


ROOT = Path(__file__).resolve().parent.parent
AUTOCANNON = ROOT / ".bench" / "node" / "node_modules" / ".bin" / "autocannon"
CLIENTS = ("probe", "probe-uvloop", "bare", "bare-uvloop", "raw-uvloop", "hey", "autocannon")
LADDER_CLIENTS = ("probe", "probe-uvloop", "bare", "bare-uvloop")
#: ``probes observe`` on uvloop: its policy, then the console script's entry point.
UVLOOP_PROBES = (
    "import asyncio, sys, warnings; import uvloop\n"
    "with warnings.catch_warnings():\n"
    "    warnings.simplefilter('ignore', DeprecationWarning)\n"
    "    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())\n"
    "from probes.cli import main\n"
    "sys.argv[0] = 'probes'\n"
    "sys.exit(main())\n"
)
NAN = float("nan")


def _ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)


class CpuSampler:
    """(wall time, CPU seconds) of one process every 20 ms until it exits."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._hz = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ticks = _ticks(self.pid)
            if ticks is None:
                return
            self.samples.append((time.time(), ticks / self._hz))
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, wall: float) -> float:
        """CPU seconds used by ``wall`` (the last sample at or before it)."""
        best = 0.0
        for t, cpu in self.samples:
            if t > wall:
                break
            best = cpu
        return best


def _launch(cmd: list[str], cpu: int | None, timeout: float, tmp: Path) -> dict[str, Any]:
    """Run ``cmd`` cold, pinned to ``cpu``, bounded by ``timeout``; its output and CPU samples."""

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    out, err = tmp / "stdout", tmp / "stderr"
    with out.open("w") as fo, err.open("w") as fe:
        launched = time.time()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, preexec_fn=pin, cwd=tmp)
        sampler = CpuSampler(proc.pid)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        sampler.stop()
    return {
        "code": code,
        "launched": launched,
        "cpu": sampler,
        "stdout": out.read_text(),
        "stderr": err.read_text()[-2000:],
    }


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else NAN


def figures(
    rate: float,
    duration: float,
    ts: np.ndarray,
    ok_latency: np.ndarray,
    errors: int,
    saturated: int,
    cpu: CpuSampler,
    launched: float,
    intended: np.ndarray | None = None,
) -> dict[str, Any]:
    """The same figures for every client that has per-request rows (send times ``ts``)."""
    n = len(ts)
    first, last = (float(ts.min()), float(ts.max())) if n else (launched, launched)
    span = last - first
    achieved = (n - 1) / span if span > 0 else 0.0
    w = min(2.0, duration / 2)
    in_window = int(np.count_nonzero(ts >= first + w))
    steady_cpu = cpu.at(last) - cpu.at(first + w)
    r: dict[str, Any] = {
        "rate": rate,
        "sent": n,
        "errors": errors,
        "saturated": saturated,
        "achieved": achieved,
        "achieved_pct": 100.0 * achieved / rate,
        "lat_p50_ms": _pct(ok_latency, 50),
        "lat_p99_ms": _pct(ok_latency, 99),
        "cpu_steady_us": 1e6 * steady_cpu / in_window if in_window else NAN,
        "cpu_total_us": 1e6 * cpu.at(last) / n if n else NAN,
        "startup_cpu_ms": 1e3 * cpu.at(first),
        "startup_wall_s": first - launched,
    }
    if intended is not None:
        late = (ts - intended) * 1000.0
        t = min(3.0, duration / 2)
        early = ts < first + t
        r.update(
            late_p50_ms=_pct(late, 50),
            late_p99_ms=_pct(late, 99),
            late_p99_first_ms=_pct(late[early], 99),
            late_p99_after_ms=_pct(late[~early], 99),
        )
    return r


def run_probe(
    url: str, rate: float, duration: float, cpu: int | None, uv: bool = False
) -> dict[str, Any]:
    from probes.records import read_samples_table

    script = Path(sys.executable).with_name("probes")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "probes.cli"]
    if uv:
        cmd = [sys.executable, "-c", UVLOOP_PROBES]
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        cmd += ["observe", url, "--rate", f"{rate:g}", "--duration", f"{duration:g}"]
        cmd += ["--runs-dir", tmp, "--run-id", "run", "--quiet", "--timeout", "5"]
        res = _launch(cmd, cpu, duration + 90, Path(tmp))
        if res["code"] not in (0, 1):
            return {"error": f"probes observe exit {res['code']}: {res['stderr']}"}
        table = read_samples_table(Path(tmp) / "run", ["ts", "intended_ts", "latency_ms", "error"])
    error = np.array(table.column("error").to_pylist(), dtype=object)
    sat = error == "client_saturated"
    ok = np.array([e is None for e in error], dtype=bool)
    ts = table.column("ts").to_numpy()
    return figures(
        rate,
        duration,
        ts[~sat],
        table.column("latency_ms").to_numpy()[ok],
        int(np.count_nonzero(~ok & ~sat)),
        int(np.count_nonzero(sat)),
        res["cpu"],
        res["launched"],
        table.column("intended_ts").to_numpy()[~sat],
    )


def run_bare(
    url: str, rate: float, duration: float, cpu: int | None, uv: bool, module: str = "bare_aiohttp"
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        rows_file = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", f"bench.{module}", url, "--rate", f"{rate:g}"]
        cmd += ["--duration", f"{duration:g}", "--rows", str(rows_file)]
        cmd += ["--uvloop"] if uv else []
        env_path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_path if env_path else "")
        try:
            res = _launch(cmd, cpu, duration + 30, Path(tmp))
        finally:
            if env_path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = env_path
        if res["code"] != 0:
            return {"error": f"bare loop exit {res['code']}: {res['stderr']}"}
        rows = np.array(json.loads(rows_file.read_text()), dtype=float).reshape(-1, 4)
        summary = json.loads(res["stdout"].strip().splitlines()[-1])
    ok = rows[:, 3] == 1.0
    return figures(
        rate,
        duration,
        rows[:, 1],
        rows[:, 2][ok],
        int(np.count_nonzero(~ok)),
        int(summary["saturated"]),
        res["cpu"],
        res["launched"],
        rows[:, 0],
    )


def run_hey(url: str, rate: float, duration: float, cpu: int | None) -> dict[str, Any]:
    binary = shutil.which("hey")
    if not binary:
        return {"error": "hey not installed (apt-get install -y hey)"}
    workers = max(1, math.ceil(rate / 100))
    with tempfile.TemporaryDirectory(prefix="bench-hey-") as tmp:
        cmd = [binary, "-c", str(workers), "-q", f"{rate / workers:g}", "-z", f"{duration:g}s"]
        cmd += ["-t", "5", "-o", "csv", url]
        res = _launch(cmd, cpu, duration + 30, Path(tmp))
    lines = [ln.split(",") for ln in res["stdout"].splitlines()[1:] if ln.count(",") == 7]
    if res["code"] != 0 or not lines:
        return {"error": f"hey exit {res['code']}: {res['stderr']}"}
    data = np.array([[float(x[0]), float(x[6]), float(x[7])] for x in lines])
    ok = data[:, 1] == 200
    ts = res["launched"] + data[:, 2]  # offsets from hey's start, ~ms after the launch
    return figures(
        rate,
        duration,
        np.sort(ts),
        data[:, 0][ok] * 1000.0,
        int(np.count_nonzero(~ok)),
        0,
        res["cpu"],
        res["launched"],
    )


def run_autocannon(url: str, rate: float, duration: float, cpu: int | None) -> dict[str, Any]:
    if not AUTOCANNON.exists():
        return {"error": "autocannon not installed (make bench-deps: npm into .bench/node)"}
    seconds = max(1, round(duration))
    with tempfile.TemporaryDirectory(prefix="bench-autocannon-") as tmp:
        cmd = [str(AUTOCANNON), "-R", f"{rate:g}", "-d", str(seconds), "-c", "16", "-j", url]
        res = _launch(cmd, cpu, seconds + 30, Path(tmp))
    try:
        out = json.loads(res["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"autocannon exit {res['code']}: {res['stderr']}"}
    total = int(out["requests"]["total"])
    wall = float(out["duration"])
    achieved = total / wall if wall else 0.0
    sampler: CpuSampler = res["cpu"]
    end = sampler.samples[-1][0] if sampler.samples else res["launched"]
    w = min(2.0, duration / 2)
    window = max(end - (res["launched"] + w), 0.0)
    in_window = achieved * window  # estimated: autocannon gives no per-request rows
    return {
        "rate": rate,
        "sent": total,
        "errors": int(out["errors"]) + int(out["non2xx"]),
        "saturated": 0,
        "achieved": achieved,
        "achieved_pct": 100.0 * achieved / rate,
        "lat_p50_ms": float(out["latency"]["p50"]),
        "lat_p99_ms": float(out["latency"]["p99"]),
        "cpu_steady_us": 1e6 * (sampler.at(end) - sampler.at(res["launched"] + w)) / in_window
        if in_window
        else NAN,
        "cpu_total_us": 1e6 * sampler.at(end) / total if total else NAN,
        "startup_cpu_ms": NAN,
        "startup_wall_s": NAN,
    }


def run_client(client: str, url: str, rate: float, duration: float, cpu: int | None) -> dict:
    if client in ("probe", "probe-uvloop"):
        return run_probe(url, rate, duration, cpu, uv=client == "probe-uvloop")
    if client in ("bare", "bare-uvloop"):
        return run_bare(url, rate, duration, cpu, uv=client == "bare-uvloop")
    if client in ("raw", "raw-uvloop"):
        if importlib.util.find_spec("httptools") is None:
            return {"error": "httptools not installed (make bench-deps: the bench extra)"}
        return run_bare(url, rate, duration, cpu, uv=client == "raw-uvloop", module="bare_raw")
    if client == "hey":
        return run_hey(url, rate, duration, cpu)
    if client == "autocannon":
        return run_autocannon(url, rate, duration, cpu)
    raise ValueError(client)


def sustained(r: dict[str, Any], late_bound: float) -> bool:
    """The max-steady-rate criterion of the module docstring."""
    return (
        "error" not in r
        and r["achieved_pct"] >= 99.0
        and r["saturated"] == 0
        and r["errors"] < 0.01 * max(r["sent"], 1)
        and r.get("late_p99_ms", NAN) < late_bound
    )


def bisect(lo: float, hi: float, step: float) -> float | None:
    """The rate to try between a steady ``lo`` and a failing ``hi``, on the grid of ``step``
    req/s from ``lo``; None once they are at most one step apart (or ``step`` is 0)."""
    if step <= 0:
        return None
    steps = math.floor((hi - lo) / step + 1e-9)
    if steps < 2:
        return None
    return lo + (steps // 2) * step


def _load() -> str:
    """The 1, 5 and 15 minute load averages, for the record (CPU contention skews every run)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _median(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if key in r and not math.isnan(r[key])]
    return statistics.median(values) if values else NAN


def _opt(argv: list[str], name: str, default: str) -> str:
    if name in argv:
        return argv[argv.index(name) + 1]
    return default


def _ratio(a: float, b: float) -> float:
    """``a / b``, or NaN where ``b`` is 0 or missing (autocannon's p50 rounds to 0 ms)."""
    return a / b if b and not math.isnan(b) else NAN


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


COLUMNS = [
    ("achieved", "achieved", 1),
    ("achieved_pct", "%", 2),
    ("late_p50_ms", "late p50", 3),
    ("late_p99_ms", "late p99", 3),
    ("lat_p50_ms", "lat p50", 3),
    ("lat_p99_ms", "lat p99", 3),
    ("cpu_steady_us", "cpu us/req", 1),
    ("cpu_total_us", "total us/req", 1),
    ("startup_cpu_ms", "startup ms", 0),
]


def _row(client: str, rate: float, runs: list[dict[str, Any]]) -> str:
    if not runs or all("error" in r for r in runs):
        err = runs[0]["error"] if runs else "not run"
        return f"{client:12} {rate:6.0f}  {err.splitlines()[0] if err else ''}"
    good = [r for r in runs if "error" not in r]
    cells = " ".join(f"{_fmt(_median(good, k), d):>{max(len(h), 8)}}" for k, h, d in COLUMNS)
    errs = sum(r["errors"] for r in good)
    sat = sum(r["saturated"] for r in good)
    return f"{client:12} {rate:6.0f} {cells}  n={len(good)} err={errs} sat={sat}"


def main(argv: list[str]) -> int:
    duration = float(_opt(argv, "--duration", "6"))
    rounds = int(_opt(argv, "--rounds", "3"))
    lat_rate = float(_opt(argv, "--latency-rate", "200"))
    cpu_rate = float(_opt(argv, "--cpu-rate", "1000"))
    ladder = [float(r) for r in _opt(argv, "--ladder", "2000,4000,6000,8000").split(",")]
    step = float(_opt(argv, "--step", "500"))
    late_bound = float(_opt(argv, "--late-bound", "10"))
    clients = _opt(argv, "--clients", ",".join(CLIENTS)).split(",")
    json_out = Path(_opt(argv, "--json", str(ROOT / "bench" / "out" / "canary.json")))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    client_cpu, nginx_cpu = (cpus[1], cpus[0]) if len(cpus) >= 2 else (None, None)
    if nginx_cpu is not None:
        os.sched_setaffinity(0, {nginx_cpu})  # the bench itself stays off the client's CPU
    print(
        f"clients pinned to cpu {client_cpu}, nginx worker and the bench to cpu {nginx_cpu}; "
        f"{duration:g} s runs, {rounds} ABAB round(s), late bound {late_bound:g} ms; "
        f"load average {_load()} (the machine may be shared: every ratio is from this run)"
    )
    load_before = _load()
    results: dict[tuple[str, float], list[dict[str, Any]]] = {}
    ladder_clients = [c for c in clients if c in LADDER_CLIENTS]
    max_rate: dict[str, list[float]] = {c: [] for c in ladder_clients}
    wrk: list[dict[str, Any]] = []
    with nginx(nginx_cpu) as url:
        for rnd in range(rounds):
            order = clients if rnd % 2 == 0 else clients[::-1]
            for rate in (lat_rate, cpu_rate):
                for c in order:
                    r = run_client(c, url, rate, duration, client_cpu)
                    results.setdefault((c, rate), []).append(r)
            wrk.append(wrk_p50(url, seconds=max(1, round(duration))))
            alive = list(ladder_clients if rnd % 2 == 0 else ladder_clients[::-1])
            best = {c: 0.0 for c in alive}
            failed: dict[str, float] = {}
            for rate in ladder:
                for c in list(alive):
                    r = run_client(c, url, rate, duration, client_cpu)
                    results.setdefault((c, rate), []).append(r)
                    if sustained(r, late_bound):
                        best[c] = rate
                    else:
                        alive.remove(c)
                        failed[c] = rate
            # Bisect between the highest steady rung and the first failing one, every client
            # interleaved: each step runs every client that still has a gap wider than a step.
            bounds = {c: (best[c], failed[c]) for c in best if c in failed and best[c] > 0}
            while step > 0:
                mids = {c: mid for c, (lo, hi) in bounds.items() if (mid := bisect(lo, hi, step))}
                if not mids:
                    break
                for c, mid in mids.items():
                    r = run_client(c, url, mid, duration, client_cpu)
                    results.setdefault((c, mid), []).append(r)
                    lo, hi = bounds[c]
                    bounds[c] = (mid, hi) if sustained(r, late_bound) else (lo, mid)
                    best[c] = bounds[c][0]
            for c, b in best.items():
                max_rate[c].append(b)
            print(f"round {rnd + 1}/{rounds} done; max steady rate {best}", flush=True)

    header = f"{'client':12} {'rate':>6} " + " ".join(
        f"{h:>{max(len(h), 8)}}" for _, h, _ in COLUMNS
    )
    print("\nmedians over rounds (ms; CPU in us per request from /proc/PID/stat):")
    print(header)
    rates = [lat_rate, cpu_rate, *sorted({r for _, r in results} - {lat_rate, cpu_rate})]
    for rate in rates:
        for c in clients:
            if (c, rate) in results:
                print(_row(c, rate, results[(c, rate)]))

    def med(c: str, rate: float, key: str) -> float:
        return _median([r for r in results.get((c, rate), []) if "error" not in r], key)

    wrk_p50_ms = statistics.median([w["p50_ms"] for w in wrk if "p50_ms" in w] or [NAN])
    print(f"\nwrk -t1 -c1 (closed loop, unpaced) latency p50: {_fmt(wrk_p50_ms)} ms")
    subjects = [c for c in ("probe", "probe-uvloop") if c in clients]
    for subject in subjects:
        print(f"\nratios (medians of the same bench run); {subject} vs peer:")
        print(
            f"{'peer':24} {'p50 added @' + f'{lat_rate:g}':>16} {'p50 ratio':>10} "
            f"{'cpu ratio @' + f'{cpu_rate:g}':>16} {'total cpu ratio':>16} {'max rate ratio':>15}"
        )
        subject_max = statistics.median(max_rate[subject]) if max_rate.get(subject) else NAN
        subject_p50 = med(subject, lat_rate, "lat_p50_ms")
        others = [c for c in clients if c not in subjects] if subject != "probe" else clients
        for peer in [c for c in others if c != subject] + ["wrk"]:
            p50 = wrk_p50_ms if peer == "wrk" else med(peer, lat_rate, "lat_p50_ms")
            cpu_ratio, tot_ratio = (
                _ratio(med(subject, cpu_rate, key), med(peer, cpu_rate, key))
                if peer != "wrk"
                else NAN
                for key in ("cpu_steady_us", "cpu_total_us")
            )
            peer_max = statistics.median(max_rate[peer]) if max_rate.get(peer) else NAN
            print(
                f"{subject + '/' + peer:24} {_fmt(subject_p50 - p50):>13} ms "
                f"{_fmt(_ratio(subject_p50, p50), 2):>10} "
                f"{_fmt(cpu_ratio, 2):>16} {_fmt(tot_ratio, 2):>16} "
                f"{_fmt(_ratio(subject_max, peer_max), 2):>15}"
            )
    print(
        "\nmax steady rate (median over rounds; ladder "
        + ",".join(f"{r:g}" for r in ladder)
        + f", bisected in steps of {step:g}):"
    )
    for c, values in max_rate.items():
        print(f"  {c:12} {statistics.median(values) if values else NAN:g} req/s  rounds: {values}")
    for subject in subjects:
        print(f"\n{subject} start-up transient: lateness p99 over its first sends vs after (ms):")
        for rate in rates:
            runs = [r for r in results.get((subject, rate), []) if "error" not in r]
            if not runs:
                continue
            print(
                f"  {rate:6.0f} req/s: first {_fmt(_median(runs, 'late_p99_first_ms'))} "
                f"after {_fmt(_median(runs, 'late_p99_after_ms'))}; start-up wall "
                f"{_fmt(_median(runs, 'startup_wall_s'), 2)} s, CPU "
                f"{_fmt(_median(runs, 'startup_cpu_ms'), 0)} ms"
            )
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(
        json.dumps(
            {
                "duration": duration,
                "load_average": {"start": load_before, "end": _load()},
                "rounds": rounds,
                "late_bound_ms": late_bound,
                "ladder": ladder,
                "step": step,
                "wrk": wrk,
                "max_steady_rate": max_rate,
                "runs": [{"client": c, **r} for (c, _), rs in results.items() for r in rs],
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nload average at the end {_load()}; all runs: {json_out}")
    return 0
