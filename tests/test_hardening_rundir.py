"""Issue 14 hardening of run directories: corrupt files are one-line errors naming the file,
a bad shard is skipped and reported, shards are written durably under unique temp names, a
run that never finished is reported as incomplete, and interrupted rows are not counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from probes import records
from probes.cli import main
from probes.records import Sample, read_manifest, shard_paths, write_json_atomic
from probes.run import Run
from reports import make_report
from tests.helpers import ROOT

T0 = 1_750_000_000.0


def _sample(i: int, *, error: str | None = None, version: str = "v1") -> Sample:
    ts = T0 + i / 10
    status = 0 if error == "interrupted" else 200
    return Sample(ts, ts, 5.0, "probe", "w1", "GET", "/", status, error, version, "header", 9, None)


def write_run(runs_dir: Path, *, shards: int = 3, finish: bool = True, **finish_fields) -> Path:
    """A run of ``shards`` shards of 50 good rows each, finished unless told otherwise."""
    run = Run.create(
        runs_dir,
        "r",
        "observe",
        target={"url": "http://127.0.0.1:9/"},
        settings={"slos": [], "bucket_s": 1.0},
        started_at=T0,
    )
    writer = run.shard_writer("probe", background=False)
    for k in range(shards):
        writer.add_many(_sample(50 * k + i) for i in range(50))
        writer.flush()
    writer.close()
    run.events.write("marker", "started", ts=T0)
    if finish:
        run.finish(ended_at=T0 + 5 * shards, **finish_fields)
    else:
        run.events.close()
    return run.path


def report(run_dir: Path, capsys) -> tuple[int, str, str]:
    code = main(["report", str(run_dir), "--no-figures"])
    out, err = capsys.readouterr()
    return code, out, err.strip()


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# --------------------------------------------------------------------------- manifest, events


def _set_manifest(run_dir: Path, change) -> None:
    path = run_dir / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("corrupt", "why"),
    [
        (lambda p: p.write_bytes(b'{"run_id": "\xff\xfe"}'), "not UTF-8"),
        (lambda p: p.write_bytes(b"\x00\x01garbage"), "unreadable"),
        (lambda p: p.write_text("[1, 2]"), "not a JSON object"),
        (lambda p: _set_manifest(p.parent, lambda d: d.update(run_id=5)), "run_id"),
        (lambda p: _set_manifest(p.parent, lambda d: d.update(started_ts="x")), "started_ts"),
        (lambda p: _set_manifest(p.parent, lambda d: d.update(ended_ts=True)), "ended_ts"),
        (lambda p: _set_manifest(p.parent, lambda d: d.update(ended_ts=1e300)), "ended_ts"),
        (lambda p: _set_manifest(p.parent, lambda d: d.update(settings=[1])), "settings"),
        (lambda p: _set_manifest(p.parent, lambda d: d.update(target=7)), "target"),
        (lambda p: _set_manifest(p.parent, lambda d: d["settings"].update(slos=5)), "slos"),
        (lambda p: _set_manifest(p.parent, lambda d: d["settings"].update(slos=[3])), "slos"),
        (
            lambda p: _set_manifest(p.parent, lambda d: d["settings"].update(bucket_s="x")),
            "bucket_s",
        ),
        (
            lambda p: _set_manifest(
                p.parent, lambda d: d.update(kind="capacity", settings={"capacity": {"x": 1}})
            ),
            "settings.capacity",
        ),
    ],
)
def test_corrupt_manifest_is_one_line_naming_the_file(tmp_path, capsys, corrupt, why):
    run_dir = write_run(tmp_path)
    corrupt(run_dir / "manifest.json")
    code, _, err = report(run_dir, capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "manifest.json" in err and why in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b'{"ts": 1750000001, "kind": "marker", "status": "\xff"}\n', "line 2 is not UTF-8"),
        (b"not json at all\n", "line 2 is not JSON"),
        (b"[1, 2]\n", "line 2 is not a JSON object"),
        (b'{"ts": "soon", "kind": "marker", "status": "x"}\n', "ts"),
        (b'{"ts": 1e300, "kind": "marker", "status": "x"}\n', "ts"),
        (b'{"kind": "marker", "status": "x"}\n', "ts"),
        (b'{"ts": 1750000001, "kind": 5, "status": "x"}\n', "kind"),
        (b'{"ts": 1750000001, "kind": "marker"}\n', "no status"),
        (b'{"ts": 1750000001, "kind": "proton", "status": "x", "detail": "v2"}\n', "detail"),
        (b'{"ts": 1750000001, "kind": "proton", "status": "x", "role": ["a"]}\n', "role"),
    ],
)
def test_corrupt_events_are_one_line_naming_the_file_and_line(tmp_path, capsys, line, why):
    run_dir = write_run(tmp_path)
    with (run_dir / "events.jsonl").open("ab") as fh:
        fh.write(line)
        fh.write(b'{"ts": 1750000002, "kind": "marker", "status": "later"}\n')
    code, _, err = report(run_dir, capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "events.jsonl" in err and why in err


def test_a_torn_last_event_line_is_still_skipped(tmp_path, capsys):
    run_dir = write_run(tmp_path)
    with (run_dir / "events.jsonl").open("ab") as fh:
        fh.write(b'{"ts": 1750000001, "kind": "mar\xc3')  # killed mid-line, mid-character
    code, _, err = report(run_dir, capsys)
    assert code == 0, err
    assert summary_of(run_dir)["requests"] == 150


# --------------------------------------------------------------------------- shards


def _wrong_types(path: Path) -> None:
    table = pa.table({name: pa.array(["x"] * 3) for name in records.SAMPLE_COLUMNS})
    pq.write_table(table, path)


def _missing_column(path: Path) -> None:
    pq.write_table(pa.table({"ts": pa.array([T0])}), path)


def _absurd_times(path: Path) -> None:
    rows = [_sample(0)._replace(ts=1e300), _sample(1)._replace(ts=float("nan"))]
    records.write_table_atomic(records.samples_to_table(rows), path)


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"PAR1 but not really"), ""),
        (_wrong_types, "column ts is string"),
        (_missing_column, "intended_ts"),
        (_absurd_times, "not epoch seconds"),
    ],
)
def test_one_unreadable_shard_is_skipped_and_reported(tmp_path, capsys, spoil, why):
    run_dir = write_run(tmp_path)
    bad = shard_paths(run_dir)[1]
    spoil(bad)
    code, _, err = report(run_dir, capsys)
    assert code == 0, err
    s = summary_of(run_dir)
    assert s["requests"] == 100  # the two good shards
    (skipped,) = s["skipped_shards"]
    assert skipped["file"] == f"samples/{bad.name}" and why in skipped["reason"]
    html = (run_dir / "report.html").read_text()
    md = (run_dir / "report.md").read_text()
    assert bad.name in html and bad.name in md and "skipped" in md


def test_a_clean_run_has_no_skipped_shards_and_is_complete(tmp_path):
    s = make_report(write_run(tmp_path), figures=False)
    assert s["skipped_shards"] == [] and s["complete"] is True and s["incomplete_reason"] is None
    assert s["verdict"]["result"] == "pass"


def test_shards_and_manifests_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "probe-000000.parquet"
    records.write_table_atomic(records.samples_to_table([_sample(0)]), path)
    assert len(synced) == 2
    assert Path(synced[0]).parent == tmp_path and Path(synced[0]).name.endswith(".tmp")
    assert Path(synced[1]) == tmp_path  # the directory, after the rename
    synced.clear()
    write_json_atomic(tmp_path / "manifest.json", {"a": 1})
    assert len(synced) == 2 and Path(synced[1]) == tmp_path


def test_temp_names_are_unique_per_process_and_write(tmp_path):
    path = tmp_path / "manifest.json"
    names = {records._tmp_name(path).name for _ in range(100)}
    assert len(names) == 100 and all(f".{os.getpid()}." in n for n in names)


def test_two_writers_of_one_file_never_share_a_temp_file(tmp_path):
    """Two writers (threads here, processes alike) replacing the same file at once: with a
    shared temp name one renames the other's half-written file or finds it gone."""
    path = tmp_path / "manifest.json"
    errors: list[BaseException] = []

    def hammer(k: int) -> None:
        try:
            for i in range(200):
                write_json_atomic(path, {"writer": k, "i": i, "pad": "x" * 2000})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(path.read_text())["i"] == 199
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


# --------------------------------------------------------------------------- incomplete runs (11)


def test_a_run_that_never_finished_is_reported_incomplete(tmp_path, capsys):
    run_dir = write_run(tmp_path, finish=False)
    assert read_manifest(run_dir)["ended_ts"] is None
    code, out, _ = report(run_dir, capsys)
    s = summary_of(run_dir)
    assert s["complete"] is False and "never finished" in s["incomplete_reason"]
    assert s["verdict"]["result"] == "fail" and code == 1
    check = s["verdict"]["checks"][-1]
    assert (check["name"], check["passed"]) == ("run_complete", False)
    assert "run_complete" in out
    assert "Incomplete run" in (run_dir / "report.html").read_text()
    assert "Incomplete run" in (run_dir / "report.md").read_text()


def test_a_run_finished_as_interrupted_is_complete(tmp_path):
    s = make_report(write_run(tmp_path, interrupted="SIGTERM"), figures=False)
    assert s["complete"] is True and s["verdict"]["result"] == "pass"
    assert all(c["name"] != "run_complete" for c in s["verdict"]["checks"])


def test_an_incomplete_run_fails_whatever_slos_are_given(tmp_path):
    run_dir = write_run(tmp_path, finish=False)
    s = make_report(run_dir, slos=["error_rate<0.5", "p99_ms<100"], figures=False)
    assert [c["passed"] for c in s["verdict"]["checks"]] == [True, True, False]
    assert s["verdict"]["result"] == "fail"


@pytest.mark.slow
def test_a_sigkilled_observe_run_reports_as_incomplete(tmp_path, capsys, version_server):
    srv = version_server()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "probes.cli", "observe", srv.url, "--quiet"),
            *("--runs-dir", str(tmp_path), "--run-id", "k", "--rate", "50", "--duration", "60"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )
    run_dir = tmp_path / "k"
    try:
        deadline = time.monotonic() + 30
        while not shard_paths(run_dir) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert shard_paths(run_dir), "the probe wrote no shard"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    code, _, _ = report(run_dir, capsys)
    s = summary_of(run_dir)
    assert s["requests"] > 0 and s["complete"] is False and s["verdict"]["result"] == "fail"
    assert code == 1


# --------------------------------------------------------------------------- interrupted rows (9)


def test_interrupted_rows_are_reported_not_counted(tmp_path):
    run = Run.create(tmp_path, "r", "observe", target={}, settings={}, started_at=T0)
    with run.shard_writer("probe", background=False) as writer:
        writer.add_many(_sample(i) for i in range(40))
        writer.add_many(_sample(40 + i, error="interrupted") for i in range(5))
    run.finish(ended_at=T0 + 5, interrupted="SIGTERM")
    s = make_report(run.path, figures=False)
    assert s["requests"] == 40 and s["errors"] == 0 and s["interrupted"] == 5
    assert s["verdict"]["result"] == "pass"
