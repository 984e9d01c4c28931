"""The report's sliced passes give what the whole-array forms give."""

from __future__ import annotations

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
