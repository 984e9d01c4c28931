"""The report's sliced passes give what the whole-array forms give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports import connections
from reports.connections import disruption, positions
from reports.rollout import longest_gap_s


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3000), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_positions_and_masked_disruption(n: int, seed: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random(n) < density
    rel = np.sort(rng.uniform(0, 100, n))
    ok = rng.random(n) < rng.uniform(0.3, 1.0)
    saved = connections.CHUNK
    connections.CHUNK = 64  # many slices
    try:
        ranks = np.sort(
            rng.choice(int(mask.sum()) or 1, size=min(5, int(mask.sum())), replace=False)
        )
        assert np.array_equal(positions(mask, ranks), np.flatnonzero(mask)[ranks])
        assert disruption(rel, ok, 120.0, mask) == disruption(rel[mask], ok[mask], 120.0)
    finally:
        connections.CHUNK = saved


@pytest.mark.parametrize("n", [2, 3, (1 << 20) + 1, (1 << 20) + 2, 2 * (1 << 20) + 7])
def test_longest_gap_over_slice_boundaries(n: int) -> None:
    rng = np.random.default_rng(n)
    arrivals = rng.uniform(0, 1000, n)
    arrivals[rng.integers(0, n)] = 5000.0  # one wide gap, anywhere
    want = float(np.max(np.diff(np.sort(arrivals))))
    assert longest_gap_s(arrivals) == want
    assert longest_gap_s(arrivals.copy(), overwrite=True) == want


def test_codes_widen_when_a_column_outgrows_int8(tmp_path: Path) -> None:
    """Hundreds of distinct workers and versions across shards: the codes widen, decode to
    the same strings, and the summary is the frame path's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.report import Shape, make_run
    from probes.records import read_samples, write_table_atomic
    from reports.analysis import analyse, analyse_samples
    from reports.arrays import read_arrays
    from reports.rundir import COLUMNS

    run = make_run(tmp_path, 6_000, shape=Shape(shard_rows=1_000, events=False))
    for k, path in enumerate(sorted((run / "samples").glob("*.parquet"))):
        table = pq.read_table(path)
        n = table.num_rows
        workers = pa.array([f"w{k}-{i % 150}" for i in range(n)], pa.string())
        versions = pa.array([f"v{(k * 7 + i) % 200}" for i in range(n)], pa.string())
        table = table.set_column(table.schema.get_field_index("worker"), "worker", workers)
        table = table.set_column(table.schema.get_field_index("version"), "version", versions)
        write_table_atomic(table, path)
    samples = read_arrays(run)
    assert samples.strings["worker"].codes.dtype == np.int16
    frame = read_samples(run, columns=COLUMNS)
    kept = frame[~frame["error"].isin(["client_saturated", "interrupted"])]
    worker = samples.strings["worker"]
    assert [worker.labels[c] for c in worker.codes] == kept["worker"].astype(str).tolist()
    manifest = {"started_ts": float(frame["ts"].min()), "ended_ts": float(frame["ts"].max())}
    got = analyse_samples(samples, [], manifest, slos=None, bucket_s=1.0).summary
    want = analyse(frame, [], manifest, slos=None, bucket_s=1.0).summary
    assert got == want


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2000), st.integers(0, 2**32 - 1))
def test_versions_reached_in_slices_is_the_frame_form(n: int, seed: int) -> None:
    import pandas as pd

    from reports import cells

    rng = np.random.default_rng(seed)
    conn = rng.integers(-1, 30, n).astype(np.int32)
    version = rng.integers(0, 4, n).astype(np.int8)
    chosen = rng.choice(35, size=rng.integers(0, 10), replace=False).astype(np.int32)
    saved = cells.CHUNK
    cells.CHUNK = 64  # many slices
    try:
        got = connections._versions_reached(chosen, conn, version, 4)
    finally:
        cells.CHUNK = saved
    rows = np.isin(conn, chosen)
    pairs = pd.DataFrame({"conn": conn[rows], "version": version[rows]}).drop_duplicates()
    seen_by = pairs.groupby("conn", sort=False)["version"].agg(list)
    assert got == [[int(v) for v in seen_by.get(c, [])] for c in chosen]
