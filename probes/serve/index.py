"""The run index: one SQLite row per run directory, for the API, the web UI and retention.

The run directories are the truth; the index is a cache of what their ``manifest.json`` and
``summary.json`` say, rebuilt from ``runs_dir`` whenever it is missing, unreadable, of another
schema version, damaged (``PRAGMA quick_check`` at open and after any write the database
refuses), or does not list a run directory that exists. A run directory that is a symlink,
or resolves outside ``runs_dir``, is never indexed nor read (``inside``). Raw samples never
go into SQLite (they stay in the runs' Parquet shards): a service that stored every sample
in SQLite grows it to gigabytes and blocks its own probes on it (Uptime Kuma v1).

Concurrency (Datasette's ``database.py`` model): the database is in WAL mode; ONE writer thread
owns the only write connection and takes its work from a queue, so ``put`` never blocks the
caller; reads use one connection per reading thread, and in WAL mode a reader never waits for
the writer. The asyncio service calls the read methods from an executor thread, never on the
event loop when a query could be slow.

Row state: ``open`` while the run has no end time, ``interrupted`` when its manifest says it was
stopped early (a signal, a crash found at restart), else ``closed``. Pinned rows (a rollout
capture with a ``fail`` verdict, or a manifest with ``"pinned": true``) survive retention.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.errors import RunDirError
from probes.records import MANIFEST_FILE, read_manifest
from probes.run import SUMMARY_FILE, iso, read_summary

__all__ = [
    "SCHEMA_VERSION",
    "Notification",
    "RunIndex",
    "RunRow",
    "expired",
    "row_from_run_dir",
]

log = logging.getLogger(__name__)

#: Bump when the tables change: an index of another version is rebuilt from the run dirs.
SCHEMA_VERSION = 1
STATES = ("open", "closed", "interrupted")
#: A run id is a directory name under runs_dir: no separators, no leading dot.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
DAY_S = 86_400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    target TEXT,
    kind TEXT NOT NULL,
    trigger TEXT NOT NULL,
    schedule TEXT,
    started_ts REAL NOT NULL,
    ended_ts REAL,
    requests INTEGER,
    error_rate REAL,
    versions TEXT NOT NULL,
    verdict TEXT,
    from_version TEXT,
    to_version TEXT,
    pinned INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_ts DESC);
CREATE INDEX IF NOT EXISTS runs_by_target ON runs (target, started_ts DESC);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT,
    run_id TEXT,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_ts ON notifications (ts DESC);
"""
_COLUMNS = (
    "run_id, target, kind, trigger, schedule, started_ts, ended_ts, requests, error_rate, "
    "versions, verdict, from_version, to_version, pinned, state"
)


@dataclass(frozen=True)
class RunRow:
    """One run as the index holds it (see the module docstring for ``state`` and ``pinned``)."""

    run_id: str
    target: str | None
    kind: str
    trigger: str
    schedule: str | None
    started_ts: float
    ended_ts: float | None
    requests: int | None
    error_rate: float | None
    versions: tuple[str, ...]
    verdict: str | None
    from_version: str | None
    to_version: str | None
    pinned: bool
    state: str

    def as_api(self) -> dict[str, Any]:
        """The CONTRACT ``/api/v1/runs`` item (ISO times; ``ended_at`` null while open), plus
        ``state`` and ``versions``."""
        return {
            "run_id": self.run_id,
            "target": self.target,
            "kind": self.kind,
            "trigger": self.trigger,
            "schedule": self.schedule,
            "started_at": iso(self.started_ts),
            "ended_at": None if self.ended_ts is None else iso(self.ended_ts),
            "requests": self.requests,
            "error_rate": self.error_rate,
            "verdict": self.verdict,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "pinned": self.pinned,
            "state": self.state,
            "versions": list(self.versions),
        }

    def _values(self) -> tuple[Any, ...]:
        return (
            self.run_id,
            self.target,
            self.kind,
            self.trigger,
            self.schedule,
            self.started_ts,
            self.ended_ts,
            self.requests,
            self.error_rate,
            json.dumps(list(self.versions)),
            self.verdict,
            self.from_version,
            self.to_version,
            int(self.pinned),
            self.state,
        )

    @classmethod
    def _from_db(cls, values: Sequence[Any]) -> RunRow:
        fields = list(values)
        fields[9] = tuple(json.loads(fields[9]))
        fields[13] = bool(fields[13])
        return cls(*fields)


@dataclass(frozen=True)
class Notification:
    """A notification the service sent (or failed to send) about a run (issue 9)."""

    kind: str
    target: str | None
    run_id: str | None
    status: str  # sent | failed
    detail: str
    ts: float

    def as_api(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "run_id": self.run_id,
            "status": self.status,
            "detail": self.detail,
            "at": iso(self.ts),
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _summary_fields(summary: dict[str, Any] | None) -> dict[str, Any]:
    """requests, error_rate, versions, verdict, from/to version of a summary (None-safe)."""
    if summary is None:
        return {"requests": None, "error_rate": None, "versions": (), "verdict": None}
    requests = summary.get("requests")
    versions = summary.get("versions")
    verdict = summary.get("verdict")
    rollout = summary.get("rollout") if isinstance(summary.get("rollout"), dict) else None
    comparison = summary.get("comparison")
    comparison = comparison if isinstance(comparison, dict) else {}
    source = rollout or comparison
    return {
        "requests": requests
        if isinstance(requests, int) and not isinstance(requests, bool)
        else None,
        "error_rate": _number(summary.get("error_rate")),
        "versions": tuple(str(v) for v in versions) if isinstance(versions, dict) else (),
        "verdict": _text(verdict.get("result")) if isinstance(verdict, dict) else None,
        "from_version": _text(source.get("from_version", source.get("baseline"))),
        "to_version": _text(source.get("to_version", source.get("candidate"))),
    }


def row_from_run_dir(run_dir: Path) -> RunRow | None:
    """The index row of a run directory, from its manifest and summary; None if not a run.

    A pure read. The manifest's ``target_name`` is the service's target name (CLI runs have
    none); a run with no summary yet has null counts and verdict.
    """
    run_dir = Path(run_dir)
    try:
        manifest = read_manifest(run_dir)
    except RunDirError:
        return None
    summary = read_summary(run_dir)
    fields = _summary_fields(summary)
    capture = manifest.get("capture")
    if isinstance(capture, dict):  # the service's own roles where the samples cannot tell
        for key in ("from_version", "to_version"):
            fields[key] = fields.get(key) or _text(capture.get(key))
    started = _number(manifest.get("started_ts"))
    if started is None:
        try:
            started = (run_dir / MANIFEST_FILE).stat().st_mtime
        except OSError:
            return None
    ended = _number(manifest.get("ended_ts"))
    kind = str(manifest.get("kind") or "observe")
    if manifest.get("interrupted"):
        state = "interrupted"
    elif ended is None:
        state = "open"
    else:
        state = "closed"
    pinned = bool(
        manifest.get("pinned") is True or (kind == "rollout" and fields["verdict"] == "fail")
    )
    return RunRow(
        run_id=run_dir.name,
        target=_text(manifest.get("target_name")),
        kind=kind,
        trigger=str(manifest.get("trigger") or "cli"),
        schedule=_text(manifest.get("schedule")),
        started_ts=started,
        ended_ts=ended,
        requests=fields["requests"],
        error_rate=fields["error_rate"],
        versions=fields["versions"],
        verdict=fields["verdict"],
        from_version=fields.get("from_version"),
        to_version=fields.get("to_version"),
        pinned=pinned,
        state=state,
    )


def expired(rows: Iterable[RunRow], now: float, retention_days: float) -> list[str]:
    """Ids of the runs retention deletes: ended before ``now - retention_days``, not pinned.

    Open runs are never expired (a capture older than the retention is still being written).
    """
    cutoff = now - retention_days * DAY_S
    return [
        r.run_id
        for r in rows
        if not r.pinned and r.state != "open" and (r.ended_ts or r.started_ts) < cutoff
    ]


def inside(runs_dir: Path, path: Path) -> bool:
    """Whether ``path``, symlinks resolved, lies within ``runs_dir`` (and is not it): the
    service never follows a link out of its runs_dir."""
    try:
        root = Path(runs_dir).resolve()
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return False
    return real != root and real.is_relative_to(root)


def run_dirs(runs_dir: Path) -> dict[str, Path]:
    """Every run directory directly under runs_dir (one holding a manifest.json); a symlink
    is never one (it could point anywhere: another service's runs, ``/``)."""
    try:
        entries = list(runs_dir.iterdir())
    except OSError:
        return {}
    return {
        p.name: p
        for p in entries
        if RUN_ID_RE.match(p.name)
        and not p.is_symlink()
        and (p / MANIFEST_FILE).is_file()
        and inside(runs_dir, p / MANIFEST_FILE)
    }


def _changed_since(run_dir: Path, since: float) -> bool:
    """Whether the run's manifest or summary was written at or after ``since``."""
    for name in (MANIFEST_FILE, SUMMARY_FILE):
        try:
            if (run_dir / name).stat().st_mtime >= since:
                return True
        except FileNotFoundError:
            continue
    return False


_Job = Callable[[sqlite3.Connection], None]


class RunIndex:
    """The SQLite run index of a runs_dir: one writer thread, reads on their own connections."""

    def __init__(self, path: Path, runs_dir: Path) -> None:
        self.path = Path(path)
        self.runs_dir = Path(runs_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[_Job | threading.Event | None] = queue.Queue()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        #: Set by a write the database refused: the writer checks the file, rebuilds it if so.
        self._damaged = False
        #: A batch was lost (its commit failed): re-read the run dirs once a commit works.
        self._lost = False
        self.rebuilt = False
        #: Times the file was found damaged and rebuilt while the service ran.
        self.repairs = 0
        #: Bumped on each rebuild: readers of an older generation reconnect.
        self._generation = 0
        self._writer = self._open_writer()
        self._queue.put(self._reconcile)  # the first job: catch up with runs_dir
        self._thread = threading.Thread(target=self._write_loop, name="run-index", daemon=True)
        self._thread.start()

    # -- the write side ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        """The write connection, on a fresh file when the old one is unreadable or outdated."""
        fresh = not self.path.exists()
        try:
            conn = self._connect()
            version = self._schema_version(conn)
            if version is not None:
                self._check(conn)
        except sqlite3.DatabaseError as exc:
            log.warning("run index %s unreadable (%s): rebuilding it", self.path, exc)
            with contextlib.suppress(NameError, sqlite3.Error):
                conn.close()
            self._remove_files()
            conn, version, fresh = self._connect(), None, True
        if version is not None and version != SCHEMA_VERSION:
            log.info(
                "run index %s has schema %s, not %s: rebuilding", self.path, version, SCHEMA_VERSION
            )
            conn.close()
            self._remove_files()
            conn, fresh = self._connect(), True
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        conn.commit()
        self.rebuilt = fresh
        return conn

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int | None:
        """The file's schema version; None for an empty database; -1 when it has none."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return None
        if "meta" not in tables:
            return -1
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            return int(row[0]) if row else -1
        except ValueError:
            return -1

    @staticmethod
    def _check(conn: sqlite3.Connection) -> None:
        """``PRAGMA quick_check``: a DatabaseError when the file is damaged (a valid header
        over a broken body opens fine and fails only on the pages a query touches)."""
        rows = conn.execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            found = "; ".join(str(r[0]) for r in rows[:3])
            raise sqlite3.DatabaseError(f"quick_check: {found}")

    def _healthy(self, conn: sqlite3.Connection) -> bool:
        try:
            self._check(conn)
        except sqlite3.Error as exc:
            log.error(
                "run index %s is damaged (%s): rebuilding it from the run dirs", self.path, exc
            )
            return False
        return True

    def _repair(self) -> sqlite3.Connection:
        """On the writer thread: a fresh file, rebuilt from the run directories; readers
        reconnect to it (their thread-local connections are of an older generation)."""
        with contextlib.suppress(sqlite3.Error):
            self._writer.close()
        self._remove_files()
        self._writer = self._open_writer()
        self.rebuilt = True
        self.repairs += 1
        with self._readers_lock:
            for reader in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    reader.close()
            self._readers.clear()
            self._generation += 1
        self._reconcile(self._writer)
        self._commit(self._writer)
        return self._writer

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").unlink()

    def _write_loop(self) -> None:
        conn = self._writer
        while True:
            if self._damaged and not self._healthy(conn):
                conn = self._repair()
            self._damaged = False
            item = self._queue.get()
            batch = [item]
            while True:  # everything already queued goes into one transaction
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            for job in batch:
                if job is None:
                    stop = True
                elif isinstance(job, threading.Event):
                    self._commit(conn)
                    job.set()
                else:
                    self._run_job(conn, job)
            committed = self._commit(conn)
            if self._damaged and not stop and not self._healthy(conn):
                conn = self._repair()  # now, not at the next write: reads use it meanwhile
                self._damaged = False
            elif committed and self._lost and not stop:
                # writes a full disk refused: the run dirs still have them; catch up. A commit
                # can work while writes are still refused (an empty one on a full disk), so the
                # catch-up counts only if its own writes and commit do: else ``_lost`` stays
                # set (by ``_run_job``/``_commit``) and the next commit that works tries again
                self._lost = False
                self._run_job(conn, self._reconcile)
                if self._commit(conn) and not self._lost:
                    log.info("run index: writes lost while the disk refused them caught up")
            if stop:
                conn.close()
                return

    def _commit(self, conn: sqlite3.Connection) -> bool:
        """Commit; a failure (disk full, I/O error) loses this batch, never the writer: the
        file is checked, and the run dirs re-read after the next commit that works
        (``_write_loop``). Whether it committed."""
        try:
            conn.commit()
        except sqlite3.Error:
            log.exception("run index: a commit failed; its writes are caught up when one works")
            self._damaged = self._lost = True
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
            return False
        return True

    def _run_job(self, conn: sqlite3.Connection, job: _Job) -> None:
        """One job in a savepoint: a failing write is undone alone, and logged; the others of
        its batch (one transaction) stay."""
        try:
            conn.execute("SAVEPOINT job")
            try:
                job(conn)
            except Exception as exc:  # one bad row must not stop the index
                log.exception("run index: a write failed")
                if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                    exc, sqlite3.IntegrityError
                ):
                    # the file, not the row: checked after this batch, and caught up later
                    self._damaged = self._lost = True
                conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
        except sqlite3.Error:
            log.exception("run index: the database refused a write")
            self._damaged = self._lost = True

    def _reconcile(self, conn: sqlite3.Connection) -> None:
        """Catch up with runs_dir: index every run dir the index lacks, holds as open, or whose
        manifest or summary changed since the last catch-up (``probes report`` re-made it);
        drop the rows of vanished dirs."""
        started = time.time()
        found = conn.execute("SELECT value FROM meta WHERE key = 'reconciled_at'").fetchone()
        since = float(found[0]) if found else 0.0
        dirs = run_dirs(self.runs_dir)
        known = dict(conn.execute("SELECT run_id, state FROM runs").fetchall())
        for run_id in set(known) - set(dirs):
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        for run_id, run_dir in dirs.items():
            if known.get(run_id) not in (None, "open") and not _changed_since(run_dir, since):
                continue
            row = row_from_run_dir(run_dir)
            if row is not None:
                self._upsert(conn, row)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('reconciled_at', ?)", (repr(started),)
        )

    @staticmethod
    def _upsert(conn: sqlite3.Connection, row: RunRow) -> None:
        if row.state not in STATES:
            raise ValueError(f"run {row.run_id}: state must be one of {STATES}, not {row.state!r}")
        conn.execute(
            f"INSERT OR REPLACE INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * 15)})",
            row._values(),
        )

    def _submit(self, job: _Job) -> None:
        if self._closed:
            raise RuntimeError("the run index is closed")
        self._queue.put(job)

    def put(self, row: RunRow) -> None:
        """Insert or replace a run's row (queued: never blocks the caller)."""
        self._submit(lambda conn: self._upsert(conn, row))

    def put_run_dir(self, run_dir: Path) -> None:
        """Index a run directory as it is on disk (read and written on the writer thread)."""

        def job(conn: sqlite3.Connection) -> None:
            row = row_from_run_dir(Path(run_dir))
            if row is not None:
                self._upsert(conn, row)

        self._submit(job)

    def record_notification(
        self,
        kind: str,
        target: str | None,
        run_id: str | None,
        status: str,
        detail: str,
        ts: float | None = None,
    ) -> None:
        """Record a notification attempt (queued); status ``sent`` or ``failed``."""
        when = time.time() if ts is None else ts

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO notifications (kind, target, run_id, status, detail, ts) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (kind, target, run_id, status, detail, when),
            )

        self._submit(job)

    def _delete_rows(self, run_ids: Sequence[str]) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM runs WHERE run_id = ?", [(r,) for r in run_ids])

        self._submit(job)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every write queued so far is committed; TimeoutError after ``timeout``."""
        done = threading.Event()
        self._submit(done)  # type: ignore[arg-type]
        if not done.wait(timeout):
            raise TimeoutError(f"run index: queued writes not on disk after {timeout:g} s")

    def close(self) -> None:
        """Write what is queued, stop the writer, close every connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30.0)
        with self._readers_lock:
            for conn in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._readers.clear()

    # -- the read side -------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", 0) != self._generation:
            conn = None  # the file was rebuilt: the old connection was closed with it
        if conn is None:
            if self._closed:
                raise RuntimeError("the run index is closed")
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            self._local.generation = self._generation
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def query(
        self,
        *,
        target: str | None = None,
        kind: str | None = None,
        trigger: str | None = None,
        verdict: str | None = None,
        schedule: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRow]:
        """Rows matching every given filter, newest first (``since``/``until`` on start time)."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("target", target),
            ("kind", kind),
            ("trigger", trigger),
            ("verdict", verdict),
            ("schedule", schedule),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("started_ts >= ?")
            args.append(since)
        if until is not None:
            where.append("started_ts < ?")
            args.append(until)
        sql = f"SELECT {_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_ts DESC, run_id DESC LIMIT ? OFFSET ?"
        args += [int(limit), int(offset)]
        return [RunRow._from_db(r) for r in self._select(sql, args)]

    def get(self, run_id: str) -> RunRow | None:
        found = self._select(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return RunRow._from_db(found[0]) if found else None

    def _select(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """Rows of a read; a damaged file has the writer check and rebuild it (this read
        still fails: the next one reads the rebuilt file)."""
        try:
            return self._reader().execute(sql, args).fetchall()
        except sqlite3.DatabaseError:
            if not self._closed:
                self._damaged = True
                self._queue.put(lambda conn: None)  # wake the writer to check
            raise

    def notifications(self, *, target: str | None = None, limit: int = 50) -> list[Notification]:
        """Recorded notifications, newest first."""
        sql = "SELECT kind, target, run_id, status, detail, ts FROM notifications"
        args: list[Any] = []
        if target is not None:
            sql += " WHERE target = ?"
            args.append(target)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        args.append(int(limit))
        return [Notification(*r) for r in self._select(sql, args)]

    # -- retention -----------------------------------------------------------------------

    def expire(self, now: float, retention_days: float) -> list[str]:
        """Delete the run dirs and rows retention selects (``expired``); their ids.

        Blocking (it removes directories): call it from a thread. The rows go through the
        writer's queue like every other write.
        """
        candidates = self._reader().execute(
            f"SELECT {_COLUMNS} FROM runs WHERE pinned = 0 AND state != 'open' "
            "AND COALESCE(ended_ts, started_ts) < ?",
            (now - retention_days * DAY_S,),
        )
        ids = expired([RunRow._from_db(r) for r in candidates.fetchall()], now, retention_days)
        gone = []
        root = self.runs_dir.resolve()
        for run_id in ids:
            run_dir = self.runs_dir / run_id
            if not RUN_ID_RE.match(run_id) or run_dir.resolve().parent != root:
                log.warning("retention: %r is not a run directory under %s; row kept", run_id, root)
                continue
            try:
                shutil.rmtree(run_dir)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("retention: cannot delete %s: %s", run_dir, exc)
                continue
            gone.append(run_id)
        if gone:
            self._delete_rows(gone)
        return gone
