"""A run's samples as compact numpy columns, read shard by shard: the report's fast path.

``read_arrays`` reads only the columns the report uses (``reports.rundir.COLUMNS``), the
string columns decoded from Parquet as dictionaries, and turns each shard into numpy at once
(float64 times and latencies, int16 status, int32 codes into labels shared by every shard),
so the run is never held as Arrow tables of every shard, nor as a pandas frame of rows.

The codes and labels are exactly those ``probes.records.read_samples`` gives as pandas
categoricals (labels in order of first appearance, shard by shard, as Arrow unifies
dictionaries), and the rows are in the same stable ``ts`` order, so every aggregate after
this is the same, number for number, as on the frame (``tests/test_report_golden.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from probes.records import iter_samples_tables, shard_paths
from reports.rundir import COLUMNS

STRINGS = ("source", "worker", "error", "version", "conn", "conn_mode")
#: Error classes of rows the summary leaves out (``reports.analysis``: not sent, interrupted).
LEFT_OUT = ("client_saturated", "interrupted")
NUMBERS = ("ts", "latency_ms", "intended_ts", "status")


class Unsupported(Exception):
    """Samples the fast path does not read as the frame path would (null status codes)."""


@dataclass
class Coded:
    """A string column as codes into ``labels``; -1 where the value is null."""

    codes: np.ndarray
    labels: list[str]

    def count(self) -> dict[str, int]:
        """Non-null values and how often each occurs (``value_counts`` of the categorical)."""
        valid = self.codes[self.codes >= 0]
        counts = np.bincount(valid, minlength=len(self.labels))
        return {self.labels[i]: int(counts[i]) for i in np.flatnonzero(counts)}

    def filled(self, fill: str) -> tuple[np.ndarray, list[str]]:
        """(codes, labels) with nulls as ``fill`` (appended when new): ``analysis._codes``."""
        codes, labels = self.codes, list(self.labels)
        if codes.size and codes.min() < 0:
            if fill not in labels:
                labels.append(fill)
            codes = np.where(codes < 0, np.int32(labels.index(fill)), codes).astype(np.int32)
        return codes, labels


class _Labels:
    """Labels in order of first appearance over dictionary chunks, as Arrow unifies them."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self._index: dict[str, int] = {}

    def codes(self, chunk: pa.Array) -> np.ndarray:
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        lut = np.empty(len(chunk.dictionary) + 1, dtype=np.int32)
        for k, label in enumerate(chunk.dictionary.to_pylist()):
            if label not in self._index:
                self._index[label] = len(self.labels)
                self.labels.append(label)
            lut[k] = self._index[label]
        lut[-1] = -1  # nulls: index -1 picks the last entry
        indices = pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False)
        return lut[indices]


@dataclass
class Samples:
    """The report's sample columns, rows in stable ``ts`` order."""

    ts: np.ndarray
    latency: np.ndarray
    intended: np.ndarray
    status: np.ndarray
    strings: dict[str, Coded] = field(default_factory=dict)
    #: Rows left out: (never sent, ``client_saturated``; abandoned, ``interrupted``).
    lost: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return int(self.ts.size)


def _numbers(column: pa.ChunkedArray, dtype: Any) -> np.ndarray:
    return np.asarray(column.to_numpy(), dtype=dtype)


def read_arrays(run_dir: Path | str, skipped: list[dict[str, str]] | None = None) -> Samples:
    """The samples of a run (``COLUMNS``) as numpy columns, in stable ``ts`` order, the
    rows of ``LEFT_OUT`` error classes counted (``Samples.lost``) and left out.

    Unreadable shards are skipped into ``skipped`` as ``read_samples`` does; Unsupported
    when a shard holds null status codes (the frame path reads those as NaN floats)."""
    labels = {name: _Labels() for name in STRINGS}
    dtypes: dict[str, Any] = dict.fromkeys(STRINGS, np.int32)
    dtypes.update(ts=np.float64, latency_ms=np.float64, intended_ts=np.float64, status=np.int16)
    # Filled in place, shard by shard: never the shards' arrays and their concatenation at once.
    size = _rows_bound(run_dir)
    out = {name: np.empty(size, dtype) for name, dtype in dtypes.items()}
    filled = 0
    lost = dict.fromkeys(LEFT_OUT, 0)
    pool = pa.default_memory_pool()
    for table in iter_samples_tables(run_dir, COLUMNS, dictionary=True, skipped=skipped):
        if table.column("status").null_count:
            raise Unsupported("null status")
        codes = {
            name: np.concatenate([labels[name].codes(c) for c in table.column(name).chunks])
            if table.num_rows
            else np.zeros(0, np.int32)
            for name in STRINGS
        }
        # Rows that were never sent, or abandoned in flight, are counted and left out here:
        # dropping rows before the stable sort by ts keeps the others in the same order.
        keep = None
        for name in LEFT_OUT:
            if name in labels["error"].labels:
                rows = codes["error"] == labels["error"].labels.index(name)
                lost[name] += int(np.count_nonzero(rows))
                keep = ~rows if keep is None else keep & ~rows
        if keep is not None and keep.all():
            keep = None
        columns = {name: _numbers(table.column(name), dtypes[name]) for name in NUMBERS}
        columns.update(codes)
        del table, codes
        pool.release_unused()  # mimalloc keeps freed decode buffers otherwise (~240 MB at 10M)
        n = None
        for name, values in columns.items():
            part = values if keep is None else values[keep]
            n = part.size
            if filled + n > out[name].size:  # a shard grew since its metadata was read
                out[name] = np.concatenate([out[name][:filled], np.empty(filled + n, part.dtype)])
            out[name][filled : filled + n] = part
        filled += n or 0
        del columns

    ts = out.pop("ts")[:filled]
    order = None
    if ts.size > 1 and np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")
        ts = ts[order]

    def arranged(name: str) -> np.ndarray:
        values = out.pop(name)[:filled]
        return values if order is None else values[order]

    return Samples(
        ts,
        arranged("latency_ms"),
        arranged("intended_ts"),
        arranged("status"),
        {name: Coded(arranged(name), labels[name].labels) for name in STRINGS},
        lost=(lost[LEFT_OUT[0]], lost[LEFT_OUT[1]]),
    )


def _rows_bound(run_dir: Path | str) -> int:
    """Rows of every shard as their Parquet footers say (0 for one that cannot say)."""
    total = 0
    for path in shard_paths(run_dir):
        try:
            total += pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException, ValueError):
            continue
    return total
