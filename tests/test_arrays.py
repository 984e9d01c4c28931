"""reports.arrays helpers against what Arrow itself gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reports.arrays import _indices


def test_indices_match_fill_null_with_nulls_and_offsets() -> None:
    rng = np.random.default_rng(3)
    values = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, 1000)]
    values[rng.random(1000) < 0.3] = None
    array = pa.array(values, pa.string()).dictionary_encode()
    for start, length in ((0, 1000), (3, 500), (7, 993), (64, 0), (999, 1)):
        piece = array.slice(start, length)
        want = pc.fill_null(piece.indices, -1).to_numpy(zero_copy_only=False)
        assert np.array_equal(_indices(piece.indices), want)


def test_indices_without_nulls_are_the_indices() -> None:
    array = pa.array(["x", "y", "x", "z"]).dictionary_encode().slice(1)
    assert _indices(array.indices).tolist() == [1, 0, 2]
