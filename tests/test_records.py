"""Records: one schema, atomic shards, exact read-back."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from probes.records import (
    SAMPLE_COLUMNS,
    EventLog,
    Sample,
    ShardWriter,
    read_events,
    read_samples,
    recover_journals,
    shard_paths,
)


def sample(i: int, version: str = "v1", error: str | None = None) -> Sample:
    return Sample(
        ts=1000.0 + i,
        intended_ts=1000.0 + i,
        latency_ms=1.5 * i,
        source="probe",
        worker="w",
        method="GET",
        name="/x",
        status=200 if error is None else 0,
        error=error,
        version=version,
        tag_source="header",
        bytes=10,
        conn=None,
    )


def test_round_trip_keeps_dtypes_and_values(tmp_path):
    with ShardWriter(tmp_path, "probe", background=False) as writer:
        writer.add_many(sample(i) for i in range(5))
        writer.flush()
        writer.add(sample(5, "v2", error="connect"))
    frame = read_samples(tmp_path)
    assert list(frame.columns) == list(SAMPLE_COLUMNS)
    assert len(frame) == 6 and len(shard_paths(tmp_path)) == 2
    assert frame["ts"].dtype == "float64" and frame["status"].dtype == "int16"
    assert frame["bytes"].dtype == "int32"
    assert isinstance(frame["version"].dtype, pd.CategoricalDtype)
    assert frame["latency_ms"].tolist() == [1.5 * i for i in range(6)]
    assert frame["error"].isna().sum() == 5 and frame["error"].iloc[5] == "connect"


def test_empty_run_reads_as_empty_frame(tmp_path):
    frame = read_samples(tmp_path)
    assert len(frame) == 0 and list(frame.columns) == list(SAMPLE_COLUMNS)


def test_half_written_shard_is_ignored(tmp_path):
    with ShardWriter(tmp_path, "probe", background=False) as writer:
        writer.add(sample(1))
    (tmp_path / "samples" / ".probe-000009.parquet.tmp").write_bytes(b"PAR1 torn")
    assert len(read_samples(tmp_path)) == 1


def test_writer_flushes_on_its_timer(tmp_path):
    writer = ShardWriter(tmp_path, "probe", flush_interval=0.05)
    writer.add(sample(1))
    import time

    deadline = time.monotonic() + 5
    while not shard_paths(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(read_samples(tmp_path)) == 1
    writer.close()


def test_sigkill_loses_at_most_the_last_interval(tmp_path):
    """A writer killed without close keeps every row of every completed flush."""
    code = textwrap.dedent(
        f"""
        import os, signal
        from probes.records import ShardWriter, Sample
        w = ShardWriter({str(tmp_path)!r}, "probe", background=False)
        for i in range(300):
            w.add(Sample(float(i), float(i), 1.0, "probe", "w", "GET", "/", 200, None,
                         "v1", "header", 1, None))
            if i % 100 == 99:
                w.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    assert len(read_samples(tmp_path)) == 300


def test_events_round_trip_and_torn_line(tmp_path):
    log = EventLog(tmp_path)
    log.write("marker", "replacement requested", ts=2.0, detail={"artifact": "a2"})
    log.write("proton", "running", ts=1.0, proton_id="p1", role="active")
    log.close()
    with (tmp_path / "events.jsonl").open("a") as fh:
        fh.write('{"ts": 3, "kind": "proton", "sta')
    events = read_events(tmp_path)
    assert [e["ts"] for e in events] == [1.0, 2.0]
    assert events[1]["detail"] == {"artifact": "a2"}
    assert "replacement_id" not in events[0]
    with pytest.raises(ValueError, match="event kind"):
        EventLog(tmp_path).write("nope", "x")
    json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])


def test_failed_flush_keeps_rows_and_sequence_resumes(tmp_path, monkeypatch):
    import probes.records as records

    writer = ShardWriter(tmp_path, "probe", background=False)
    writer.add_many(sample(i) for i in range(3))

    def broken(table, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records, "write_table_atomic", broken)
    with pytest.raises(OSError):
        writer.flush()
    assert writer.pending == 3
    writer.add(sample(3))
    monkeypatch.undo()
    writer.close()
    assert read_samples(tmp_path)["latency_ms"].tolist() == [1.5 * i for i in range(4)]
    # a second writer on the same prefix continues after the highest shard
    (tmp_path / "samples" / "probe-000007.parquet").write_bytes(
        (tmp_path / "samples" / shard_paths(tmp_path)[0].name).read_bytes()
    )
    with ShardWriter(tmp_path, "probe", background=False) as again:
        again.add(sample(9))
    assert (tmp_path / "samples" / "probe-000008.parquet").exists()


def _journal_lines(tmp_path) -> dict[str, int]:
    return {p.name: p.read_text().count("\n") for p in (tmp_path / "samples").glob("*.journal")}


def test_journal_keeps_rows_of_a_rarely_flushed_writer_through_a_crash(tmp_path):
    writer = ShardWriter(tmp_path, "probe", background=False)
    writer.add_many(sample(i) for i in range(3))
    writer.flush()  # shard 0
    writer.add_many(sample(i) for i in range(3, 5))
    assert writer.journal() == 2 and writer.journal() == 0  # only what is new
    writer.add(sample(5, error="timeout"))
    assert writer.journal() == 1
    assert _journal_lines(tmp_path) == {"probe-000001.journal": 3}
    # a crash now: shard 0 on disk, rows 3-5 only in the journal of shard 1
    (tmp_path / "samples" / "probe-000001.journal").open("a").write("[1006.0, 1006.0, 9")
    assert len(read_samples(tmp_path)) == 3  # readers never read journals
    assert recover_journals(tmp_path) == 3  # the torn tail of the crash is skipped
    frame = read_samples(tmp_path)
    assert frame["latency_ms"].tolist() == [1.5 * i for i in range(6)]
    assert frame["error"].tolist()[-1] == "timeout" and frame["ts"].tolist()[-1] == 1005.0
    assert _journal_lines(tmp_path) == {} and recover_journals(tmp_path) == 0


def test_journal_goes_with_its_shard_and_never_doubles_a_row(tmp_path):
    writer = ShardWriter(tmp_path, "probe", background=False)
    writer.add_many(sample(i) for i in range(4))
    writer.journal()
    writer.add(sample(4))
    writer.flush()  # the shard has all 5; its journal is gone
    assert _journal_lines(tmp_path) == {}
    writer.add(sample(5))
    writer.journal()
    # a crash between a shard's rename and its journal's removal: the shard wins
    writer.add(sample(6))
    writer.flush()
    (tmp_path / "samples" / "probe-000001.journal").write_text(json.dumps(list(sample(5))) + "\n")
    assert recover_journals(tmp_path) == 0
    assert read_samples(tmp_path)["latency_ms"].tolist() == [1.5 * i for i in range(7)]
    assert _journal_lines(tmp_path) == {}


def test_journal_survives_a_failed_flush_and_a_resumed_writer_skips_it(tmp_path, monkeypatch):
    import probes.records as records

    writer = ShardWriter(tmp_path, "probe", background=False)
    writer.add_many(sample(i) for i in range(2))
    writer.journal()

    def broken(table, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records, "write_table_atomic", broken)
    with pytest.raises(OSError):
        writer.flush()
    writer.add(sample(2))
    assert writer.journal() == 1  # the journal still holds a prefix of the queue
    assert _journal_lines(tmp_path) == {"probe-000000.journal": 3}
    monkeypatch.undo()
    # the process dies here; a new writer on the same prefix must not take shard 0's name
    again = ShardWriter(tmp_path, "probe", background=False)
    again.add(sample(7))
    again.close()
    assert (tmp_path / "samples" / "probe-000001.parquet").exists()
    assert recover_journals(tmp_path) == 3
    assert sorted(read_samples(tmp_path)["latency_ms"].tolist()) == [0.0, 1.5, 3.0, 10.5]


def _journal_rows(tmp_path) -> list[list]:
    lines = []
    for path in sorted((tmp_path / "samples").glob("*.journal")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def _journal_cut_short(tmp_path, monkeypatch, upto: int, *, fails=()) -> ShardWriter:
    """A writer whose journal holds rows 0-1 and whose next journal() (rows 2..upto-1) the
    disk cuts short: os.write writes half, then ENOSPC; each name in ``fails`` (``ftruncate``,
    ``unlink``) fails too."""
    from pathlib import Path

    import probes.records as records

    writer = ShardWriter(tmp_path, "probe", background=False)
    writer.add_many(sample(i) for i in range(2))
    assert writer.journal() == 2
    writer.add_many(sample(i) for i in range(2, upto))
    real_write = records.os.write
    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    def broken(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(records.os, "write", write)
    if "ftruncate" in fails:
        monkeypatch.setattr(records.os, "ftruncate", broken)
    if "unlink" in fails:
        monkeypatch.setattr(Path, "unlink", broken)
    with pytest.raises(OSError):
        writer.journal()
    monkeypatch.undo()
    return writer


def test_a_journal_write_the_disk_cuts_short_is_undone_so_no_row_doubles(tmp_path, monkeypatch):
    writer = _journal_cut_short(tmp_path, monkeypatch, 6)
    # the half-written rows (and the torn line) are gone: the journal is as it was
    assert [row[2] for row in _journal_rows(tmp_path)] == [0.0, 1.5]
    writer.add(sample(6))
    assert writer.journal() == 5  # the failed rows once, then the new one
    assert [row[2] for row in _journal_rows(tmp_path)] == [1.5 * i for i in range(7)]
    # a crash now: every row once
    assert recover_journals(tmp_path) == 7
    assert read_samples(tmp_path)["latency_ms"].tolist() == [1.5 * i for i in range(7)]


def test_a_journal_that_cannot_be_cut_back_is_started_again(tmp_path, monkeypatch):
    writer = _journal_cut_short(tmp_path, monkeypatch, 4, fails=("ftruncate",))
    assert _journal_rows(tmp_path) == []  # removed: it held a torn half
    assert writer.journal() == 4  # every queued row, into a new journal
    assert recover_journals(tmp_path) == 4
    assert read_samples(tmp_path)["latency_ms"].tolist() == [1.5 * i for i in range(4)]


def test_a_journal_that_cannot_be_removed_after_its_shard_loses_no_shard(tmp_path, monkeypatch):
    from pathlib import Path

    writer = ShardWriter(tmp_path, "probe", background=False)
    writer.add_many(sample(i) for i in range(3))
    writer.journal()
    real_unlink = Path.unlink

    def stuck(self, missing_ok=False):
        if self.suffix == ".journal":
            raise PermissionError(13, "Permission denied")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", stuck)
    writer.flush()  # the shard is written: a journal left beside it is harmless
    monkeypatch.undo()
    writer.add_many(sample(i) for i in range(3, 5))
    writer.flush()
    assert writer.rows_written == 5
    assert recover_journals(tmp_path) == 0  # its shard exists: only removed
    assert read_samples(tmp_path)["latency_ms"].tolist() == [1.5 * i for i in range(5)]


def test_a_torn_journal_that_stays_is_left_alone_until_its_shard(tmp_path, monkeypatch):
    writer = _journal_cut_short(tmp_path, monkeypatch, 6, fails=("ftruncate", "unlink"))
    writer.add(sample(6))
    assert writer.journal() == 0  # nothing after the torn line: no row twice, none lost in it
    # a crash now: the rows before the tear, each once
    torn = tmp_path / "samples" / "probe-000000.journal"
    copy = torn.read_bytes()
    recover_journals(tmp_path)
    got = read_samples(tmp_path)["latency_ms"].tolist()
    assert got[:2] == [0.0, 1.5] and len(got) == len(set(got))
    # no crash: the shard takes every row and the journal goes with it
    (tmp_path / "samples" / "probe-000000.parquet").unlink()
    torn.write_bytes(copy)
    writer.flush()
    assert read_samples(tmp_path)["latency_ms"].tolist() == [1.5 * i for i in range(7)]
    assert _journal_lines(tmp_path) == {}
    writer.add(sample(7))
    assert writer.journal() == 1  # journaling again for the next shard


def test_stream_columns_round_trip_and_a_schema_2_shard_reads_them_as_null(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    streamed = sample(1)._replace(ttft_ms=12.5, tokens=7, itl_ms=3.25)
    with ShardWriter(tmp_path / "new", "probe", background=False) as writer:
        writer.add_many([streamed, sample(2)])
    frame = read_samples(tmp_path / "new")
    assert frame["ttft_ms"].iloc[0] == 12.5 and pd.isna(frame["ttft_ms"].iloc[1])
    assert frame["itl_ms"].iloc[0] == 3.25
    assert frame["tokens"].iloc[0] == 7 and pd.isna(frame["tokens"].iloc[1])
    # A shard written in schema 2 (no stream columns) reads them as null.
    old_dir = tmp_path / "old" / "samples"
    old_dir.mkdir(parents=True)
    old_cols = SAMPLE_COLUMNS[: SAMPLE_COLUMNS.index("ttft_ms")]
    rows = [sample(i) for i in range(3)]
    table = pa.table({c: [getattr(r, c) for r in rows] for c in old_cols})
    table = table.replace_schema_metadata({b"proton-probe.samples": b"2"})
    pq.write_table(table, old_dir / "probe-000000.parquet")
    old = read_samples(tmp_path / "old")
    assert len(old) == 3 and list(old.columns) == list(SAMPLE_COLUMNS)
    for column in ("ttft_ms", "tokens", "itl_ms"):
        assert old[column].isna().all()
    assert list(old["latency_ms"]) == [0.0, 1.5, 3.0]
    # Tuples of schema 2 (an older Locust worker's rows) are padded with nulls.
    with ShardWriter(tmp_path / "tuples", "locust", background=False) as writer:
        writer.add_many([tuple(sample(5))[: len(old_cols)]])  # type: ignore[list-item]
    assert read_samples(tmp_path / "tuples")["ttft_ms"].isna().all()
