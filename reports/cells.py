"""Exact latency blocks of every group the summary reports, from one pass and no sort.

The summary reports the same numbers (requests, errors, error rate, exact latency
percentiles) for many overlapping groups of rows: the run, each phase, each version, each
connection mode, mode × phase and mode × version. Masking the rows of each group and
partitioning its latencies costs one pass over the run per group; ``Cells`` costs a few:

- every row gets a **cell**, its (phase, mode, version) codes; every group is the union of
  the cells that agree with it on the parts it fixes;
- every successful, finite latency gets a **bucket**: the top 16 bits of its value's place in
  the float order (the IEEE bits made unsigned-sortable, minus the smallest), so buckets are
  ordered like the values, about log-spaced, and robust to outliers;
- one ``bincount`` gives the histogram of each cell. A group's histogram is the sum of its
  cells'; the bucket and rank within it of any order statistic follow from its cumulative
  counts. One more pass picks out the rows of the (cell, bucket) pairs some group needs —
  a few hundred rows per pair — and those alone are sorted.

Order statistics are exact values of the rows, and each percentile is numpy's ``linear``
method computed from them the way ``np.percentile`` computes it (``(n - 1) * q``, neighbours,
``_lerp``), so every percentile equals ``np.percentile`` on the group's rows bit for bit
(``tests/test_cells.py``). The mean is the group's sum over its count, summed per cell: it
can differ from ``np.mean`` in the last bits, far below the 3 decimals a block keeps.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from reports.stats import _PERCENTILES, LATENCY_KEYS, _num, rate

#: Buckets per histogram (a power of two): the top 16 bits of a value's place in the order.
BUCKET_BITS = 16
#: Rows per slice of the report's passes over a run (2 MB per float64 temporary).
CHUNK = 1 << 18


def slices(n: int) -> list[slice]:
    """``CHUNK``-row slices covering ``n`` rows: per-row temporaries stay a few MB."""
    return [slice(k, min(k + CHUNK, n)) for k in range(0, n, CHUNK)]


_Q = np.true_divide(np.asarray(_PERCENTILES, dtype=np.float64), 100)
_SIGN = np.uint64(1 << 63)


def _sortable(values: np.ndarray) -> np.ndarray:
    """The float64 values as uint64 in the same order (the radix-sort trick)."""
    bits = values.view(np.uint64)
    negative = (bits & _SIGN) != 0
    return np.where(negative, ~bits, bits | _SIGN)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's ``_lerp`` (numpy/lib/_function_base_impl.py), the same operations in order."""
    diff = b - a
    out = a + diff * t
    return np.where(t >= 0.5, b - diff * (1 - t), out)


def _ranks(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(previous, next, gamma) of ``np.percentile``'s linear method for ``n`` values."""
    virtual = (n - 1) * _Q
    previous = np.floor(virtual)
    nxt = previous + 1
    above = virtual >= n - 1
    previous[above] = n - 1
    nxt[above] = n - 1
    gamma = virtual - np.where(above, -1.0, previous)  # numpy subtracts its index -1 there
    return previous.astype(np.int64), nxt.astype(np.int64), gamma


def _needed(n: int) -> np.ndarray:
    """The ranks (sorted, unique) whose values a block of ``n`` values needs."""
    previous, nxt, _ = _ranks(n)
    return np.unique(np.concatenate([previous, nxt, [n - 1]]))


class Cells:
    """Rows split into cells by the code arrays of ``parts`` (each ``(codes, n_codes)``;
    ``codes`` None puts every row at 0), with what ``block`` needs for any union of them."""

    def __init__(
        self,
        latency: np.ndarray,
        ok: np.ndarray,
        parts: Sequence[tuple[np.ndarray | None, int]],
    ) -> None:
        self.shape = tuple(max(int(n), 1) for _, n in parts)
        size = int(np.prod(self.shape)) if self.shape else 1
        self._size = size
        nb = 1 << BUCKET_BITS
        wide = (size * nb + 2 * size) >= 2**31
        itype: type[np.signedinteger[Any]] = np.int64 if wide else np.int32
        latency = np.asarray(latency, dtype=np.float64)
        n_rows = latency.size
        chunks = slices(n_rows)
        # Pass 1: the range of the good rows' places in the float order (and their sign).
        negative, low, high = False, np.iinfo(np.uint64).max, 0
        for part in chunks:
            lat = latency[part]
            good = ok[part] & np.isfinite(lat)
            negative = negative or bool(np.signbit(lat[good]).any())
        for part in chunks:
            lat = latency[part]
            good = ok[part] & np.isfinite(lat)
            if good.any():
                order = _sortable(lat) if negative else lat.view(np.uint64)
                low = min(low, int(order[good].min()))
                high = max(high, int(order[good].max()))
        shift = np.uint64(max(0, (high - low).bit_length() - BUCKET_BITS)) if high >= low else 0
        # Pass 2: one histogram of every row: good rows by (cell, bucket); the others in two
        # bins per cell after them, failed (an error) or successful with no finite latency.
        outside = size * nb
        combined = np.empty(n_rows, dtype=itype)
        sums = np.zeros(size + 1)
        for part in chunks:
            key = np.zeros(part.stop - part.start, dtype=itype)
            for (codes, _), n in zip(parts, self.shape, strict=True):
                if n > 1:
                    np.multiply(key, n, out=key)
                if codes is not None:
                    np.add(key, codes[part], out=key, casting="unsafe")
            lat, passed = latency[part], ok[part]
            good = passed & np.isfinite(lat)
            here = combined[part]
            np.multiply(key, nb, out=here)
            if high >= low:
                order = _sortable(lat) if negative else lat.view(np.uint64)
                bucket = np.subtract(order, np.uint64(low))  # wraps where not good: replaced
                np.right_shift(bucket, shift, out=bucket)
                np.add(here, bucket, out=here, casting="unsafe")
            bad = ~good
            np.copyto(here, key * 2 + passed + outside, where=bad, casting="unsafe")
            key[bad] = size
            sums += np.bincount(key, weights=np.where(good, lat, 0.0), minlength=size + 1)
        # One bincount of the whole run (its output is MBs: one per slice would be as many
        # fresh allocations), then the rows outside every histogram share one bin.
        counts = np.bincount(combined, minlength=outside + 2 * size)
        for part in chunks:
            here = combined[part]
            np.minimum(here, outside, out=here)
        hist = counts[:outside].reshape(size, nb)
        rest = counts[outside:].reshape(size, 2)
        self.counts = hist.sum(axis=1)
        self.errors = rest[:, 0].copy()
        self.requests = self.counts + rest.sum(axis=1)
        self.sums = sums[:size]
        self._blocks: dict[tuple[int | None, ...], dict[str, float | None]] = {}
        #: Unrounded (percentiles, max) per union, as ``np.percentile`` gives them.
        self.raw: dict[tuple[int | None, ...], tuple[np.ndarray, float]] = {}
        self._prepare(latency, combined, hist)

    # -- construction -------------------------------------------------------------------

    def _prepare(self, latency: np.ndarray, combined: np.ndarray, hist: np.ndarray) -> None:
        """Every union's latency block: the buckets its order statistics fall in, then one
        pass picking the rows of those buckets, sorted, and the values read off them."""
        size, nb = self._size, 1 << BUCKET_BITS
        grid = hist.reshape(*self.shape, nb)
        wanted: dict[tuple[int | None, ...], list[tuple[int, int]]] = {}
        need = np.zeros(size * nb + 1, dtype=bool)
        for union in itertools.product(*[[None, *range(n)] for n in self.shape]):
            cells = self._cells_of(union)
            n = int(self.counts[cells].sum())
            if n == 0:
                continue
            sub = grid[tuple(slice(None) if u is None else u for u in union)]
            cum = np.cumsum(sub.reshape(-1, nb).sum(axis=0))
            ranks = _needed(n)
            buckets = np.searchsorted(cum, ranks, side="right")
            before = np.where(buckets > 0, cum[np.maximum(buckets - 1, 0)], 0)
            wanted[union] = [
                (int(b), int(r - c)) for b, r, c in zip(buckets, ranks, before, strict=True)
            ]
            for b in np.unique(buckets):
                need[cells * nb + b] = True
        picked = np.flatnonzero(need[combined])
        keys = combined[picked]
        values = latency[picked]
        order = np.lexsort((values, keys))
        keys, values = keys[order], values[order]
        for union, where in wanted.items():
            cells = self._cells_of(union)
            n = int(self.counts[cells].sum())
            found: dict[int, float] = {}
            for rank, (bucket, within) in zip(_needed(n), where, strict=True):
                starts = np.searchsorted(keys, cells * nb + bucket)
                ends = np.searchsorted(keys, cells * nb + bucket + 1)
                parts = [values[a:b] for a, b in zip(starts, ends, strict=True) if b > a]
                pool = parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
                found[int(rank)] = float(pool[within])
            previous, nxt, gamma = _ranks(n)
            qs = _lerp(
                np.array([found[int(r)] for r in previous]),
                np.array([found[int(r)] for r in nxt]),
                gamma,
            )
            block: dict[str, float | None] = {
                k: _num(q) for k, q in zip(LATENCY_KEYS, qs, strict=False)
            }
            self.raw[union] = (qs, found[n - 1])
            block["max"] = _num(found[n - 1])
            block["mean"] = _num(float(self.sums[cells].sum()) / n)
            self._blocks[union] = block

    def _cells_of(self, union: tuple[int | None, ...]) -> np.ndarray:
        """Flat indices of the cells in a union (None: any code of that part)."""
        axes = [
            np.arange(n) if u is None else np.array([u])
            for u, n in zip(union, self.shape, strict=True)
        ]
        grid = np.ix_(*axes) if axes else ()
        return np.ravel_multi_index(grid, self.shape).ravel() if axes else np.zeros(1, np.int64)

    # -- queries ------------------------------------------------------------------------

    def latency(self, *union: int | None) -> dict[str, float | None]:
        """The exact latency block of a union (``latency_block`` of its rows)."""
        return dict(self._blocks.get(tuple(union), dict.fromkeys(LATENCY_KEYS)))

    def count(self, *union: int | None) -> tuple[int, int]:
        """(requests, errors) of a union."""
        cells = self._cells_of(tuple(union))
        return int(self.requests[cells].sum()), int(self.errors[cells].sum())

    def stats(self, *union: int | None) -> dict[str, Any]:
        """``{requests, errors, error_rate, latency_ms}`` of a union."""
        n, errors = self.count(*union)
        return {
            "requests": n,
            "errors": errors,
            "error_rate": rate(errors, n),
            "latency_ms": self.latency(*union),
        }

    def requests_by(self, axis: int, *union: int | None) -> np.ndarray:
        """Requests of a union split by the codes of part ``axis`` (its entry in ``union``
        is ignored)."""
        out = np.zeros(self.shape[axis], dtype=np.int64)
        for code in range(self.shape[axis]):
            fixed = list(union)
            fixed[axis] = code
            out[code] = self.count(*fixed)[0]
        return out


def exact_block(values: np.ndarray) -> dict[str, float | None]:
    """``latency_block`` of one group of values, through ``Cells`` (no partition)."""
    values = np.asarray(values, dtype=np.float64)
    return Cells(values, np.ones(values.size, dtype=bool), ()).latency()
