"""Record formats: the contract between every stage of proton-probe.

**Sample** — one row per request, from the canary probe or a Locust user, in Parquet shards
under ``RUN_DIR/samples/``. One schema, defined here once:

==============  ===========  ===================================================================
column          type         meaning
==============  ===========  ===================================================================
``ts``          float64      epoch seconds when the request was actually sent
``intended_ts`` float64      when an open-model sender meant to send it (= ``ts`` for Locust)
``latency_ms``  float64      send to full response (or to failure)
``source``      string       ``probe`` or ``locust``
``worker``      string       which caller recorded it: the process (``role@host:pid``), and
                             for a Locust user also the user (``…/u7``): flips are per caller
``method``      string       HTTP method
``name``        string       request name (path or Locust name)
``status``      int16        HTTP status; 0 when no response arrived
``error``       string/null  null on success; else a short class (see ``ERROR_CLASSES``)
``version``     string       proton version label; ``unknown`` when nothing reveals one
``tag_source``  string       how ``version`` was found: header, json, regex, timeline, none
``bytes``       int32        response body size
``conn``        string/null  connection identity where the client exposes it
==============  ===========  ===================================================================

Latency corrected for coordinated omission is ``ts - intended_ts + latency_ms / 1000``.

**Event** — one JSON object per line in ``RUN_DIR/events.jsonl``: ``ts``, ``kind``
(``replacement``, ``workload``, ``proton``, ``marker``), ``status`` and optional
``replacement_id``, ``proton_id``, ``role``, ``detail``.

**Manifest** — ``RUN_DIR/manifest.json``: run id, kind, target (secrets masked), tagging
rules, load settings, tool versions, start and end.

Shards are written atomically (a temp file, then a rename) every ``flush_interval`` seconds
and on close, so a killed run loses at most the rows of the last interval and a half-written
shard is never read.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from probes.errors import RunDirError


class Sample(NamedTuple):
    """One request as a caller saw it; field order is the Parquet column order."""

    ts: float
    intended_ts: float
    latency_ms: float
    source: str
    worker: str
    method: str
    name: str
    status: int
    error: str | None
    version: str
    tag_source: str
    bytes: int
    conn: str | None


SAMPLE_SCHEMA = pa.schema(
    [
        ("ts", pa.float64()),
        ("intended_ts", pa.float64()),
        ("latency_ms", pa.float64()),
        ("source", pa.string()),
        ("worker", pa.string()),
        ("method", pa.string()),
        ("name", pa.string()),
        ("status", pa.int16()),
        ("error", pa.string()),
        ("version", pa.string()),
        ("tag_source", pa.string()),
        ("bytes", pa.int32()),
        ("conn", pa.string()),
    ]
)
SAMPLE_COLUMNS: tuple[str, ...] = tuple(SAMPLE_SCHEMA.names)
assert Sample._fields == SAMPLE_COLUMNS

#: Columns read back as pandas categoricals (few distinct values, many rows).
CATEGORY_COLUMNS = ("source", "worker", "method", "name", "error", "version", "tag_source", "conn")

SOURCES = ("probe", "locust")
TAG_SOURCES = ("header", "json", "regex", "timeline", "none")
UNKNOWN_VERSION = "unknown"
ERROR_CLASSES = (
    "timeout",
    "connect",
    "reset",
    "protocol",
    "http_5xx",
    "http_4xx",
    "client_saturated",  # the open-model probe's in-flight bound was hit: not sent
    "other",
)
EVENT_KINDS = ("replacement", "workload", "proton", "marker")

SAMPLES_DIR = "samples"
EVENTS_FILE = "events.jsonl"
MANIFEST_FILE = "manifest.json"


def http_error_class(status: int) -> str | None:
    """The ``error`` class of an HTTP status that arrived: ``http_5xx``, ``http_4xx`` or None."""
    if status >= 500:
        return "http_5xx"
    if status >= 400:
        return "http_4xx"
    return None


def samples_to_table(rows: Iterable[Sample] | list[tuple[Any, ...]]) -> pa.Table:
    """Build an Arrow table in the sample schema from sample tuples."""
    rows = list(rows)
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in SAMPLE_COLUMNS]
    arrays = [
        pa.array(col, type=field.type) for col, field in zip(columns, SAMPLE_SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=SAMPLE_SCHEMA)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file so that readers see either nothing or the whole file."""
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


class ShardWriter:
    """Buffers samples and writes them as Parquet shards, atomically, on a timer and on close.

    Thread-safe: ``add`` may be called from any thread (or greenlet). Nothing grows without
    bound: the buffer is handed to a shard at least every ``flush_interval`` seconds or every
    ``max_rows`` rows, whichever comes first. Shards are named ``{prefix}-{seq:06d}.parquet``.
    """

    def __init__(
        self,
        run_dir: Path | str,
        prefix: str,
        *,
        flush_interval: float = 1.0,
        max_rows: int = 200_000,
        background: bool = True,
    ) -> None:
        self.directory = Path(run_dir) / SAMPLES_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.flush_interval = flush_interval
        self.max_rows = max_rows
        self.rows_written = 0
        self.last_error: Exception | None = None
        self._rows: list[Sample] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._seq = itertools.count(self._next_seq())
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._flush_loop, name=f"shards-{prefix}", daemon=True
            )
            self._thread.start()

    def _next_seq(self) -> int:
        # After the highest existing shard: a resumed writer never overwrites one.
        seqs = []
        for path in self.directory.glob(f"{self.prefix}-*.parquet"):
            tail = path.stem[len(self.prefix) + 1 :]
            if tail.isdigit():
                seqs.append(int(tail))
        return max(seqs, default=-1) + 1

    def add(self, sample: Sample) -> None:
        """Queue one sample; it is on disk after the next flush."""
        with self._lock:
            self._rows.append(sample)
            full = len(self._rows) >= self.max_rows
        if full:
            self.flush()

    def add_many(self, samples: Iterable[Sample]) -> None:
        """Queue several samples at once."""
        with self._lock:
            self._rows.extend(samples)
            full = len(self._rows) >= self.max_rows
        if full:
            self.flush()

    @property
    def pending(self) -> int:
        """Rows queued but not yet on disk."""
        return len(self._rows)

    def flush(self) -> None:
        """Write every queued row to a new shard now (no-op when nothing is queued).

        If the write fails the rows go back to the front of the queue, so a full or
        failing disk loses nothing that a later flush can still write.
        """
        # One writer at a time keeps shard sequence numbers in write order.
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return
            path = self.directory / f"{self.prefix}-{next(self._seq):06d}.parquet"
            try:
                write_table_atomic(samples_to_table(rows), path)
            except BaseException:
                with self._lock:
                    self._rows[:0] = rows
                raise
            self.rows_written += len(rows)

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as exc:  # keep the rows queued and the timer alive
                self.last_error = exc

    def close(self) -> None:
        """Stop the timer and write what is left. Safe to call more than once."""
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.flush()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventLog:
    """Appends event rows to ``events.jsonl``, one flushed line per event."""

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = self.path.open("a", encoding="utf-8")

    def write(
        self,
        kind: str,
        status: str,
        *,
        ts: float | None = None,
        replacement_id: str | None = None,
        proton_id: str | None = None,
        role: str | None = None,
        detail: Any = None,
    ) -> dict[str, Any]:
        """Append one event and return it as written."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
        event: dict[str, Any] = {"ts": time.time() if ts is None else ts, "kind": kind}
        event["status"] = status
        for key, value in (
            ("replacement_id", replacement_id),
            ("proton_id", proton_id),
            ("role", role),
            ("detail", detail),
        ):
            if value is not None:
                event[key] = value
        line = json.dumps(event, separators=(",", ":"), default=str)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
        return event

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


def read_events(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every complete event line of a run, oldest first (a torn last line is skipped)."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "ts" in event and "kind" in event:
            events.append(event)
    events.sort(key=lambda e: e["ts"])
    return events


def shard_paths(run_dir: Path | str) -> list[Path]:
    """The complete sample shards of a run (temp files of an interrupted write excluded)."""
    directory = Path(run_dir) / SAMPLES_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def read_samples_table(
    run_dir: Path | str, columns: Iterable[str] | None = None, *, dictionary: bool = False
) -> pa.Table:
    """All samples of a run as one Arrow table in the sample schema.

    With ``dictionary`` the string columns come back dictionary-encoded, decoded that way
    straight from Parquet (much cheaper than encoding plain strings afterwards).
    """
    cols = list(columns) if columns is not None else list(SAMPLE_COLUMNS)
    unknown = [c for c in cols if c not in SAMPLE_COLUMNS]
    if unknown:
        raise ValueError(f"unknown sample column(s): {', '.join(unknown)}")
    paths = shard_paths(run_dir)
    fields = [SAMPLE_SCHEMA.field(c) for c in cols]
    if dictionary:
        fields = [
            f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in CATEGORY_COLUMNS else f
            for f in fields
        ]
    schema = pa.schema(fields)
    if not paths:
        return schema.empty_table()
    read_dictionary = [c for c in cols if c in CATEGORY_COLUMNS] if dictionary else None
    tables = []
    for path in paths:
        try:
            table = pq.read_table(path, columns=cols, read_dictionary=read_dictionary)
        except (OSError, pa.ArrowInvalid) as exc:
            raise RunDirError(f"sample shard {path} is unreadable: {exc}") from exc
        tables.append(table.select(cols).cast(schema))
    return pa.concat_tables(tables)


def read_samples(run_dir: Path | str, columns: Iterable[str] | None = None) -> Any:
    """All samples of a run as one pandas DataFrame with fixed dtypes.

    Numbers keep their schema types (float64, int16, int32); string columns come back as
    categoricals, nulls as NaN. Rows are sorted by ``ts``.
    """
    import pandas as pd

    frame = read_samples_table(run_dir, columns, dictionary=True).to_pandas()
    for name in frame.columns:
        if name in CATEGORY_COLUMNS and not isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype("category")
    if "ts" in frame.columns and len(frame):
        frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    return frame


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON so that readers see either the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", "utf-8")
    os.replace(tmp, path)


def read_manifest(run_dir: Path | str) -> dict[str, Any]:
    """The run's manifest; RunDirError when the directory is not a run."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        raise RunDirError(f"RUN_DIR {run_dir}: no {MANIFEST_FILE} (not a proton-probe run)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"RUN_DIR {run_dir}: {MANIFEST_FILE} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"RUN_DIR {run_dir}: {MANIFEST_FILE} is not a JSON object")
    return data


def iter_sample_batches(run_dir: Path | str, columns: Iterable[str]) -> Iterator[pa.Table]:
    """Shard by shard, for readers that must not hold a whole run in memory."""
    cols = list(columns)
    for path in shard_paths(run_dir):
        yield pq.read_table(path, columns=cols, schema=SAMPLE_SCHEMA)
