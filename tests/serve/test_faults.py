"""Issue 21: a service you can leave alone. Fault tests, each failing before its fix.

- two ``probes serve`` processes on one runs_dir: the second exits 2 naming
  ``serve.runs_dir``, the first keeps running and its open runs stay open;
- config values that would break the service later (CR/LF in a request, durations and rates
  beyond their ranges, an ``index`` that is a directory, ``probes.toml duration = [1]``):
  exit 2 naming the key;
- an index with a valid header and a damaged body: checked at open and rebuilt from the run
  directories; a symlink in runs_dir is never followed out of it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from probes.errors import ConfigError
from probes.run import Run
from probes.serve.config import parse_config
from probes.serve.index import RunIndex, inside, run_dirs
from probes.serve.lock import RunsDirLock
from tests.helpers import ROOT


def wait_for(cond: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


# --------------------------------------------------------------------------- one per runs_dir


def serve_cli(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "probes.cli", "serve", "--config", str(config)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def listening_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on " in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return line.strip().rsplit(" ", 1)[1].rstrip("/")
    raise AssertionError(f"the service exited early: {proc.wait()}")


def test_a_second_service_on_the_same_runs_dir_exits_2_and_the_first_runs_on(
    tmp_path: Path,
) -> None:
    config = tmp_path / "serve.toml"
    # canary_rate 0: the services send nothing anywhere; one canary would only add noise
    config.write_text(
        '[serve]\nlisten = "127.0.0.1:0"\nruns_dir = "runs"\n'
        '[[targets]]\nname = "web"\nurl = "http://127.0.0.1:9/"\ncanary_rate = 0\n'
    )
    first = serve_cli(config)
    try:
        url = listening_url(first)
        second = serve_cli(config)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        lines = [line for line in err.splitlines() if line.startswith("probes:")]
        assert len(lines) == 1 and "serve.runs_dir" in lines[0], err
        assert f"pid {first.pid}" in lines[0]
        assert "Traceback" not in err
        # the first one never noticed: still answering, nothing recovered as crashed
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert first.poll() is None
        assert not [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    finally:
        first.terminate()
        first.wait(30)
    # the lock dies with its process: a third service starts on the same directory
    third = serve_cli(config)
    try:
        listening_url(third)
    finally:
        third.terminate()
        assert third.wait(30) == 0


def test_the_lock_is_per_open_file_so_two_services_in_one_process_conflict(
    tmp_path: Path,
) -> None:
    one, two = RunsDirLock(tmp_path), RunsDirLock(tmp_path)
    one.acquire()
    with pytest.raises(ConfigError, match=r"^serve\.runs_dir: .* in use by another probes serve"):
        two.acquire()
    one.release()
    two.acquire()  # freed: the next one gets it
    assert two.held
    two.release()


# --------------------------------------------------------------------------- config


def target_config(tmp_path: Path, serve: str = "", schedule: str = "", **target: str) -> Any:
    import tomllib

    fields = {"name": '"web"', "url": '"http://127.0.0.1:9000/"', **target}
    text = "[serve]\n" + serve + "\n[[targets]]\n"
    text += "".join(f"{k} = {v}\n" for k, v in fields.items())
    if schedule:
        text += '[[schedules]]\nname = "s"\ntarget = "web"\nkind = "observe"\n' + schedule
    return parse_config(tomllib.loads(text), tmp_path, env={})


@pytest.mark.parametrize(
    ("target", "key"),
    [
        ({"path": r'"/x\r\nX-Evil: 1"'}, "targets[0].path"),
        ({"path": r'"/x\n"'}, "targets[0].path"),
        ({"headers": r'["X-A: b", "X-Team: a\r\nX-Evil: 1"]'}, "targets[0].headers[1]"),
        ({"body_file": r'"body\n.json"'}, "targets[0].body_file"),
        ({"url": r'"http://127.0.0.1:9000/\r\n"'}, "targets[0].url"),
        ({"tag_header": r'["X-Version\r"]'}, "targets[0].tag_header[0]"),
    ],
)
def test_a_line_break_in_a_request_value_names_its_key(
    tmp_path: Path, target: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as err:
        target_config(tmp_path, **target)
    assert str(err.value).startswith(f"{key}: must not contain a line break")


@pytest.mark.parametrize(
    ("serve", "target", "schedule", "key", "range_text"),
    [
        ("", {}, 'every = "99999999999999999999h"\n', "schedules[0].every", "8784h"),
        ("", {}, 'every = "8785h"\n', "schedules[0].every", "8784h"),
        ("segment_s = 1e12", {}, "", "serve.segment_s", ">= 1 and <= 604800"),
        ("segment_s = 0.5", {}, "", "serve.segment_s", ">= 1 and <= 604800"),
        ("retention_days = 1e300", {}, "", "serve.retention_days", "<= 36500"),
        ("", {"settle_s": "1e300"}, "", "targets[0].settle_s", "> 0 and <= 21600"),
        ("", {"capture_tail_s": "86401"}, "", "targets[0].capture_tail_s", ">= 0 and <= 21600"),
        ("", {"canary_rate": "1e-300"}, "", "targets[0].canary_rate", "0 (off) or 0.001 to 1000"),
        ("", {"capture_rate": "1e-9"}, "", "targets[0].capture_rate", "0.001 to 1000"),
        ("", {"capture_rate": "1e9"}, "", "targets[0].capture_rate", "<= 1000"),
        ("", {}, 'every = "1h"\nduration_s = 1e12\n', "schedules[0].duration_s", "<= 604800"),
        (
            "",
            {},
            'every = "1h"\nstarting_deadline_s = 1e15\n',
            "schedules[0].starting_deadline_s",
            "<= 3.1622",
        ),
    ],
)
def test_durations_and_rates_beyond_their_range_name_the_key_and_the_range(
    tmp_path: Path,
    serve: str,
    target: dict[str, str],
    schedule: str,
    key: str,
    range_text: str,
) -> None:
    with pytest.raises(ConfigError) as err:
        target_config(tmp_path, serve=serve, schedule=schedule, **target)
    message = str(err.value)
    assert message.startswith(f"{key}: "), message
    assert range_text in message, message
    assert "\n" not in message


def test_values_at_the_ends_of_their_ranges_are_accepted(tmp_path: Path) -> None:
    cfg = target_config(
        tmp_path,
        serve="segment_s = 604800\nretention_days = 36500",
        schedule='every = "8784h"\nduration_s = 604800\n',
        settle_s="21600",
        capture_tail_s="0",
        canary_rate="0.001",
        capture_rate="1000",
    )
    assert cfg.serve.segment_s == 604800 and cfg.targets[0].settle_s == 21600
    assert cfg.schedules[0].timing.every_s == 8784 * 3600


def test_an_index_path_that_is_a_directory_names_serve_index(tmp_path: Path) -> None:
    (tmp_path / "idx").mkdir()
    with pytest.raises(ConfigError, match=r"^serve\.index: .* is a directory"):
        target_config(tmp_path, serve='index = "idx"')


def test_an_unwritable_index_exits_2_naming_serve_index(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root writes anywhere: a path under a regular file is unusable for everyone
        (tmp_path / "file").write_text("x")
        index = "file/index.sqlite"
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        index = "ro/index.sqlite"
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[serve]\nlisten = "127.0.0.1:0"\nruns_dir = "runs"\nindex = "{index}"\n'
        '[[targets]]\nname = "web"\nurl = "http://127.0.0.1:9/"\ncanary_rate = 0\n'
    )
    proc = serve_cli(config)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("probes: serve.index: ")], err


@pytest.mark.parametrize(
    ("text", "key"),
    [("duration = [1]", "'duration'"), ("[observe]\nrate = {a = 1}", "'rate'")],
)
def test_probes_toml_a_list_for_a_single_value_names_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    (tmp_path / "probes.toml").write_text(text + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "probes.cli", "observe", "http://127.0.0.1:9/"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert key in proc.stderr and "takes one value" in proc.stderr


# --------------------------------------------------------------------------- the index


def make_runs(runs: Path, n: int) -> list[str]:
    ids = []
    for k in range(n):
        run = Run.create(runs, f"web-canary-{k}", "canary", target={}, settings={},
                         trigger="continuous", started_at=1_700_000_000 + k)  # fmt: skip
        run.update(target_name="web")
        run.finish(ended_at=1_700_000_000 + k + 1)
        ids.append(run.run_id)
    return ids


def damage_body(path: Path, keep: int = 6) -> None:
    """Keep the header, the schema and the first tables' root pages (``meta`` included: the
    schema version still reads fine); overwrite every page after ``keep`` with garbage."""
    size = path.stat().st_size
    page = int.from_bytes(path.read_bytes()[16:18], "big") or 65536
    assert size > (keep + 2) * page, "the file must have pages beyond the kept ones"
    with path.open("r+b") as fh:
        fh.seek(keep * page)
        fh.write(b"\xa5" * (size - keep * page))


def test_a_damaged_index_body_is_found_at_open_and_rebuilt_from_the_run_dirs(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    ids = make_runs(runs, 40)
    db = tmp_path / "index.sqlite"
    index = RunIndex(db, runs)
    index.flush()
    for k in range(300):  # notifications: pages enough for the damage to land in tables
        index.record_notification("rollout_opened", "web", None, "sent", "x" * 200, ts=k)
    index.flush()
    index.close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage_body(db)
    with open(db, "rb") as fh:  # the header still says SQLite: it opens without complaint
        assert fh.read(16) == b"SQLite format 3\x00"

    index = RunIndex(db, runs)
    try:
        assert index.rebuilt
        index.flush()
        assert sorted(r.run_id for r in index.query(limit=1000)) == sorted(ids)
        assert index.query(target="web", limit=1)[0].run_id == ids[-1]
    finally:
        index.close()


def test_a_damage_found_by_a_read_while_running_is_rebuilt(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    ids = make_runs(runs, 40)
    db = tmp_path / "index.sqlite"
    index = RunIndex(db, runs)
    try:
        index.flush()
        for k in range(300):
            index.record_notification("rollout_opened", "web", None, "sent", "x" * 200, ts=k)
        index.flush()
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        damage_body(db)
        with pytest.raises(sqlite3.DatabaseError):
            for _ in range(3):  # one of these touches a damaged page
                index.query(limit=1000)
                index.notifications(limit=1000)

        def rebuilt() -> bool:
            try:
                return len(index.query(limit=1000)) == len(ids)
            except sqlite3.Error:
                return False

        wait_for(lambda: index.repairs == 1, 30)
        wait_for(rebuilt, 30)
        assert index.repairs == 1
        index.put_run_dir(runs / ids[0])  # and writes work again
        index.flush()
        assert index.get(ids[0]) is not None
    finally:
        index.close()


def test_a_symlink_in_runs_dir_is_never_followed_out_of_it(tmp_path: Path) -> None:
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    (inner,) = make_runs(runs, 1)
    (outer,) = make_runs(elsewhere, 1)
    (runs / "linked-run").symlink_to(elsewhere / outer, target_is_directory=True)
    (runs / inner / "report.html").unlink(missing_ok=True)
    (runs / inner / "report.html").symlink_to(elsewhere / outer / "manifest.json")
    assert set(run_dirs(runs)) == {inner}
    assert not inside(runs, runs / "linked-run" / "manifest.json")
    assert not inside(runs, runs / inner / "report.html")
    assert inside(runs, runs / inner / "manifest.json")
    index = RunIndex(tmp_path / "index.sqlite", runs)
    try:
        index.flush()
        assert [r.run_id for r in index.query()] == [inner]
    finally:
        index.close()


def test_the_routes_never_serve_a_file_through_a_symlink_out_of_runs_dir(
    tmp_path: Path,
) -> None:
    from probes.serve.http import _existing_file, _summary

    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    (inner,) = make_runs(runs, 1)
    secret = elsewhere / "secret.html"
    elsewhere.mkdir()
    secret.write_text("secret")
    (runs / inner / "report.html").symlink_to(secret)
    (runs / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "summary.json").write_text('{"schema": "x"}')
    assert not _existing_file(runs, runs / inner / "report.html")
    assert _summary(runs, runs / "linked") is None
    (runs / inner / "own.html").write_text("ok")
    assert _existing_file(runs, runs / inner / "own.html")
