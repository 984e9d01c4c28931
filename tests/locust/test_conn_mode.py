"""Locust samples carry the connection mode ``reused`` (its clients keep connections alive),
in the sample schema's order, and go through the shard writer as such."""

from __future__ import annotations

from pathlib import Path

from probes.locustglue import glue
from probes.records import SAMPLE_COLUMNS, ShardWriter, read_samples
from tests.locust.test_glue_events import FakeResponse, fire_kwargs


def test_locust_rows_are_reused_and_round_trip(tmp_path: Path) -> None:
    rows: list[tuple] = []
    recorder = glue.Recorder(rows.append, "w1")
    recorder.on_request(**fire_kwargs(FakeResponse(200, {"X-Version": "m:1"})))
    recorder.on_request(**fire_kwargs(FakeResponse(0), ConnectionResetError()))
    assert [len(r) for r in rows] == [len(SAMPLE_COLUMNS)] * 2
    assert [dict(zip(SAMPLE_COLUMNS, r, strict=True))["conn_mode"] for r in rows] == ["reused"] * 2
    with ShardWriter(tmp_path, "locust", background=False) as writer:
        writer.add_many(rows)  # type: ignore[arg-type]
    frame = read_samples(tmp_path)
    assert list(frame["conn_mode"].astype(str)) == ["reused", "reused"]
    assert list(frame["version"].astype(str)) == ["m:1", "unknown"]
