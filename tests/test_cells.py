"""reports.cells: every union's percentiles equal np.percentile on its rows, bit for bit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports import cells as cells_module
from reports.cells import Cells, exact_block
from reports.stats import _PERCENTILES, LATENCY_KEYS, latency_block


def _check(latency: np.ndarray, ok: np.ndarray, parts: list[tuple[np.ndarray, int]]) -> None:
    cells = Cells(latency, ok, parts)
    saved = cells_module.CHUNK
    cells_module.CHUNK = 97  # many slices: the passes must add up to the same cells
    try:
        sliced = Cells(latency, ok, parts)
    finally:
        cells_module.CHUNK = saved
    assert sliced.raw.keys() == cells.raw.keys()
    for union, (qs, top) in cells.raw.items():
        assert sliced.raw[union][0].tobytes() == qs.tobytes() and sliced.raw[union][1] == top
    for union in itertools.product(*[[None, *range(n)] for _, n in parts]):
        rows = np.ones(latency.size, dtype=bool)
        for (codes, _), code in zip(parts, union, strict=True):
            if code is not None:
                rows &= codes == code
        assert cells.count(*union) == (int(rows.sum()), int((rows & ~ok).sum()))
        values = latency[rows & ok]
        values = values[np.isfinite(values)]
        block = cells.latency(*union)
        if values.size == 0:
            assert block == dict.fromkeys(LATENCY_KEYS)
            continue
        qs, top = cells.raw[union]
        want = np.percentile(values, _PERCENTILES)
        assert qs.tobytes() == want.tobytes(), union
        assert top == values.max()
        expected = latency_block(values)
        assert {k: v for k, v in block.items() if k != "mean"} == {
            k: v for k, v in expected.items() if k != "mean"
        }
        # summed per cell, not pairwise: the last bits differ, and so can the 3rd decimal
        # of a mean of ~1e11 (the outlier case)
        assert block["mean"] == pytest.approx(expected["mean"], rel=1e-12, abs=1e-3)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 400),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["lognormal", "ties", "negative", "nan", "outlier", "equal"]),
)
def test_every_union_matches_numpy(n: int, seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    latency = rng.lognormal(3.0, 1.0, n)
    if kind == "ties":
        latency = np.round(latency / 5) * 5
    elif kind == "negative":
        latency = latency - 20.0
        latency[rng.random(n) < 0.05] = -0.0
    elif kind == "nan":
        latency[rng.random(n) < 0.2] = np.nan
        latency[rng.random(n) < 0.05] = np.inf
    elif kind == "outlier":
        latency[rng.random(n) < 0.01] = 1e12
        latency[rng.random(n) < 0.01] = 0.0
    elif kind == "equal":
        latency[:] = 7.25
    ok = rng.random(n) < 0.9
    parts = [
        (rng.integers(0, 3, n).astype(np.int32), 3),
        (rng.integers(0, 2, n).astype(np.int32), 2),
        (rng.integers(0, 4, n).astype(np.int32), 4),
    ]
    _check(latency, ok, parts)


def test_large_groups_and_one_part() -> None:
    rng = np.random.default_rng(11)
    n = 300_000  # buckets hold many rows: the picking pass is exercised for real
    latency = rng.lognormal(3.0, 0.5, n)
    ok = rng.random(n) < 0.99
    _check(latency, ok, [(rng.integers(0, 5, n).astype(np.int32), 5)])


def test_exact_block_is_latency_block() -> None:
    values = np.random.default_rng(5).lognormal(2.0, 0.7, 10_001)
    got, want = exact_block(values), latency_block(values)
    assert {k: got[k] for k in LATENCY_KEYS if k != "mean"} == {
        k: want[k] for k in LATENCY_KEYS if k != "mean"
    }
    assert exact_block(np.array([])) == dict.fromkeys(LATENCY_KEYS)
