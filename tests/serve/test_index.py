"""The run index: rows from run dirs, one writer, reads that never wait, rebuild, retention."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from probes.records import write_json_atomic
from probes.run import SUMMARY_FILE, Run
from probes.serve.index import SCHEMA_VERSION, RunIndex, RunRow, expired, row_from_run_dir
from reports import build_summary

NOW = 1_800_000_000.0
DAY = 86_400.0


def make_run(
    runs_dir: Path,
    run_id: str,
    *,
    kind: str = "canary",
    target: str | None = "chat",
    started: float = NOW - 3600,
    ended: float | None = NOW - 3000,
    summary: dict[str, Any] | None = None,
    trigger: str = "continuous",
    schedule: str | None = None,
    **manifest: Any,
) -> Path:
    run = Run.create(
        runs_dir,
        run_id,
        kind,
        target={"url": "http://x"},
        settings={},
        started_at=started,
        trigger=trigger,
        schedule=schedule,
    )
    run.update(target_name=target, **manifest)
    if ended is not None:
        run.finish(ended_at=ended)
    if summary is not None:
        write_json_atomic(run.path / SUMMARY_FILE, summary)
    return run.path


def real_summary(kind: str = "rollout", *, candidate_errors: float = 0.0) -> dict[str, Any]:
    """A summary made by the report code from a small baseline -> candidate switch."""
    n = 400
    ts = 1000.0 + np.arange(n) / 20.0
    version = np.where(np.arange(n) < n // 2, "v1", "v2")
    rng = np.random.default_rng(3)
    bad = (version == "v2") & (rng.random(n) < candidate_errors)
    frame = pd.DataFrame(
        {
            "ts": ts,
            "intended_ts": ts,
            "latency_ms": 5.0 + rng.random(n),
            "source": "probe",
            "worker": "w",
            "status": np.where(bad, 500, 200).astype(np.int16),
            "error": pd.Series(np.where(bad, "http_5xx", None), dtype=object),
            "version": version,
            "tag_source": "header",
        }
    )
    manifest = {"run_id": "r", "kind": kind, "started_ts": 1000.0, "ended_ts": 1020.0}
    return build_summary(frame, [], manifest, slos=None, bucket_s=1.0)


def test_row_of_a_reported_rollout(tmp_path: Path) -> None:
    summary = real_summary()
    run_dir = make_run(tmp_path, "chat-rollout-1", kind="rollout", trigger="auto", summary=summary)
    row = row_from_run_dir(run_dir)
    assert row is not None
    assert (row.run_id, row.target, row.kind) == ("chat-rollout-1", "chat", "rollout")
    assert row.trigger == "auto"
    assert row.requests == 400 and row.error_rate == 0.0
    assert row.versions == ("v1", "v2")
    assert (row.from_version, row.to_version) == ("v1", "v2")
    assert row.verdict == "pass" and not row.pinned and row.state == "closed"
    assert row.started_ts == NOW - 3600 and row.ended_ts == NOW - 3000
    item = row.as_api()
    assert item["started_at"].endswith("Z") and item["ended_at"].endswith("Z")
    for key in (
        "run_id",
        "target",
        "kind",
        "trigger",
        "schedule",
        "started_at",
        "ended_at",
        "requests",
        "error_rate",
        "verdict",
        "from_version",
        "to_version",
        "pinned",
    ):
        assert key in item


def test_failed_rollout_is_pinned_and_failed_canary_is_not(tmp_path: Path) -> None:
    bad = real_summary(candidate_errors=0.5)
    assert bad["verdict"]["result"] == "fail"
    rollout = row_from_run_dir(make_run(tmp_path, "r1", kind="rollout", summary=bad))
    canary = row_from_run_dir(make_run(tmp_path, "c1", kind="canary", summary=bad))
    manual = row_from_run_dir(make_run(tmp_path, "m1", kind="load", pinned=True))
    assert rollout is not None and rollout.pinned and rollout.verdict == "fail"
    assert canary is not None and not canary.pinned
    assert manual is not None and manual.pinned


def test_states_open_interrupted_and_not_a_run(tmp_path: Path) -> None:
    open_row = row_from_run_dir(make_run(tmp_path, "open", ended=None))
    assert open_row is not None and open_row.state == "open" and open_row.ended_ts is None
    assert open_row.as_api()["ended_at"] is None and open_row.requests is None
    crashed = make_run(tmp_path, "crashed", ended=None, interrupted="crash")
    row = row_from_run_dir(crashed)
    assert row is not None and row.state == "interrupted" and row.verdict is None
    (tmp_path / "not-a-run").mkdir()
    assert row_from_run_dir(tmp_path / "not-a-run") is None
    assert row_from_run_dir(tmp_path / "missing") is None


def test_put_query_filters_order_and_get(tmp_path: Path) -> None:
    index = RunIndex(tmp_path / "index.sqlite", tmp_path)
    try:
        rows = [
            _row("a", target="chat", kind="canary", started=NOW - 30),
            _row("b", target="chat", kind="rollout", started=NOW - 20, verdict="fail", pinned=True),
            _row(
                "c",
                target="emb",
                kind="load",
                started=NOW - 10,
                trigger="schedule",
                schedule="nightly",
            ),
        ]
        for row in rows:
            index.put(row)
        index.flush()
        assert [r.run_id for r in index.query()] == ["c", "b", "a"]
        assert [r.run_id for r in index.query(target="chat")] == ["b", "a"]
        assert [r.run_id for r in index.query(kind="rollout", verdict="fail")] == ["b"]
        assert [r.run_id for r in index.query(schedule="nightly", trigger="schedule")] == ["c"]
        assert [r.run_id for r in index.query(since=NOW - 25)] == ["c", "b"]
        assert [r.run_id for r in index.query(until=NOW - 15)] == ["b", "a"]
        assert [r.run_id for r in index.query(limit=1, offset=1)] == ["b"]
        assert index.get("b") == rows[1]
        assert index.get("zzz") is None
        index.put(_row("a", target="chat", kind="canary", started=NOW - 30, verdict="pass"))
        index.flush()
        got = index.get("a")
        assert got is not None and got.verdict == "pass"
    finally:
        index.close()


def _row(
    run_id: str,
    *,
    target: str | None = "chat",
    kind: str = "canary",
    started: float = NOW,
    verdict: str | None = None,
    pinned: bool = False,
    trigger: str = "continuous",
    schedule: str | None = None,
    state: str = "closed",
) -> RunRow:
    return RunRow(
        run_id=run_id,
        target=target,
        kind=kind,
        trigger=trigger,
        schedule=schedule,
        started_ts=started,
        ended_ts=None if state == "open" else started + 5,
        requests=10,
        error_rate=0.0,
        versions=("v1",),
        verdict=verdict,
        from_version=None,
        to_version=None,
        pinned=pinned,
        state=state,
    )


def test_reads_never_wait_for_a_busy_writer(tmp_path: Path) -> None:
    index = RunIndex(tmp_path / "index.sqlite", tmp_path)
    release, holding, released = threading.Event(), threading.Event(), threading.Event()
    try:
        index.put(_row("committed"))
        index.flush()

        def hold_write_lock(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO runs (run_id, kind, trigger, started_ts, versions, pinned, state) "
                "VALUES ('uncommitted', 'load', 'api', 0, '[]', 0, 'open')"
            )
            holding.set()
            release.wait(120)
            released.set()

        index._submit(hold_write_lock)  # the writer now holds an open write transaction
        assert holding.wait(60)
        index.put(_row("queued"))  # never blocks the caller
        assert [r.run_id for r in index.query()] == ["committed"]
        assert index.get("committed") is not None
        # all of it answered while the writer still held its transaction (a condition, not a
        # time: a read that waited for the writer would return only once it let go)
        assert not released.is_set()
    finally:
        release.set()
        index.flush()
        assert {r.run_id for r in index.query()} == {"committed", "uncommitted", "queued"}
        index.close()


def test_rebuilt_from_run_dirs_when_missing_stale_or_outdated(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs, "one", summary=real_summary("canary"))
    make_run(runs, "two", kind="rollout", ended=None)
    path = runs / "index.sqlite"
    index = RunIndex(path, runs)
    index.flush()
    assert index.rebuilt
    assert {r.run_id for r in index.query()} == {"one", "two"}
    index.close()

    make_run(runs, "three", kind="load", trigger="api")  # written while the service was down
    run_two = runs / "two"
    write_json_atomic(run_two / SUMMARY_FILE, real_summary())  # the open run was closed since
    Run.open(run_two).finish(ended_at=NOW)
    shutil.rmtree(runs / "one")  # deleted by hand
    index = RunIndex(path, runs)
    index.flush()
    assert not index.rebuilt
    rows = {r.run_id: r for r in index.query()}
    assert set(rows) == {"two", "three"}
    assert rows["two"].state == "closed" and rows["two"].verdict == "pass"
    index.close()

    # a report re-made while the service was down (probes report RUN_DIR): the row follows it
    time.sleep(0.01)
    write_json_atomic(run_two / SUMMARY_FILE, real_summary(candidate_errors=0.5))
    index = RunIndex(path, runs)
    index.flush()
    got = index.get("two")
    assert got is not None and got.verdict == "fail" and got.pinned
    index.close()

    with sqlite3.connect(path) as conn:  # an index of another schema version
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
        conn.execute("DELETE FROM runs")
    index = RunIndex(path, runs)
    index.flush()
    assert index.rebuilt and {r.run_id for r in index.query()} == {"two", "three"}
    index.close()
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert version == (str(SCHEMA_VERSION),)
    assert tables - {"sqlite_sequence"} == {"meta", "runs", "notifications"}  # no samples table

    path.write_bytes(b"this is not a database" * 100)  # corrupt
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    index = RunIndex(path, runs)
    index.flush()
    assert index.rebuilt and {r.run_id for r in index.query()} == {"two", "three"}
    index.close()


def test_put_run_dir_indexes_what_is_on_disk(tmp_path: Path) -> None:
    index = RunIndex(tmp_path / "index.sqlite", tmp_path)
    try:
        run_dir = make_run(tmp_path, "late", kind="rollout", ended=None)
        index.put_run_dir(run_dir)
        index.flush()
        row = index.get("late")
        assert row is not None and row.state == "open"
        write_json_atomic(run_dir / SUMMARY_FILE, real_summary(candidate_errors=0.5))
        Run.open(run_dir).finish(ended_at=NOW)
        index.put_run_dir(run_dir)
        index.flush()
        row = index.get("late")
        assert row is not None and row.state == "closed" and row.pinned
    finally:
        index.close()


def test_expire_deletes_old_unpinned_runs_and_their_dirs(tmp_path: Path) -> None:
    old = NOW - 40 * DAY
    make_run(tmp_path, "old-canary", started=old, ended=old + 60)
    make_run(
        tmp_path,
        "old-failed-rollout",
        kind="rollout",
        started=old,
        ended=old + 60,
        summary=real_summary(candidate_errors=0.5),
    )
    make_run(tmp_path, "old-but-open", kind="rollout", started=old, ended=None)
    make_run(tmp_path, "recent", started=NOW - DAY, ended=NOW - DAY + 60)
    index = RunIndex(tmp_path / "index.sqlite", tmp_path)
    try:
        index.flush()
        assert index.expire(NOW, retention_days=30) == ["old-canary"]
        index.flush()
        assert not (tmp_path / "old-canary").exists()
        kept = ("old-failed-rollout", "old-but-open", "recent")
        assert {r.run_id for r in index.query()} == set(kept)
        assert all((tmp_path / r).is_dir() for r in kept)
        assert index.expire(NOW, retention_days=30) == []
    finally:
        index.close()


def test_expired_policy_table() -> None:
    rows = [
        _row("old", started=NOW - 31 * DAY),
        _row("old-pinned", started=NOW - 31 * DAY, pinned=True),
        _row("old-open", started=NOW - 31 * DAY, state="open"),
        _row("old-interrupted", started=NOW - 31 * DAY, state="interrupted"),
        _row("edge", started=NOW - 30 * DAY - 5),  # ended exactly at the cutoff: kept
        _row("young", started=NOW - 29 * DAY),
    ]
    assert expired(rows, NOW, 30) == ["old", "old-interrupted"]
    assert expired(rows, NOW, 0.5) == ["old", "old-interrupted", "edge", "young"]


def test_notifications_are_recorded(tmp_path: Path) -> None:
    index = RunIndex(tmp_path / "index.sqlite", tmp_path)
    try:
        index.record_notification("slack", "chat", "r1", "sent", "posted", ts=NOW)
        index.record_notification("webhook", "chat", "r2", "failed", "HTTP 500", ts=NOW + 1)
        index.record_notification("webhook", "emb", None, "sent", "ok", ts=NOW + 2)
        index.flush()
        got = index.notifications(target="chat")
        assert [(n.kind, n.run_id, n.status, n.detail) for n in got] == [
            ("webhook", "r2", "failed", "HTTP 500"),
            ("slack", "r1", "sent", "posted"),
        ]
        assert got[0].as_api()["at"].endswith("Z")
        assert len(index.notifications()) == 3
    finally:
        index.close()


def test_closed_index_refuses_writes(tmp_path: Path) -> None:
    index = RunIndex(tmp_path / "index.sqlite", tmp_path)
    index.close()
    with pytest.raises(RuntimeError):
        index.put(_row("x"))


def test_a_failing_write_is_undone_alone(tmp_path: Path) -> None:
    index = RunIndex(tmp_path / "index.sqlite", tmp_path)
    release, holding = threading.Event(), threading.Event()
    try:
        index._submit(lambda conn: (holding.set(), release.wait(10)))  # type: ignore[func-returns-value]
        assert holding.wait(5)
        index.put(_row("before"))

        def half_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO runs (run_id, kind, trigger, started_ts, versions, pinned, state) "
                "VALUES ('half', 'load', 'api', 0, '[]', 0, 'closed')"
            )
            raise RuntimeError("boom")

        index._submit(half_then_fail)
        index.put(_row("bad", state="exploded"))  # refused by the writer, not by put
        index.put(_row("after"))
        release.set()  # the four jobs now run as one batch
        index.flush()
        assert {r.run_id for r in index.query()} == {"before", "after"}
    finally:
        release.set()
        index.close()
