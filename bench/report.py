"""Benchmark of ``probes report`` beside DuckDB and polars over the same shards.

Goals (issue 13): at 10M samples, everything the report does (attribution, rollout, flips,
phases, comparison, figures; percentiles exact) within 2x DuckDB's wall time and 1.5x its
peak memory computing per-version counts and exact p50/p99 (``quantile_disc``); at 100M
(``--big``: minutes, and several GB of disk), under 60 s and 6 GB.

Each run is generated in a temp dir (``make_run``: Parquet shards written with pyarrow from
numpy arrays, one series of shards per worker as real runs write them): a probe plus four
Locust workers over 600 s, ``app:1`` switching gradually to ``app:2`` between 40% and 60% of
the run, 0.5% errors, 0.2% untagged (``unknown``) answers, connection ids and modes, connect
errors, unsent and interrupted rows, and the control-plane events of a replacement (so
timeline attribution runs too). ``tests/test_report_golden.py`` uses the same generator.

Each program (``PROGRAMS``) runs in a fresh interpreter, imports included (``probes report``
is the command a user runs, ``probes.cli.main(["report", RUN_DIR])``), started by a
small wrapper whose only child it is, so the wrapper's ``getrusage(RUSAGE_CHILDREN)`` is that
program's own peak RSS. Rounds alternate the order (ABC, CBA, ...); medians are printed with
the ratios to DuckDB. duckdb and polars come from the ``bench`` extra. ``imports only`` is the
floor under any report on the required stack: the interpreter plus pandas, pyarrow and
matplotlib's Agg canvas imported, no row read.

Usage: ``python -m bench.run report [--sizes 1000000,10000000] [--big] [--rounds 2] [--keep]``;
``--run DIR`` (repeatable) measures existing run directories instead (a kept 100M run:
generating one takes ~4 min and 1.3 GB of disk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from probes.records import SAMPLE_SCHEMA, EventLog, write_table_atomic
from probes.run import Run

DURATION_S = 600.0
SHARD_ROWS = 500_000
T0 = 1_760_000_000.0
WORKERS = (
    "probe@bench:1",
    "locust@bench:11",
    "locust@bench:12",
    "locust@bench:13",
    "locust@bench:14",
)


@dataclass(frozen=True)
class Shape:
    """What a synthetic run holds beyond the default (a gradual app:1 -> app:2 replacement)."""

    duration_s: float = DURATION_S
    shard_rows: int = SHARD_ROWS
    #: Each worker writes its own shards, as real runs do (the shards are not in time order).
    per_worker: bool = False
    #: Fraction of the run at which the candidate starts / has replaced the baseline; equal
    #: bounds make an atomic switch.
    switch: tuple[float, float] = (0.4, 0.6)
    #: Connection identities, both connection modes, connect errors (status 0), rows the
    #: probe never sent (client_saturated) and rows abandoned in flight (interrupted).
    extras: bool = False
    events: bool = True
    kind: str = "load"
    slos: tuple[str, ...] = ()
    #: A slower candidate (p50 +20%): the comparison says ``worse``.
    slower_candidate: bool = False
    finished: bool = True


def _shard(
    rng: np.random.Generator, i: np.ndarray, total: int, shape: Shape, worker: np.ndarray | None
) -> pa.Table:
    """The rows numbered ``i`` of a run of ``total`` evenly spread samples."""
    n = i.size
    rel = i * (shape.duration_s / total)
    ts = T0 + rel + rng.uniform(0, 1e-4, n)
    if worker is None:
        worker = rng.integers(0, len(WORKERS), n)
    lo, hi = shape.switch
    if hi > lo:
        p_cand = np.clip((rel / shape.duration_s - lo) / (hi - lo), 0, 1)
    else:
        p_cand = (rel / shape.duration_s >= lo).astype(float)
    cand = rng.random(n) < p_cand
    version = np.where(cand, "app:2", "app:1").astype(object)
    version[rng.random(n) < 0.002] = "unknown"
    fail = rng.random(n) < 0.005
    latency = rng.lognormal(3.0, 0.5, n)  # same distribution: the verdict is "pass"
    if shape.slower_candidate:
        latency = np.where(cand, latency * 1.2, latency)
    status = np.where(fail, 503, 200).astype(np.int16)
    error = np.where(fail, "http_5xx", None).astype(object)
    intended = ts - np.where(worker == 0, rng.uniform(0, 2e-3, n), 0.0)
    conn = np.full(n, None, dtype=object)
    mode = np.full(n, "reused", dtype=object)
    if shape.extras:
        probe = worker == 0
        mode[probe & (rng.random(n) < 0.5)] = "new"
        ids = rng.integers(0, 40, n)
        conn = np.array([f"127.0.0.1:{5000 + k}#{k}" for k in range(40)], dtype=object)[ids]
        conn[~probe] = None
        connect = rng.random(n) < 0.002
        status[connect] = 0
        error[connect] = "connect"
        version[connect] = "unknown"
        latency[connect] = rng.uniform(0.01, 0.2, int(connect.sum()))
        unsent = probe & (rng.random(n) < 0.001)
        error[unsent] = "client_saturated"
        status[unsent] = 0
        version[unsent] = "unknown"
        tail = rel > shape.duration_s * 0.995
        interrupted = tail & (rng.random(n) < 0.05)
        error[interrupted] = "interrupted"
        status[interrupted] = 0
        version[interrupted] = "unknown"
        intended[probe & (rng.random(n) < 0.001)] = np.nan
    columns = {
        "ts": ts,
        "intended_ts": intended,
        "latency_ms": latency,
        "source": np.where(worker == 0, "probe", "locust"),
        "worker": np.array(WORKERS, dtype=object)[worker],
        "method": np.full(n, "POST", dtype=object),
        "name": np.full(n, "/predict", dtype=object),
        "status": status,
        "error": error,
        "version": version,
        "tag_source": np.where(version == "unknown", "none", "header"),
        "bytes": np.full(n, 512, dtype=np.int32),
        "conn": conn,
        "conn_mode": mode,
    }
    # No streamed answers: the stream columns (schema 3) are null.
    arrays = [
        pa.array(columns[f.name], type=f.type) if f.name in columns else pa.nulls(n, f.type)
        for f in SAMPLE_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SAMPLE_SCHEMA)


def _events(run_dir: Path, shape: Shape) -> None:
    duration = shape.duration_s
    log = EventLog(run_dir)
    at = T0 + shape.switch[0] * duration
    log.write("marker", "watch started", ts=T0, detail={"poll_s": 0.5})
    log.write(
        "proton",
        "running",
        ts=T0 + 1,
        proton_id="p1",
        role="active",
        detail={"version": "app:1", "artifact_id": "a1"},
    )
    log.write(
        "marker",
        "replacement requested",
        ts=at - 5,
        detail={"artifact_id": "a2", "version": "app:2"},
    )
    log.write(
        "proton",
        "running",
        ts=at - 2,
        proton_id="p2",
        role="candidate",
        detail={"version": "app:2", "artifact_id": "a2"},
    )
    for k, status in enumerate(("submitted", "staged", "promoting", "finalizing", "completed")):
        switched = at if status in ("finalizing", "completed") else None
        log.write(
            "replacement",
            status,
            ts=at - 4 + k * 0.1 * duration / 2,
            replacement_id="r1",
            detail={
                "switched_ts": switched,
                "switchedAt": None,
                "message": None,
                "inferred": False,
            },
        )
    log.write(
        "proton",
        "running",
        ts=at + 0.25 * duration,
        proton_id="p2",
        role="active",
        detail={"version": "app:2", "artifact_id": "a2"},
    )
    log.write("proton", "stopped", ts=at + 0.25 * duration + 1, proton_id="p1", role="inactive")
    log.write("marker", "watch stopped", ts=T0 + duration)
    log.close()


def _settings(shape: Shape) -> dict[str, object]:
    settings: dict[str, object] = {"slos": list(shape.slos), "bucket_s": 1.0}
    if shape.kind == "capacity":
        step = shape.duration_s / 4
        settings["capacity"] = {
            "start_users": 5,
            "step_users": 5,
            "step_seconds": step,
            "max_users": 20,
            "spawn_rate": 5.0,
            "duration_s": shape.duration_s,
        }
    return settings


def make_run(
    root: Path, total: int, seed: int = 7, shape: Shape = Shape(), name: str | None = None
) -> Path:
    """A synthetic run directory of ``total`` samples under ``root`` (deterministic per seed)."""
    run = Run.create(
        root,
        name or f"bench-{total}",
        shape.kind,
        target={"url": "http://127.0.0.1:9/"},
        settings=_settings(shape),
        started_at=T0,
    )
    rng = np.random.default_rng(seed)
    (run.path / "samples").mkdir()
    rows = shape.shard_rows
    if shape.per_worker:
        owner = rng.integers(0, len(WORKERS), total)
        for w in range(len(WORKERS)):
            mine = np.flatnonzero(owner == w)
            for k, start in enumerate(range(0, mine.size, rows)):
                part = mine[start : start + rows]
                table = _shard(rng, part, total, shape, np.full(part.size, w))
                write_table_atomic(table, run.path / "samples" / f"w{w}-{k:06d}.parquet")
    else:
        for k, start in enumerate(range(0, total, rows)):
            part = np.arange(start, min(start + rows, total))
            table = _shard(rng, part, total, shape, None)
            write_table_atomic(table, run.path / "samples" / f"bench-{k:06d}.parquet")
    if shape.events:
        _events(run.path, shape)
    if shape.finished:
        run.finish(ended_at=T0 + shape.duration_s)
    return run.path


#: The three programs measured, each run in a fresh interpreter (imports included).
PROGRAMS = {
    # The command a user runs (exit 1 is a failed verdict, still a full report).
    "probes report": """
import sys
from probes.cli import main
code = main(["report", sys.argv[1]])
sys.exit(0 if code in (0, 1) else code)
""",
    # Per-version counts and exact p50/p99 of successful latencies: the least a report does.
    "duckdb": """
import sys, duckdb
glob = sys.argv[1] + "/samples/*.parquet"
duckdb.sql(f\"\"\"select version, count(*) as n,
  quantile_disc(latency_ms, 0.5) filter (where error is null) as p50,
  quantile_disc(latency_ms, 0.99) filter (where error is null) as p99
  from read_parquet('{glob}') group by version\"\"\").fetchall()
""",
    "polars": """
import sys, polars as pl
ok = pl.col("latency_ms").filter(pl.col("error").is_null())
(pl.scan_parquet(sys.argv[1] + "/samples/*.parquet")
   .group_by("version")
   .agg(pl.len(), ok.quantile(0.5, "nearest").alias("p50"),
        ok.quantile(0.99, "nearest").alias("p99"))
   .collect())
""",
    # The floor: what the report cannot do without whatever the run holds — starting and
    # importing the required stack (pandas for the per-bucket frames, pyarrow for the shards,
    # matplotlib's Agg canvas for the figures). No row is read.
    "imports only": """
import sys, pandas, pyarrow.parquet, matplotlib
from matplotlib.figure import Figure
from matplotlib.backends.backend_agg import FigureCanvasAgg
""",
}

#: Runs one program as its only child, so RUSAGE_CHILDREN is that program's own peak.
WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
argv = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
proc = subprocess.run(argv, capture_output=True, text=True)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"rc": proc.returncode, "seconds": seconds, "peak_rss_mb": peak,
                  "stderr": proc.stderr[-2000:]}))
"""


def measure(program: str, run_dir: Path, python: str = sys.executable) -> dict[str, float]:
    """Wall time (process start to exit, imports included) and peak RSS of one program."""
    proc = subprocess.run(
        [python, "-c", WRAPPER, PROGRAMS[program], str(run_dir)],
        cwd=run_dir,  # not the checkout: `python -c` would import its packages from the cwd
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{program} failed: {result['stderr']}")
    return result


def _rows(run_dir: Path) -> int:
    import pyarrow.parquet as pq

    shards = sorted((run_dir / "samples").glob("*.parquet"))
    return sum(pq.read_metadata(p).num_rows for p in shards)


def _median(values: list[float]) -> float:
    return float(np.median(values))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench report")
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--big", action="store_true", help="add a run of 100M samples")
    parser.add_argument("--rounds", type=int, default=2, help="ABAB rounds per size")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic runs")
    parser.add_argument(
        "--run", action="append", default=[], help="measure this run dir (repeatable)"
    )
    parser.add_argument(
        "--before",
        metavar="PYTHON",
        help="also time probes report under this interpreter (another checkout's venv)",
    )
    args, _ = parser.parse_known_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.big:
        sizes.append(100_000_000)
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    programs = list(PROGRAMS) + (["report (before)"] if args.before else [])
    jobs: list[int | Path] = [Path(r) for r in args.run] or list(sizes)
    try:
        for job in jobs:
            t = time.perf_counter()
            if isinstance(job, Path):
                run_dir = job
                print(f"run {run_dir}: {_rows(run_dir):,} samples", flush=True)
            else:
                run_dir = make_run(root, job, shape=Shape(per_worker=True, extras=True))
                print(f"samples={job:,}: generated in {time.perf_counter() - t:.1f} s", flush=True)
            results: dict[str, list[dict[str, float]]] = {p: [] for p in programs}
            for k in range(args.rounds):
                for program in programs if k % 2 == 0 else programs[::-1]:
                    if program == "report (before)":
                        results[program].append(measure("probes report", run_dir, args.before))
                    else:
                        results[program].append(measure(program, run_dir))
            ref = {
                key: _median([r[key] for r in results["duckdb"]])
                for key in ("seconds", "peak_rss_mb")
            }
            for program in programs:
                secs = _median([r["seconds"] for r in results[program]])
                peak = _median([r["peak_rss_mb"] for r in results[program]])
                print(
                    f"  {program:14} time={secs:6.2f} s ({secs / ref['seconds']:4.2f}x duckdb)"
                    f" peak_rss={peak:7.0f} MB ({peak / ref['peak_rss_mb']:4.2f}x duckdb)",
                    flush=True,
                )
            if not args.keep and not isinstance(job, Path):
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        if args.keep:
            print(f"runs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("goals: 10M <= 2x duckdb time and <= 1.5x its peak RSS; 100M <= 60 s and <= 6 GB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
