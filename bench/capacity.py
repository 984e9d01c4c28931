"""Benchmark of the capacity report, and the knee methods compared on the same step tables.

1. **Report time** (issue 10: under 10 s): a synthetic 1-hour, 20-step capacity run (users
   10, 20, … 200 for 180 s each; throughput 12 req/s per user up to a plateau at 1,500 req/s,
   closed-model latency that grows past it, 0.1% errors), written as Parquet shards of 500k
   rows from numpy arrays. ``reports.make_report`` (summary, figures, HTML/Markdown) then runs
   in a fresh interpreter; its wall time is what a user waits for after the last step.
2. **Knee methods** (``--compare``, also run by default): ``reports.capacity.find_knee``
   (saturation from the USL fit, position from the steps) against Kneedle (``kneed``,
   concave/increasing on throughput vs load, default sensitivity; the same SLO rule on top)
   on the step tables of ``step_tables`` — linear then flat, retrograde (κ > 0), the SLO broken
   before saturation, still scaling — exact, and with ±5% noise on every step's throughput.
   A knee is *right* when its case agrees (``scaling``: no knee), it lies within one step of
   the true knee and the true throughput there is within 10% of the true knee's.

Usage: ``python -m bench.run capacity [--repeats 200] [--no-report] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from probes.records import MISSING_DEFAULTS, SAMPLE_SCHEMA, write_table_atomic
from probes.run import Run
from reports.capacity import Knee, StepPlan, find_knee, fit_usl, usl

T0 = 1_760_000_000.0
SHARD_ROWS = 500_000
PLAN = StepPlan(
    start_users=10, step_users=10, step_seconds=180.0, max_users=200, spawn_rate=10.0,
    duration_s=3600.0,
)  # fmt: skip
PER_USER_RPS, PLATEAU_RPS = 12.0, 1500.0


@dataclass(frozen=True)
class StepTable:
    """A synthetic step table with a known answer: the true knee's index (None: no knee)."""

    name: str
    case: str
    x: np.ndarray
    rps: np.ndarray  # noise-free
    within_slo: np.ndarray
    knee: int | None


def _tables() -> Iterator[StepTable]:
    ones = np.ones
    for lam, top, x in ((20, 100, np.arange(1, 13.0)), (13, 194, np.arange(5, 50, 5.0)),
                        (10, 60, np.arange(2, 26, 2.0))):  # fmt: skip
        rps = np.minimum(lam * x, top)
        yield StepTable(f"flat {lam}/user to {top}", "plateau", x, rps, ones(x.size, bool),
                        int(np.argmax(rps >= top)))  # fmt: skip
    x = np.arange(1, 13.0)
    rounded = (np.power(20 * x, -4.0) + 100.0**-4) ** -0.25  # a corner rounded by queueing
    yield StepTable("rounded flat", "plateau", x, rounded, ones(x.size, bool),
                    int(np.argmax(rounded >= 0.95 * rounded.max())))  # fmt: skip
    flat = np.minimum(20 * x, 100)
    yield StepTable("flat, SLO broken later", "plateau", x, flat, np.arange(x.size) < 8, 4)
    for lam, sigma, kappa, x in ((25, 0.0, 1 / 36, np.arange(1, 13.0)),
                                 (20, 0.03, 0.004, np.arange(2, 32, 2.0)),
                                 (30, 0.05, 0.02, np.arange(1, 13.0))):  # fmt: skip
        rps = usl(x, lam, sigma, kappa)
        yield StepTable(f"retrograde κ={kappa:.3g}", "retrograde", x, rps, ones(x.size, bool),
                        int(np.argmax(rps)))  # fmt: skip
    for lam, x, fail in ((20, np.arange(1, 13.0), 6), (13, np.arange(5, 50, 5.0), 4)):
        rps = usl(x, lam, 0.01, 0.0)
        yield StepTable(f"SLO broken at step {fail}", "slo", x, rps, np.arange(x.size) < fail,
                        fail - 1)  # fmt: skip
    x = np.arange(1, 13.0)
    yield StepTable("linear", "scaling", x, 20 * x, ones(x.size, bool), None)


def step_tables() -> list[StepTable]:
    """The step tables both knee methods are judged on (exact throughput)."""
    return list(_tables())


def noisy(rps: np.ndarray, rng: np.random.Generator, share: float = 0.05) -> np.ndarray:
    """``rps`` with every step off by up to ``share`` (uniform)."""
    return rps * rng.uniform(1 - share, 1 + share, rps.size)


def kneedle_knee(x: np.ndarray, rps: np.ndarray, within_slo: np.ndarray) -> Knee:
    """Kneedle's knee of throughput vs load, with the same SLO rule as ``find_knee``."""
    from kneed import KneeLocator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no knee/elbow found"
        found = KneeLocator(x, rps, curve="concave", direction="increasing").knee
    at = None if found is None else int(np.argmin(np.abs(x - found)))
    fail = int(np.argmin(within_slo)) if not within_slo.all() else None
    if fail is not None and (at is None or fail <= at):
        return Knee(fail - 1 if fail > 0 else None, "slo")
    return Knee(at, "scaling" if at is None else "plateau")


def is_right(table: StepTable, got: Knee, *, check_case: bool) -> bool:
    """Within one step of the true knee, with a true throughput within 10% of the knee's."""
    if table.knee is None or got.index is None:
        return table.knee is None and got.index is None
    if check_case and got.case != table.case:
        return False
    step = float(np.min(np.diff(table.x)))
    near = abs(table.x[got.index] - table.x[table.knee]) <= step + 1e-9
    return near and abs(table.rps[got.index] - table.rps[table.knee]) <= 0.1 * table.rps[table.knee]


def compare(repeats: int, seed: int = 10) -> dict[tuple[str, str], list[int]]:
    """``{(case, "exact"|"±5%"): [tables, model right, model case right, kneedle right]}``."""
    rng = np.random.default_rng(seed)
    score: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for noise, n in (("exact", 1), ("±5%", repeats)):
        for _ in range(n):
            for table in step_tables():
                rps = table.rps if noise == "exact" else noisy(table.rps, rng)
                ours = find_knee(table.x, rps, table.within_slo, fit_usl(table.x, rps))
                theirs = kneedle_knee(table.x, rps, table.within_slo)
                row = score[(table.case, noise)]
                row[0] += 1
                row[1] += is_right(table, ours, check_case=False)
                row[2] += is_right(table, ours, check_case=True)
                row[3] += is_right(table, theirs, check_case=False)
    return dict(score)


def _shard(rng: np.random.Generator, ts: np.ndarray, latency: np.ndarray) -> pa.Table:
    n = ts.size
    fail = rng.random(n) < 0.001
    columns = {
        "ts": ts,
        "intended_ts": ts,
        "latency_ms": np.where(fail, 5.0, latency),
        "source": np.full(n, "locust", dtype=object),
        "worker": np.full(n, "locust@bench:1", dtype=object),
        "method": np.full(n, "POST", dtype=object),
        "name": np.full(n, "/predict", dtype=object),
        "status": np.where(fail, 503, 200).astype(np.int16),
        "error": np.where(fail, "http_5xx", None),
        "version": np.full(n, "app:1", dtype=object),
        "tag_source": np.full(n, "header", dtype=object),
        "bytes": np.full(n, 512, dtype=np.int32),
        "conn": np.full(n, None, dtype=object),
    }
    # Columns added since (conn_mode, the stream columns): their documented defaults.
    arrays = [
        pa.array(columns[f.name], type=f.type)
        if f.name in columns
        else pa.array([MISSING_DEFAULTS[f.name]] * n, type=f.type)
        for f in SAMPLE_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SAMPLE_SCHEMA)


def make_run(root: Path, seed: int = 7) -> tuple[Path, int]:
    """A synthetic 20-step capacity run directory under ``root``; (path, samples)."""
    run = Run.create(
        root, "bench-capacity", "capacity", target={"url": "http://127.0.0.1:9/"},
        settings={"slos": ["p99_ms<2000", "error_rate<0.01"], "bucket_s": 1.0,
                  "capacity": PLAN.describe()},
        started_at=T0,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    (run.path / "samples").mkdir()
    ts_parts, lat_parts = [], []
    for k in range(PLAN.n_steps):
        users = PLAN.users(k)
        rps = min(PER_USER_RPS * users, PLATEAU_RPS)
        n = int(rps * PLAN.step_seconds)
        ts_parts.append(T0 + k * PLAN.step_seconds + np.sort(rng.uniform(0, PLAN.step_seconds, n)))
        mean_ms = 1000.0 * users / rps  # Little's law in a closed model without think time
        lat_parts.append(rng.gamma(4.0, mean_ms / 4.0, n))
    ts, latency = np.concatenate(ts_parts), np.concatenate(lat_parts)
    ts[0] = T0
    for k, start in enumerate(range(0, ts.size, SHARD_ROWS)):
        part = slice(start, start + SHARD_ROWS)
        table = _shard(rng, ts[part], latency[part])
        write_table_atomic(table, run.path / "samples" / f"bench-{k:06d}.parquet")
    run.update(capacity={"stopped_ts": None, "stopped_at_users": None, "interrupted": None})
    run.finish(ended_at=T0 + PLAN.planned_s)
    return run.path, int(ts.size)


CHILD = """
import json, sys, time
t = time.perf_counter()
from reports import make_report
s = make_report(sys.argv[1])
c = s["capacity"]
print(json.dumps({"seconds": time.perf_counter() - t, "steps": len(c["steps"]),
                  "knee_users": c["knee_users"], "knee_rps": c["knee_rps"],
                  "knee_case": c["knee_case"], "model": c["model"]}))
"""


def measure(run_dir: Path) -> dict[str, object]:
    """Wall time of make_report (summary, figures, HTML, Markdown) in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(run_dir)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"make_report failed: {proc.stderr[-2000:]}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _print_comparison(score: dict[tuple[str, str], list[int]]) -> None:
    print("| case | steps | tables | USL-aided knee right | its case right | Kneedle right |")
    print("|---|---|---:|---:|---:|---:|")
    totals = [0, 0, 0, 0]
    for (case, noise), row in sorted(score.items()):
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        print(f"| {case} | {noise} | {row[0]} | {row[1]} | {row[2]} | {row[3]} |")
    n = totals[0]
    print(
        f"| all | | {n} | {totals[1]} ({totals[1] / n:.1%}) | {totals[2]} ({totals[2] / n:.1%})"
        f" | {totals[3]} ({totals[3] / n:.1%}) |",
        flush=True,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench capacity")
    parser.add_argument("--repeats", type=int, default=200, help="noisy copies of each table")
    parser.add_argument("--no-report", action="store_true", help="only compare knee methods")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic run")
    args, _ = parser.parse_known_args(argv)
    t = time.perf_counter()
    _print_comparison(compare(args.repeats))
    print(f"(compared in {time.perf_counter() - t:.1f} s)")
    if args.no_report:
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    try:
        t = time.perf_counter()
        run_dir, samples = make_run(root)
        gen = time.perf_counter() - t
        r = measure(run_dir)
        print(
            f"capacity run: {PLAN.n_steps} steps, {PLAN.planned_s:.0f} s, {samples:,} samples "
            f"(generated in {gen:.1f} s); report in {r['seconds']:.2f} s; knee {r['knee_rps']} "
            f"req/s at {r['knee_users']} users ({r['knee_case']}); model {r['model']}",
            flush=True,
        )
        print(f"goal (< 10 s): {'met' if float(r['seconds']) < 10 else 'NOT met'}")  # type: ignore[arg-type]
    finally:
        if args.keep:
            print(f"run kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
