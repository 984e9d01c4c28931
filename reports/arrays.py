"""A run's samples as compact numpy columns, read shard by shard: the report's fast path.

``read_arrays`` reads only the columns the report uses (``reports.rundir.COLUMNS``), the
string columns decoded from Parquet as dictionaries, and turns each shard into numpy at once
(float64 times and latencies, int16 status, the narrowest integer codes into labels shared by
every shard: int8 until a column has more than 127 labels), so the run is never held as
Arrow tables of every shard, nor as a pandas frame of rows. ``intended_ts`` is not kept: the
probe's CO-corrected latencies are computed shard by shard (``Samples.corrected``), 8 bytes a
row fewer for the run.

The codes and labels are exactly those ``probes.records.read_samples`` gives as pandas
categoricals (labels in order of first appearance, shard by shard, as Arrow unifies
dictionaries), and the rows are in the same stable ``ts`` order, so every aggregate after
this is the same, number for number, as on the frame (``tests/test_report_golden.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from probes.records import iter_samples_tables, shard_paths
from reports.rundir import COLUMNS
from reports.streams import StreamRows, concat, from_values, reorder

STRINGS = ("source", "worker", "error", "version", "conn", "conn_mode")
#: Error classes of rows the summary leaves out (``reports.analysis``: not sent, interrupted).
LEFT_OUT = ("client_saturated", "interrupted")
NUMBERS = ("ts", "latency_ms", "status")
#: The stream columns (schema 3): kept sparsely, for the rows that streamed only.
STREAM_NUMBERS = ("ttft_ms", "tokens", "itl_ms")
#: What this path reads: ``COLUMNS`` but ``tag_source`` (only the frame path's attribution
#: rewrites it; no summary number reads it).
READ = tuple(c for c in COLUMNS if c != "tag_source")


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
        """(codes, labels) with nulls as ``fill`` (appended when new): ``analysis._codes``.
        The codes keep their dtype when the fill's code fits it."""
        codes, labels = self.codes, list(self.labels)
        if codes.size and codes.min() < 0:
            if fill not in labels:
                labels.append(fill)
            code = labels.index(fill)
            dtype = codes.dtype if code <= np.iinfo(codes.dtype).max else np.dtype(np.int32)
            codes = codes.astype(dtype, copy=False)
            codes = np.where(codes < 0, dtype.type(code), codes)
        return codes, labels


class _Labels:
    """Labels in order of first appearance over dictionary chunks, as Arrow unifies them."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.index: dict[str, int] = {}

    def codes(self, chunk: pa.Array) -> np.ndarray:
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        codes = []
        for label in chunk.dictionary.to_pylist():
            if label not in self.index:
                self.index[label] = len(self.labels)
                self.labels.append(label)
            codes.append(self.index[label])
        # The narrowest codes that hold every label so far: less to copy into the column.
        lut = np.empty(len(codes) + 1, dtype=_width(len(self.labels)))
        lut[:-1] = codes
        lut[-1] = -1  # nulls: index -1 picks the last entry
        return lut[_indices(chunk.indices)]


def _indices(indices: pa.Array) -> np.ndarray:
    """A dictionary's indices as numpy, -1 where null: straight from the Arrow buffers (no
    ``fill_null`` copy; zero-copy without nulls)."""
    dtype = np.dtype(indices.type.to_pandas_dtype())
    if not indices.null_count:
        return np.asarray(indices.to_numpy(zero_copy_only=False), dtype=dtype)
    validity, data = indices.buffers()[:2]
    start, n = indices.offset, len(indices)
    values = np.frombuffer(data, dtype=dtype, count=start + n)[start:]
    bits = np.frombuffer(validity, dtype=np.uint8)
    valid = np.unpackbits(bits, count=start + n, bitorder="little")[start:].view(bool)
    # A null's slot holds an unspecified value: never used as an index.
    return np.where(valid, values, dtype.type(-1))


@dataclass
class Samples:
    """The report's sample columns, rows in stable ``ts`` order."""

    ts: np.ndarray
    latency: np.ndarray
    status: np.ndarray
    strings: dict[str, Coded] = field(default_factory=dict)
    #: The probe's successful rows' latencies corrected for coordinated omission (ms),
    #: ``(ts - intended_ts) * 1000 + latency_ms`` (``ts`` where ``intended_ts`` is not
    #: finite), in shard order: only order-free statistics are taken of them.
    corrected: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: Rows left out: (never sent, ``client_saturated``; abandoned, ``interrupted``).
    lost: tuple[int, int] = (0, 0)
    #: The rows that streamed (positions in this order), None when none did.
    streams: StreamRows | None = None

    def __len__(self) -> int:
        return int(self.ts.size)


def _numbers(column: pa.Array, dtype: Any) -> np.ndarray:
    """A numeric column of a batch as numpy (zero-copy when it has no nulls)."""
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


#: Code dtypes, narrowest first: a column widens when its labels outgrow one.
_WIDTHS = (np.int8, np.int16, np.int32)


def _width(n_labels: int, start: Any = np.int8) -> Any:
    for dtype in _WIDTHS[_WIDTHS.index(start) :]:
        if n_labels <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"too many labels: {n_labels}")


def _corrected(
    batch: pa.RecordBatch, source: np.ndarray, error: np.ndarray, probe: int | None
) -> Any:
    """The CO-corrected latencies of one batch's successful probe rows (``Samples``)."""
    if probe is None:
        return None
    rows = (error < 0) & (source == probe)
    if not rows.any():
        return None
    ts = _numbers(batch.column("ts"), np.float64)[rows]
    it = _numbers(batch.column("intended_ts"), np.float64)[rows]
    lat = _numbers(batch.column("latency_ms"), np.float64)[rows]
    return (ts - np.where(np.isfinite(it), it, ts)) * 1000.0 + lat


def read_arrays(run_dir: Path | str, skipped: list[dict[str, str]] | None = None) -> Samples:
    """The samples of a run (``COLUMNS``) as numpy columns, in stable ``ts`` order, the
    rows of ``LEFT_OUT`` error classes counted (``Samples.lost``) and left out.

    Unreadable shards are skipped into ``skipped`` as ``read_samples`` does; Unsupported
    when a shard holds null status codes (the frame path reads those as NaN floats)."""
    labels = {name: _Labels() for name in STRINGS}
    dtypes: dict[str, Any] = dict.fromkeys(STRINGS, np.int8)
    dtypes.update(conn=np.int32, ts=np.float64, latency_ms=np.float64, status=np.int16)
    # Filled in place, shard by shard: never the shards' arrays and their concatenation at once.
    size = _rows_bound(run_dir)
    out = {name: np.empty(size, dtype) for name, dtype in dtypes.items()}
    filled = 0
    lost = dict.fromkeys(LEFT_OUT, 0)
    corrected: list[np.ndarray] = []
    streamed: list[StreamRows] = []
    pool = pa.default_memory_pool()
    tables = iter_samples_tables(run_dir, READ, dictionary=True, skipped=skipped)
    for table in _read_ahead(tables):
        if table.column("status").null_count:
            raise Unsupported("null status")
        # Row group by row group: each column's numpy view of a batch is zero-copy (or a
        # ~1 MB copy), never a shard-long concatenation in a fresh mapping of its own.
        for batch in table.to_batches():
            codes = {name: labels[name].codes(batch.column(name)) for name in STRINGS}
            part = _corrected(
                batch, codes["source"], codes["error"], labels["source"].index.get("probe")
            )
            if part is not None:
                corrected.append(part)
            # Rows that were never sent, or abandoned in flight, are counted and left out
            # here: dropping rows before the stable sort by ts keeps the others in order.
            keep = None
            for name in LEFT_OUT:
                if name in labels["error"].index:
                    rows = codes["error"] == labels["error"].index[name]
                    lost[name] += int(np.count_nonzero(rows))
                    keep = ~rows if keep is None else keep & ~rows
            if keep is not None and keep.all():
                keep = None
            part_streams = _streams(batch, keep, filled)
            if part_streams is not None:
                streamed.append(part_streams)
            columns = {name: _numbers(batch.column(name), dtypes[name]) for name in NUMBERS}
            columns.update(codes)
            n = None
            for name, values in columns.items():
                if name in STRINGS:
                    wide = _width(len(labels[name].labels), out[name].dtype.type)
                    if wide is not out[name].dtype.type:
                        out[name] = out[name].astype(wide)
                kept = values if keep is None else values[keep]
                n = kept.size
                if filled + n > out[name].size:  # a shard grew since its metadata was read
                    grown = np.empty(filled + n, out[name].dtype)
                    grown[:filled] = out[name][:filled]
                    out[name] = grown
                out[name][filled : filled + n] = kept
            filled += n or 0
            del columns, codes
        del table
        pool.release_unused()  # mimalloc keeps freed decode buffers otherwise (~240 MB at 10M)

    ts = out.pop("ts")[:filled]
    order = None
    if ts.size > 1 and np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")
    with ThreadPoolExecutor(2, thread_name_prefix="gather") as threads:

        def arranged(values: np.ndarray) -> np.ndarray:
            return values if order is None else _gather(values, order, threads)

        ts = arranged(ts)
        return Samples(
            ts,
            arranged(out.pop("latency_ms")[:filled]),
            arranged(out.pop("status")[:filled]),
            {
                name: Coded(arranged(out.pop(name)[:filled]), labels[name].labels)
                for name in STRINGS
            },
            corrected=np.concatenate(corrected) if corrected else np.zeros(0),
            lost=(lost[LEFT_OUT[0]], lost[LEFT_OUT[1]]),
            streams=reorder(concat(streamed), order, int(ts.size)),
        )


def _streams(batch: pa.RecordBatch, keep: np.ndarray | None, filled: int) -> StreamRows | None:
    """The streamed rows of one batch (those kept), positioned after the ``filled`` rows."""
    tokens = batch.column("tokens")
    if tokens.null_count == len(tokens):
        return None
    values = [
        np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        for name in STREAM_NUMBERS
    ]
    if keep is not None:
        values = [v[keep] for v in values]
    ttft, tokens_, itl = values
    return from_values(ttft, tokens_, itl, offset=filled)


def _gather(values: np.ndarray, order: np.ndarray, threads: ThreadPoolExecutor) -> np.ndarray:
    """``values[order]``, its halves taken in two threads (``np.take`` releases the GIL):
    on two cores twice as fast, and no more memory than one gather (``mode="clip"``: an
    ``out`` of mode "raise" is buffered; every index is in range)."""
    out = np.empty(order.size, values.dtype)
    half = order.size // 2
    parts = [slice(0, half), slice(half, order.size)]
    for done in [threads.submit(np.take, values, order[p], out=out[p], mode="clip") for p in parts]:
        done.result()
    return out


def _read_ahead(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The tables of ``tables``, the next one read in a thread while the caller turns the
    current one into columns: Parquet decoding releases the GIL, so on two cores decoding
    and the numpy work overlap (one more shard held at a time)."""
    done = object()
    with ThreadPoolExecutor(1, thread_name_prefix="shard-read") as pool:
        future = pool.submit(next, tables, done)
        while (table := future.result()) is not done:
            future = pool.submit(next, tables, done)
            yield table


def lean_allocation() -> None:
    """For a process that reads one large run and exits (``probes report``): Arrow's buffers
    from the system allocator, and glibc's mmap and trim thresholds fixed at 4 MB, so each
    shard's decode buffers and every run-long array go back to the OS once freed, not kept
    in mimalloc's segments or glibc's heap, while the slices' temporaries (2 MB: ``CHUNK``
    rows) are reused from the heap without page faults. 10M samples: peak RSS ~700 MB (vs
    ~720 with the defaults, ~655 with 1 MB thresholds that cost 2x the system time). Not for
    a long-lived process that writes shards."""
    pa.set_memory_pool(pa.system_memory_pool())
    # numpy asks for transparent huge pages on large arrays; with THP defrag on madvise (as
    # here) every such fault may compact memory first: 10M samples spent 3.3 s in the
    # kernel with it, 2.4 s without, and a few MB less.
    try:
        from numpy._core import multiarray

        getattr(multiarray, "_set_madvise_hugepage")(False)  # noqa: B009 (private: no stub)
    except (ImportError, AttributeError):
        pass
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 4 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: the defaults stay
        pass


def _rows_bound(run_dir: Path | str) -> int:
    """Rows of every shard as their Parquet footers say (0 for one that cannot say)."""
    total = 0
    for path in shard_paths(run_dir):
        try:
            total += pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException, ValueError):
            continue
    return total
