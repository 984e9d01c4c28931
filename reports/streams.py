"""Streamed answers in the summary: the ``stream`` blocks, from the rows that streamed.

Only rows with stream columns (``tokens`` not null: sample schema 3, an answer with
``Content-Type: text/event-stream``) are kept, sparsely: their positions among the report's
rows (``Columns`` order) and their ``ttft_ms``, ``tokens``, ``itl_ms``. A run without streams
costs nothing beyond reading three null columns, and its blocks are ``null``.

A ``stream`` block (run-wide ``summary.stream``, ``versions.LABEL.stream``,
``phases[].stream``) is ``null`` without streamed answers, else::

    {requests, aborted, ttft_ms, itl_ms, tokens, tokens_per_s}

- ``requests``: streamed answers; ``aborted``: those of error class ``stream_aborted``;
- ``ttft_ms``: latency-style block ({p50, p90, p95, p99, p999, max, mean}) over every streamed
  answer that got a first content event, aborted and timed-out ones included (their first
  token came: what the caller waited for it is real);
- ``itl_ms``: the same over the answers' mean inter-token gaps (answers of two tokens or
  more);
- ``tokens``: the same over the content events per answer;
- ``tokens_per_s``: the same over each *successful* answer's tokens / ``latency_ms`` (send to
  last byte, in seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reports.cells import exact_block

#: The error class of a stream cut before its terminator (``probes.streaming``).
ABORTED = "stream_aborted"


@dataclass
class StreamRows:
    """The streamed rows: positions into the report's rows (ascending) and their figures
    (float64, NaN for null)."""

    idx: np.ndarray
    ttft: np.ndarray
    tokens: np.ndarray
    itl: np.ndarray

    def __len__(self) -> int:
        return int(self.idx.size)

    def take(self, keep: np.ndarray) -> StreamRows:
        """The rows of the mask ``keep``."""
        return StreamRows(self.idx[keep], self.ttft[keep], self.tokens[keep], self.itl[keep])


def from_values(
    ttft: np.ndarray, tokens: np.ndarray, itl: np.ndarray, offset: int = 0
) -> StreamRows | None:
    """The streamed rows among consecutive rows (positions from ``offset``): those with
    ``tokens``; None when none streamed."""
    tokens = np.asarray(tokens, dtype=np.float64)
    rows = np.flatnonzero(~np.isnan(tokens))
    if not rows.size:
        return None
    return StreamRows(
        rows.astype(np.int64) + offset,
        np.asarray(ttft, dtype=np.float64)[rows],
        tokens[rows],
        np.asarray(itl, dtype=np.float64)[rows],
    )


def concat(parts: list[StreamRows]) -> StreamRows | None:
    """Parts in row order as one (None when there are none)."""
    if not parts:
        return None
    return StreamRows(
        np.concatenate([p.idx for p in parts]),
        np.concatenate([p.ttft for p in parts]),
        np.concatenate([p.tokens for p in parts]),
        np.concatenate([p.itl for p in parts]),
    )


def reorder(rows: StreamRows | None, order: np.ndarray | None, n: int) -> StreamRows | None:
    """The rows' positions after the report's rows were put in ``order`` (``values[order]``)."""
    if rows is None or order is None:
        return rows
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n, dtype=np.int64)
    new = inverse[rows.idx]
    sort = np.argsort(new, kind="stable")
    return StreamRows(new[sort], rows.ttft[sort], rows.tokens[sort], rows.itl[sort])


def _block(values: np.ndarray) -> dict[str, float | None]:
    values = values[np.isfinite(values)]
    return exact_block(values)


def stream_block(
    rows: StreamRows | None,
    keep: np.ndarray | None,
    latency: np.ndarray,
    error: np.ndarray,
    error_labels: list[str],
) -> dict[str, Any] | None:
    """The ``stream`` block of the streamed rows in ``keep`` (a mask over ``rows``; None:
    all). ``latency`` and ``error`` (codes into ``error_labels``; ``""``: success) are the
    report's columns of every row."""
    if rows is None:
        return None
    part = rows if keep is None else rows.take(keep)
    if not len(part):
        return None
    errors = error[part.idx]
    aborted = 0
    if ABORTED in error_labels:
        aborted = int(np.count_nonzero(errors == error_labels.index(ABORTED)))
    ok = errors == error_labels.index("") if "" in error_labels else np.ones(len(part), bool)
    lat = latency[part.idx]
    good = ok & (lat > 0) & np.isfinite(part.tokens)
    rate = part.tokens[good] / (lat[good] / 1000.0)
    return {
        "requests": len(part),
        "aborted": aborted,
        "ttft_ms": _block(part.ttft),
        "itl_ms": _block(part.itl),
        "tokens": _block(part.tokens),
        "tokens_per_s": _block(rate),
    }
