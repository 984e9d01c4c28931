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
``conn``        string/null  connection identity where the client exposes it: the local
                             ``host:port`` and a number unique in its process (``…:5123#7``)
``conn_mode``   string       how the caller held its connections: ``reused`` (a keep-alive
                             pool) or ``new`` (a fresh connection per request, closed after
                             it); schema 2 on — a shard without it (schema 1: Locust, or a
                             probe run before connection modes, both pools) reads as ``reused``
``ttft_ms``     float64/null send to the first content event of a streamed answer (an answer
                             with ``Content-Type: text/event-stream``); null when the answer
                             is not a stream or no content event came; schema 3 on
``tokens``      int32/null   content events received in a streamed answer; null when not a
                             stream; schema 3 on
``itl_ms``      float64/null mean interval between consecutive content events of a stream (null
                             below two content events, or when not a stream); schema 3 on
==============  ===========  ===================================================================

A shard of schema 1 or 2 (before streams) reads ``ttft_ms``, ``tokens`` and ``itl_ms`` as
null. A stream that ends before its terminator (``data: [DONE]`` or a choice's
``finish_reason``) is an error of class ``stream_aborted``, its partial figures kept;
``latency_ms`` stays send to last byte.

``SAMPLE_SCHEMA_VERSION`` (3) is written into every shard's Parquet metadata
(``proton-probe.samples``); readers take shards of every version: a column added since a
shard was written reads as its documented default (``MISSING_DEFAULTS``).

Latency corrected for coordinated omission is ``ts - intended_ts + latency_ms / 1000``.

**Event** — one JSON object per line in ``RUN_DIR/events.jsonl``: ``ts``, ``kind``
(``replacement``, ``workload``, ``proton``, ``marker``), ``status`` and optional
``replacement_id``, ``proton_id``, ``role``, ``detail``.

**Manifest** — ``RUN_DIR/manifest.json``: run id, kind, target (secrets masked), tagging
rules, load settings, tool versions, start and end.

Shards are written atomically (a temp file named per process, fsynced, then renamed, then
the directory fsynced) every ``flush_interval`` seconds and on close, so a killed run loses
at most the rows of the last interval, a half-written shard is never read, and a power loss
cannot leave a 0-byte shard under a final name.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
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
    conn_mode: str = "reused"
    ttft_ms: float | None = None
    tokens: int | None = None
    itl_ms: float | None = None


#: Version of the sample schema; 2 added ``conn_mode``, 3 the stream columns.
SAMPLE_SCHEMA_VERSION = 3
#: Connection modes (``conn_mode``): a keep-alive pool, or a new connection per request.
CONN_MODES = ("reused", "new")
#: Columns added after schema 1, and what a shard without them reads as.
MISSING_DEFAULTS: dict[str, str | None] = {
    "conn_mode": "reused",
    "ttft_ms": None,
    "tokens": None,
    "itl_ms": None,
}
#: The stream columns (schema 3): null on an answer that is not a stream.
STREAM_COLUMNS = ("ttft_ms", "tokens", "itl_ms")
_SCHEMA_METADATA = {b"proton-probe.samples": str(SAMPLE_SCHEMA_VERSION).encode()}

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
        ("conn_mode", pa.string()),
        ("ttft_ms", pa.float64()),
        ("tokens", pa.int32()),
        ("itl_ms", pa.float64()),
    ],
    metadata=_SCHEMA_METADATA,
)
SAMPLE_COLUMNS: tuple[str, ...] = tuple(SAMPLE_SCHEMA.names)
assert Sample._fields == SAMPLE_COLUMNS

#: Columns read back as pandas categoricals (few distinct values, many rows).
CATEGORY_COLUMNS = (
    "source",
    "worker",
    "method",
    "name",
    "error",
    "version",
    "tag_source",
    "conn",
    "conn_mode",
)

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
    "client_limit",  # the response broke a limit of the client (e.g. a header too long)
    "body_too_large",  # the body went on past the probe's drain bound: connection closed
    "stream_aborted",  # a streamed answer ended before its terminator ([DONE], finish_reason)
    "interrupted",  # in flight when the run stopped and its drain ran out: outcome unknown
    "other",
)
"""The ``error`` classes, and what each says:

- ``timeout``, ``connect``, ``reset``, ``protocol``: the transport failed (``status`` 0);
  ``protocol`` means the target sent something that is not valid HTTP;
- ``http_5xx``, ``http_4xx``: a response with that status arrived;
- ``client_saturated``: the probe's in-flight bound was full, so the due request was not sent
  (``status`` 0, ``latency_ms`` 0); reports leave these rows out of every count (``not_sent``);
- ``client_limit``: the response was refused by a limit of *our* client, not for being bad
  HTTP (e.g. a header line longer than the client accepts); ``status`` 0;
- ``body_too_large``: the body went on past ``ProbeSettings.max_drain_bytes`` (an endless or
  huge body): the probe kept its first ``max_body_bytes`` for tagging, closed the connection
  and recorded the status that arrived; ``bytes`` is the Content-Length when the response
  gave one, else what was read; ``latency_ms`` runs to the close. Bodies between
  ``max_body_bytes`` and the drain bound are read to their end and are not errors;
- ``stream_aborted``: a streamed answer (``text/event-stream``) ended before its terminator
  (``data: [DONE]`` or a choice's ``finish_reason``): the connection closed half-way. The
  status that arrived is kept, and the stream columns hold what came before the cut;
- ``interrupted``: sent, still in flight when a stop's drain time (or the end-of-run grace)
  ran out; ``status`` 0, ``latency_ms`` up to the moment it was abandoned. The outcome is
  unknown, so reports leave these rows out of every count and report them as ``interrupted``;
- ``other``: anything else.
"""
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
    """Build an Arrow table in the sample schema from sample tuples.

    Shorter tuples of an older schema (1: no ``conn_mode``, 2: no stream columns; a Locust
    worker of an older version) get the missing columns' defaults."""
    rows = [_padded(row) for row in rows]
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in SAMPLE_COLUMNS]
    arrays = [
        pa.array(col, type=field.type) for col, field in zip(columns, SAMPLE_SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=SAMPLE_SCHEMA)


def _padded(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A sample tuple of an older schema completed with the defaults of its missing columns."""
    missing = len(SAMPLE_COLUMNS) - len(row)
    if missing <= 0:
        return row
    return (*row, *(MISSING_DEFAULTS[c] for c in SAMPLE_COLUMNS[len(row) :]))


_warmed = threading.Event()


def warm_writer() -> None:
    """Pay the shard writer's one-time costs now: the first table conversion imports pandas
    (through pyarrow, ~350 modules) and the first Parquet write loads its codec. A probe
    calls this before its first request is due, or the first flush (in the writer's thread,
    holding the GIL) would make the run's first requests late by hundreds of ms."""
    if _warmed.is_set():
        return
    row = Sample(0.0, 0.0, 0.0, "probe", "warm", "GET", "/", 200, None, "v", "none", 0, None)
    sink = pa.BufferOutputStream()
    pq.write_table(samples_to_table([row]), sink, compression="zstd")
    _warmed.set()


_tmp_counter = itertools.count()


def _tmp_name(path: Path) -> Path:
    """A temp file beside ``path`` that no other writer (process or thread) uses: the pid and
    a per-process counter make it unique, the leading dot hides it from readers."""
    return path.with_name(f".{path.name}.{os.getpid()}.{next(_tmp_counter)}.tmp")


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories can't open."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_durably(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it to ``path``, fsync the directory: after a power loss the file is
    either absent or whole, never a 0-byte file under its final name."""
    try:
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file so that readers see either nothing or the whole file."""
    tmp = _tmp_name(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace_durably(tmp, path)


#: Niceness added to a shard writer's timer thread, so the sending thread comes first.
WRITER_NICE = 10


def _yield_cpu(thread: threading.Thread, nice: int = WRITER_NICE) -> bool:
    """Lower a running ``thread``'s CPU priority by ``nice`` (Linux: priorities are per thread);
    whether it was lowered (False where not supported or not allowed: nothing changes)."""
    tid = thread.native_id
    if tid is None or not hasattr(os, "setpriority"):
        return False
    if tid in (threading.get_native_id(), threading.main_thread().native_id):
        # not a thread of its own: under gevent's monkey-patching (Locust) a Thread is a
        # greenlet on the calling thread, and lowering "its" priority niced the whole Locust
        # process (+10 per writer) and every process it started after: under load its
        # subprocesses starved (tests/locust timed out beside a CPU hog)
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError:
        return False
    return True


#: Suffix of a shard's journal: the rows queued for the shard of the same name, appended as
#: JSON lines (see ``ShardWriter.journal``).
JOURNAL_SUFFIX = ".journal"


class ShardWriter:
    """Buffers samples and writes them as Parquet shards, atomically, on a timer and on close.

    Thread-safe: ``add`` may be called from any thread (or greenlet). Nothing grows without
    bound: the buffer is handed to a shard at least every ``flush_interval`` seconds or every
    ``max_rows`` rows, whichever comes first. Shards are named ``{prefix}-{seq:06d}.parquet``.
    The timer's thread runs ``WRITER_NICE`` below its creator's CPU priority.

    A writer flushed rarely (the service's canary segments: every 10 s, so that hundreds of
    targets do not write a shard each per second) is ``journal``-ed in between: the rows
    queued since the last call are appended to ``{prefix}-{seq:06d}.journal``, named for the
    shard they will go to, and that file is removed once the shard is written. After a crash
    ``recover_journals`` turns a journal whose shard never came into that shard.
    """

    def __init__(
        self,
        run_dir: Path | str,
        prefix: str,
        *,
        flush_interval: float = 1.0,
        max_rows: int = 200_000,
        background: bool = True,
        max_pending: int | None = None,
    ) -> None:
        self.directory = Path(run_dir) / SAMPLES_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.flush_interval = flush_interval
        self.max_rows = max_rows
        self.rows_written = 0
        #: At most this many rows wait while flushes fail (a full disk); beyond it a row is
        #: refused and counted in ``dropped`` rather than growing memory without bound.
        self.max_pending = max_pending
        self.dropped = 0
        self.last_error: Exception | None = None
        self._rows: list[Sample] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        #: The sequence number of the next shard (and of the journal of its rows).
        self._next = self._next_seq()
        #: How many of the queued rows (from the front) are in the next shard's journal.
        self._journaled = 0
        #: The next shard's journal ends torn and could not be cut back or removed.
        self._journal_stuck = False
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._flush_loop, name=f"shards-{prefix}", daemon=True
            )
            self._thread.start()
            # The timer's flushes (Parquet encoding, zstd, fsync; mostly without the GIL) ran
            # beside the sender on its core and took half of it for their length: at 4,000
            # req/s, lateness within a flush's window averaged 2.5-9 ms above the rest of the
            # run. At nice +10 the sender comes first and the difference was gone (-1.9 to
            # +0.1 ms, 3 ABAB rounds); the writer still gets the ~2 % of a core it needs.
            _yield_cpu(self._thread)

    def _next_seq(self) -> int:
        # After the highest existing shard or journal: a resumed writer never overwrites one.
        seqs = []
        for pattern in (f"{self.prefix}-*.parquet", f"{self.prefix}-*{JOURNAL_SUFFIX}"):
            for path in self.directory.glob(pattern):
                tail = path.stem[len(self.prefix) + 1 :]
                if tail.isdigit():
                    seqs.append(int(tail))
        return max(seqs, default=-1) + 1

    def _path(self, suffix: str) -> Path:
        return self.directory / f"{self.prefix}-{self._next:06d}{suffix}"

    def add(self, sample: Sample) -> None:
        """Queue one sample; it is on disk after the next flush."""
        with self._lock:
            if self.max_pending is not None and len(self._rows) >= self.max_pending:
                self.dropped += 1
                return
            self._rows.append(sample)
            full = len(self._rows) >= self.max_rows
        if full:
            self.flush()

    def add_many(self, samples: Iterable[Sample]) -> None:
        """Queue several samples at once."""
        with self._lock:
            rows = list(samples)
            if self.max_pending is not None:
                room = max(0, self.max_pending - len(self._rows))
                self.dropped += max(0, len(rows) - room)
                rows = rows[:room]
            self._rows.extend(rows)
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
            try:
                write_table_atomic(samples_to_table(rows), self._path(".parquet"))
            except BaseException:
                with self._lock:  # the journal still holds a prefix of them: kept as it is
                    self._rows[:0] = rows
                raise
            # Its rows are in the shard; one that cannot be removed is harmless beside it
            # (recover_journals drops it), and must not keep the shard's number for the next.
            with contextlib.suppress(OSError):
                self._path(JOURNAL_SUFFIX).unlink(missing_ok=True)
            self._next += 1
            self._journaled = 0
            self._journal_stuck = False
            self.rows_written += len(rows)

    def journal(self) -> int:
        """Append the rows queued since the last call to the next shard's journal (a write to
        the page cache, no fsync: it is for a crash of this process, not of the machine);
        how many were appended."""
        with self._write_lock:
            if self._journal_stuck:  # a torn journal that could not be removed: the shard only
                return 0
            with self._lock:
                rows = self._rows[self._journaled :]
                self._journaled = len(self._rows)
            if not rows:
                return 0
            data = "".join(json.dumps(list(row), separators=(",", ":")) + "\n" for row in rows)
            self._append_journal(data.encode("utf-8"), len(rows))
            return len(rows)

    def _append_journal(self, data: bytes, count: int) -> None:
        """Append ``data`` (the last ``count`` journaled rows) to the next shard's journal, all
        or nothing. On a failure the rows count as not journaled; a write the disk cut short
        (ENOSPC) is cut back off, or else the journal is removed and every queued row counts as
        not journaled: the next call appends them once, and no torn line sits before them."""
        path = self._path(JOURNAL_SUFFIX)
        start: int | None = None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                start = os.fstat(fd).st_size
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            except BaseException:
                if start is not None:
                    try:
                        os.ftruncate(fd, start)
                    except OSError:
                        start = None
                raise
            finally:
                os.close(fd)
        except BaseException:
            with self._lock:
                self._journaled -= count
            if start is None and path.exists():
                try:
                    path.unlink()  # its rows are all still queued
                    with self._lock:
                        self._journaled = 0
                except OSError:
                    self._journal_stuck = True  # nothing more after a torn line: see journal
            raise

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


def recover_journals(run_dir: Path | str) -> int:
    """Turn the journals a crashed writer left (``ShardWriter.journal``) into the shards they
    were for; a journal whose shard exists is only removed (its rows are in it). A torn last
    line (the crash came mid-write) is skipped. Returns the rows recovered."""
    directory = Path(run_dir) / SAMPLES_DIR
    recovered = 0
    for journal in sorted(directory.glob(f"*{JOURNAL_SUFFIX}")):
        shard = journal.with_suffix(".parquet")
        if not shard.exists():
            rows = []
            for line in journal.read_text("utf-8", errors="replace").splitlines():
                try:
                    rows.append(Sample(*json.loads(line)))
                except (ValueError, TypeError):
                    continue  # the torn tail of the crash
            if rows:
                write_table_atomic(samples_to_table(rows), shard)
                recovered += len(rows)
        journal.unlink(missing_ok=True)
    return recovered


def make_event(
    kind: str,
    status: str,
    *,
    ts: float | None = None,
    replacement_id: str | None = None,
    proton_id: str | None = None,
    role: str | None = None,
    detail: Any = None,
) -> dict[str, Any]:
    """One event row (the Event format above): optional fields only when given."""
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
    return event


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
        event = make_event(
            kind, status, ts=ts, replacement_id=replacement_id, proton_id=proton_id,
            role=role, detail=detail,
        )  # fmt: skip
        line = json.dumps(event, separators=(",", ":"), default=str)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
        return event

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


#: Event fields and the JSON types they may hold (``None``: absent or null is fine).
EVENT_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "status": (str,),
    "replacement_id": (str, type(None)),
    "proton_id": (str, type(None)),
    "role": (str, type(None)),
    "detail": (dict, type(None)),
}


#: Epoch seconds a run's times may take: from 1970 to about the year 5000. Anything else is
#: damage (a date past that cannot even be formatted).
MAX_EPOCH_S = 1e11


def _is_time(value: Any) -> bool:
    """Whether ``value`` is epoch seconds (a finite number within ``MAX_EPOCH_S``)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) and 0 <= value <= MAX_EPOCH_S


def _event_problem(event: Any) -> str | None:
    """Why a parsed event line is not an event row, or None when it is one."""
    if not isinstance(event, dict):
        return "is not a JSON object"
    if not _is_time(event.get("ts")):
        return f"has ts {event.get('ts')!r}, not epoch seconds"
    for key, types in EVENT_FIELD_TYPES.items():
        if key in ("kind", "status") and key not in event:
            return f"has no {key}"
        if key in event and not isinstance(event[key], types):
            return f"has {key} {event[key]!r} of the wrong type"
    return None


def read_events(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every event line of a run, oldest first.

    A torn last line (no newline: the writer was killed mid-line) is skipped; any other line
    that is not UTF-8 JSON of the event format raises RunDirError naming the file and line.
    """
    path = Path(run_dir) / EVENTS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunDirError(f"RUN_DIR {run_dir}: {EVENTS_FILE} is unreadable: {exc}") from exc
    lines = data.split(b"\n")
    torn = len(lines) - 1 if lines[-1].strip() else None  # no newline after the last line
    events = []
    for number, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError alike
            if number == torn:
                continue
            why = "is not UTF-8" if isinstance(exc, UnicodeDecodeError) else "is not JSON"
            raise RunDirError(f"RUN_DIR {run_dir}: {EVENTS_FILE} line {number + 1} {why}") from None
        problem = _event_problem(event)
        if problem:
            raise RunDirError(f"RUN_DIR {run_dir}: {EVENTS_FILE} line {number + 1} {problem}")
        events.append(event)
    events.sort(key=lambda e: e["ts"])
    return events


def shard_paths(run_dir: Path | str) -> list[Path]:
    """The complete sample shards of a run (temp files of an interrupted write excluded)."""
    directory = Path(run_dir) / SAMPLES_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


#: What reading a broken shard may raise (pyarrow's errors, and a cast it cannot do).
_SHARD_ERRORS = (OSError, pa.ArrowException, ValueError, KeyError, TypeError)


def _read_shard(path: Path, cols: list[str], schema: pa.Schema, dictionary: bool) -> pa.Table:
    """One shard in ``schema``; a column it lacks or holds in another type is an error."""
    if path.stat().st_size == 0:
        raise ValueError("it is empty (0 bytes)")
    present = pq.read_schema(path).names
    read_dictionary = (
        [c for c in cols if c in CATEGORY_COLUMNS and c in present] if dictionary else None
    )
    table = pq.read_table(
        path, columns=[c for c in cols if c in present], read_dictionary=read_dictionary
    )
    for name, default in MISSING_DEFAULTS.items():
        if name in cols and name not in table.column_names:  # an older shard
            kind = SAMPLE_SCHEMA.field(name).type
            table = table.append_column(name, pa.array([default] * table.num_rows, kind))
    missing = [c for c in cols if c not in table.column_names]
    if missing:
        raise ValueError(f"it has no column {', '.join(missing)}")
    for name in cols:
        have, want = table.schema.field(name).type, SAMPLE_SCHEMA.field(name).type
        if pa.types.is_dictionary(have):
            have = have.value_type
        if not _castable(have, want):
            raise ValueError(f"its column {name} is {have}, not {want}")
    if "ts" in cols and table.num_rows:
        ts = table.column("ts")
        low, high = pc.min_max(ts).values()
        bad = ts.null_count or pc.any(pc.is_nan(pc.cast(ts, pa.float64()))).as_py()
        if bad or not (_is_time(low.as_py()) and _is_time(high.as_py())):
            raise ValueError("its ts column holds values that are not epoch seconds")
    return table.select(cols).cast(schema)


def _castable(have: pa.DataType, want: pa.DataType) -> bool:
    """Whether a shard column of type ``have`` holds what the schema's ``want`` means: the
    same type, a wider or narrower one of the same kind (a cast checks the values), or null."""
    if have == want or pa.types.is_null(have):
        return True
    if pa.types.is_integer(want):
        return pa.types.is_integer(have)
    if pa.types.is_floating(want):
        return pa.types.is_floating(have) or pa.types.is_integer(have)
    if pa.types.is_string(want):
        return pa.types.is_string(have) or pa.types.is_large_string(have)
    return False


def _read_schema(cols: list[str], dictionary: bool) -> pa.Schema:
    fields = [SAMPLE_SCHEMA.field(c) for c in cols]
    if dictionary:
        fields = [
            f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in CATEGORY_COLUMNS else f
            for f in fields
        ]
    return pa.schema(fields)


def _columns(columns: Iterable[str] | None) -> list[str]:
    cols = list(columns) if columns is not None else list(SAMPLE_COLUMNS)
    unknown = [c for c in cols if c not in SAMPLE_COLUMNS]
    if unknown:
        raise ValueError(f"unknown sample column(s): {', '.join(unknown)}")
    return cols


def iter_samples_tables(
    run_dir: Path | str,
    columns: Iterable[str] | None = None,
    *,
    dictionary: bool = False,
    skipped: list[dict[str, str]] | None = None,
) -> Iterator[pa.Table]:
    """The run's shards one Arrow table at a time, in ``shard_paths`` order, each in the
    sample schema (``dictionary`` and ``skipped`` as in ``read_samples_table``): for readers
    that must not hold every shard at once in Arrow form."""
    cols = _columns(columns)
    schema = _read_schema(cols, dictionary)
    for path in shard_paths(run_dir):
        try:
            table = _read_shard(path, cols, schema, dictionary)
        except _SHARD_ERRORS as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if skipped is None:
                raise RunDirError(f"sample shard {path} is unreadable: {reason}") from exc
            skipped.append({"file": f"{SAMPLES_DIR}/{path.name}", "reason": reason})
            continue
        yield table


def read_samples_table(
    run_dir: Path | str,
    columns: Iterable[str] | None = None,
    *,
    dictionary: bool = False,
    skipped: list[dict[str, str]] | None = None,
) -> pa.Table:
    """All samples of a run as one Arrow table in the sample schema.

    With ``dictionary`` the string columns come back dictionary-encoded, decoded that way
    straight from Parquet (much cheaper than encoding plain strings afterwards). A shard that
    cannot be read in the sample schema (empty, corrupt, a column missing or of another
    type) raises RunDirError naming it; with a ``skipped`` list it is left out instead and
    ``{"file": "samples/NAME", "reason": ...}`` appended, so one bad shard cannot block the
    report of the others.
    """
    cols = _columns(columns)
    tables = list(iter_samples_tables(run_dir, cols, dictionary=dictionary, skipped=skipped))
    if not tables:
        return _read_schema(cols, dictionary).empty_table()
    return pa.concat_tables(tables)


def samples_frame(table: pa.Table) -> Any:
    """An Arrow sample table as ``read_samples`` returns it: a pandas DataFrame, string
    columns as categoricals, rows sorted by ``ts`` (stable)."""
    import pandas as pd

    frame = table.to_pandas()
    for name in frame.columns:
        if name in CATEGORY_COLUMNS and not isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype("category")
    if "ts" in frame.columns and len(frame):
        frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    return frame


def read_samples(
    run_dir: Path | str,
    columns: Iterable[str] | None = None,
    *,
    skipped: list[dict[str, str]] | None = None,
) -> Any:
    """All samples of a run as one pandas DataFrame with fixed dtypes.

    Numbers keep their schema types (float64, int16, int32); string columns come back as
    categoricals, nulls as NaN. Rows are sorted by ``ts``. ``skipped``: as in
    ``read_samples_table``.
    """
    return samples_frame(read_samples_table(run_dir, columns, dictionary=True, skipped=skipped))


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file (UTF-8) so that readers see either the old or the new one, whole."""
    tmp = _tmp_name(path)
    try:
        tmp.write_text(text, "utf-8")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace_durably(tmp, path)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON so that readers see either the old or the new file, never half of one."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


#: Manifest fields the readers rely on, and the JSON types each may hold when present; the
#: others (``interrupted``, ``probe``, a verb's own blocks) are left to their readers.
MANIFEST_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "kind": (str,),
    "trigger": (str, type(None)),
    "schedule": (str, type(None)),
    "started_at": (str, type(None)),
    "ended_at": (str, type(None)),
    "started_ts": (int, float, type(None)),
    "ended_ts": (int, float, type(None)),
    "settings": (dict, type(None)),
    "target": (dict, str, type(None)),
}


def _manifest_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "is not a JSON object"
    for key, types in MANIFEST_FIELD_TYPES.items():
        value = data.get(key)
        if key not in data:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"has {key} {value!r} of the wrong type"
        if key.endswith("_ts") and value is not None and not _is_time(value):
            return f"has {key} {value!r}, not epoch seconds"
    return None


def read_manifest(run_dir: Path | str) -> dict[str, Any]:
    """The run's manifest; RunDirError naming the file when the directory is not a run or
    the manifest is not UTF-8 JSON with fields of the types in ``MANIFEST_FIELD_TYPES``."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        raise RunDirError(f"RUN_DIR {run_dir}: no {MANIFEST_FILE} (not a proton-probe run)")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise RunDirError(f"RUN_DIR {run_dir}: {MANIFEST_FILE} is not UTF-8 text") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"RUN_DIR {run_dir}: {MANIFEST_FILE} is unreadable: {exc}") from exc
    problem = _manifest_problem(data)
    if problem:
        raise RunDirError(f"RUN_DIR {run_dir}: {MANIFEST_FILE} {problem}")
    return data


def iter_sample_batches(run_dir: Path | str, columns: Iterable[str]) -> Iterator[pa.Table]:
    """Shard by shard, for readers that must not hold a whole run in memory."""
    cols = list(columns)
    schema = pa.schema([SAMPLE_SCHEMA.field(c) for c in cols])
    for path in shard_paths(run_dir):
        yield _read_shard(path, cols, schema, False)
