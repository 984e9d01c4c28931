"""``probes observe``: end to end on 127.0.0.1, read back through summary.json."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probes.cli import main
from probes.records import read_manifest, read_samples, shard_paths
from probes.statusline import StatusLine, Tally, format_status
from tests.helpers import ROOT, closed_port


def observe(runs: Path, url: str, *args: str) -> tuple[int, Path]:
    code = main(["observe", url, "--runs-dir", str(runs), "--run-id", "r", "--quiet", *args])
    return code, runs / "r"


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_switch_at_a_known_instant(tmp_path, version_server):
    rate = 50.0
    switch_at = time.time() + 1.8
    srv = version_server(switch_at=switch_at)
    code, run_dir = observe(tmp_path, srv.url, "--rate", "50", "--duration", "3")
    assert code == 0
    s = summary_of(run_dir)
    assert s["versions"]["v1"]["role"] == "baseline" and s["versions"]["v2"]["role"] == "candidate"
    switch_s = switch_at - read_manifest(run_dir)["started_ts"]
    frame = read_samples(run_dir)
    first_v2 = frame[frame.version == "v2"].iloc[0]
    # The last v1 request left before the switch and the next one after it, so the gap is one
    # interval plus however late that next request was sent.
    bound = 1 / rate + max(0.0, first_v2.ts - first_v2.intended_ts)
    fc = s["rollout"]["first_candidate_s"]
    assert -0.005 <= fc - switch_s <= bound + 1e-3
    assert s["phases"][0]["share"] == {"v1": 1.0}
    assert s["phases"][-1]["share"] == {"v2": 1.0}
    assert s["requests"] == 150


def test_split_90_10(tmp_path, version_server):
    srv = version_server(v2_share=0.1)
    code, run_dir = observe(tmp_path, srv.url, "--rate", "200", "--duration", "1.5")
    assert code == 0
    versions = summary_of(run_dir)["versions"]
    assert versions["v1"]["share"] == pytest.approx(0.9, abs=0.03)
    assert versions["v2"]["share"] == pytest.approx(0.1, abs=0.03)


def test_candidate_errors_fail_the_slo(tmp_path, version_server, capsys):
    srv = version_server(v2_share=0.5, error_share={"v2": 0.1})
    code, run_dir = observe(
        tmp_path, srv.url, "--rate", "200", "--duration", "1.5", "--slo", "error_rate<0.01"
    )
    assert code == 1
    s = summary_of(run_dir)
    assert s["versions"]["v1"]["error_rate"] == 0
    assert s["versions"]["v2"]["error_rate"] == pytest.approx(0.1, abs=0.02)
    assert s["verdict"]["result"] == "fail"
    out = capsys.readouterr().out
    assert "report.html" in out and "verdict: fail" in out


def test_unreachable_target_exits_3_with_connect_rows(tmp_path, capsys):
    url = f"http://127.0.0.1:{closed_port()}/"
    code, run_dir = observe(tmp_path, url, "--rate", "20", "--duration", "0.5")
    assert code == 3
    frame = read_samples(run_dir)
    assert len(frame) == 10 and set(frame["error"]) == {"connect"} and (frame.status == 0).all()
    assert (run_dir / "report.html").exists()
    assert "target unusable" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--rate", "0"], "--rate"),
        (["--rate", "-5"], "--rate"),
        (["--rate", "nan"], "--rate"),
        (["--rate", "inf"], "--rate"),
        (["--rate", "fast"], "--rate"),
        (["--max-in-flight", "0"], "--max-in-flight"),
        (["--duration", "0"], "--duration"),
        (["--duration", "inf"], "--duration"),
        (["--timeout", "-1"], "--timeout"),
        (["--slo", "error_rate<<1"], "--slo"),
        (["--slo", "nonsense"], "--slo"),
        (["--header", "no colon"], "--header"),
        (["--token-env", "not a name"], "--token-env"),
        (["--method", "G E T"], "--method"),
        (["--run-id", "../x"], "--run-id"),
        (["--path", "nope"], "--path"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path, capsys, args, flag):
    code = main(["observe", "http://127.0.0.1:9/", "--runs-dir", str(tmp_path), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert flag in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing recorded, nothing sent


@pytest.mark.parametrize(("url", "needle"), [(None, "URL"), ("ftp://x/", "URL")])
def test_bad_or_missing_url_exits_2(tmp_path, capsys, url, needle):
    argv = ["observe", "--runs-dir", str(tmp_path)] + ([url] if url else [])
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_manifest_masks_the_token(tmp_path, version_server, monkeypatch):
    monkeypatch.setenv("OBSERVE_TOKEN", "tok-should-not-leak")
    srv = version_server()
    code, run_dir = observe(
        tmp_path,
        srv.url,
        "--rate",
        "20",
        "--duration",
        "0.3",
        "--token-env",
        "OBSERVE_TOKEN",
        "--header",
        "Authorization: Bearer other-secret",
    )
    assert code == 0
    manifest = read_manifest(run_dir)
    for path in run_dir.rglob("*"):  # manifest, summary, report.html/.md, events, shards
        if path.is_file():
            data = path.read_bytes()
            assert b"tok-should-not-leak" not in data and b"other-secret" not in data, path
    settings = manifest["settings"]
    assert settings["rate"] == 20 and settings["bucket_s"] == 1.0 and settings["slos"] == []
    assert manifest["kind"] == "observe" and manifest["ended_at"]
    assert manifest["probe"]["recorded"] == 6


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_mid_run_still_reports(tmp_path, version_server, sig):
    srv = version_server()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from probes.cli import main; main()",
            "observe",
            srv.url,
            "--runs-dir",
            str(tmp_path),
            "--run-id",
            "t",
            "--rate",
            "50",
            "--duration",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    run_dir = tmp_path / "t"
    deadline = time.monotonic() + 30
    while not shard_paths(run_dir) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "report.html" in out and "Traceback" not in err and sig.name in err
    manifest = read_manifest(run_dir)
    assert manifest["interrupted"] == sig.name and manifest["ended_at"]
    assert manifest["probe"]["stopped_early"]
    frame = read_samples(run_dir)
    # Every row the probe recorded is on disk, and the report counted all of them.
    assert len(frame) == manifest["probe"]["recorded"] > 0
    assert summary_of(run_dir)["requests"] == len(frame)


# --------------------------------------------------------------------------- status line


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (
            (12.04, 60, 49.81, 600, 3, {"v1": 528, "v2": 72}),
            "12.0s/60s  rate 49.8/s  requests 600  now v1 88% v2 12%  errors 3 (0.5%)",
        ),
        ((0.5, None, 0.0, 0, 0, {}), "0.5s  rate 0.0/s  requests 0  errors 0"),
        (
            (1, 10, 5, 5, 0, {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}),
            "1.0s/10s  rate 5.0/s  requests 5  now a 20% b 20% c 20% d 20% +1 more"
            "  errors 0 (0.0%)",
        ),
    ],
)
def test_format_status(args, text):
    assert format_status(*args) == text


def test_status_plain_lines_and_quiet():
    tally = Tally()
    for _ in range(3):
        tally.add("v1")
    tally.add("v2", "http_5xx")
    out = io.StringIO()
    line = StatusLine(tally, 10, stream=out, tty=False)
    line.draw()
    assert out.getvalue().endswith("\n") and "now v1 75% v2 25%" in out.getvalue()
    assert "errors 1 (25.0%)" in out.getvalue()
    for _ in range(4):
        tally.add("v2")
    line.draw()  # the split is over what answered since the last line: all v2 now
    assert out.getvalue().splitlines()[-1].split("  ")[3] == "now v2 100%"
    tty = io.StringIO()
    StatusLine(tally, 10, stream=tty, tty=True).draw()
    assert tty.getvalue().startswith("\r") and "\n" not in tty.getvalue()
    quiet = io.StringIO()
    with StatusLine(tally, 10, stream=quiet, quiet=True, interval=0.01):
        time.sleep(0.05)
    assert quiet.getvalue() == ""
