"""make_report and `probes report` from a run directory written with the real writers."""

from __future__ import annotations

import json
import re

import pytest

from probes.cli import main
from probes.records import Sample
from probes.run import Run
from reports import make_report

T0 = 1_750_000_000.0


def write_run(runs_dir, run_id="r1", *, errors_v2=0.0, all_connect=False, events=True, slos=()):
    """A 20 s run at 50/s switching v1 -> v2 at 10 s, written with ShardWriter and EventLog."""
    run = Run.create(
        runs_dir,
        run_id,
        "observe",
        target={"url": "http://127.0.0.1:9/"},
        settings={"slos": list(slos), "bucket_s": 1.0},
        started_at=T0,
    )
    with run.shard_writer("probe", background=False) as writer:
        for i in range(1000):
            ts = T0 + i / 50
            version = "app:1" if ts < T0 + 10 else "app:2"
            error = None
            if all_connect:
                version, error = "unknown", "connect"
            elif version == "app:2" and i % 100 < errors_v2 * 100:
                error = "http_5xx"
            status = 0 if error == "connect" else (500 if error else 200)
            writer.add(
                Sample(
                    ts,
                    ts,
                    5.0 + (i % 7),
                    "probe",
                    "w1",
                    "GET",
                    "/",
                    status,
                    error,
                    version,
                    "header",
                    12,
                    None,
                )
            )
    if events:
        ev = run.events
        ev.write(
            "proton",
            "running",
            ts=T0 + 0.1,
            proton_id="p1",
            role="active",
            detail={"version": "app:1", "artifact_id": "a1"},
        )
        ev.write(
            "marker",
            "replacement requested",
            ts=T0 + 5,
            detail={"artifact_id": "a2", "version": "app:2"},
        )
        for k, status in enumerate(("submitted", "promoting", "completed")):
            ev.write(
                "replacement",
                status,
                ts=T0 + 6 + 2 * k,
                replacement_id="rep-1",
                detail={
                    "switched_ts": T0 + 10 if status == "completed" else None,
                    "switchedAt": None,
                    "message": None,
                    "inferred": False,
                },
            )
    run.finish(ended_at=T0 + 20)
    return run.path


def test_round_trip_writes_every_file(tmp_path):
    run_dir = write_run(tmp_path, errors_v2=0.1)
    summary = make_report(run_dir)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["schema"] == "proton-probe/summary/1" and on_disk["requests"] == 1000
    assert on_disk["versions"]["app:2"]["error_rate"] == pytest.approx(0.1)
    r = on_disk["rollout"]
    assert (r["outcome"], r["requested_at_s"], r["first_candidate_s"]) == ("completed", 5.0, 10.0)
    assert r["platform"]["switched_at_s"] == 10.0 and len(r["platform"]["statuses"]) == 3
    assert on_disk["verdict"]["result"] == "fail"
    for name in ("traffic_share", "error_rate", "latency_over_time", "latency_cdf", "guardrails"):
        png = run_dir / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    page = (run_dir / "report.html").read_text()
    assert "<meta name='viewport'" in page and "@media print" in page
    sources = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)""", page)
    # the four figures and the sequential decision's guardrails over time
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"<link|<script|@import|url\(", page)
    assert "app:1" in page and "completed" in page and ">fail<" in page
    assert "probe latency, corrected</dt><dd>p50 " in page

    md = (run_dir / "report.md").read_text()
    assert md.startswith("## ❌ proton-probe: **fail**")
    assert "| error_rate | 0.05 | < | 0.01 | FAIL |" in md
    assert "| app:2 | candidate | 500 | 50% | 50 | 10% |" in md
    assert "| outcome | completed |" in md and "figures/traffic_share.png" in md


def test_slos_and_bucket_default_to_the_manifest(tmp_path):
    run_dir = write_run(tmp_path, slos=["p99_ms<1"])
    summary = make_report(run_dir, figures=False)
    # the manifest's SLO, then the comparison check that stays beside any SLO
    assert [c["expr"] for c in summary["verdict"]["checks"]] == [
        "p99_ms<1",
        "candidate not worse than baseline (sequential guardrails)",
    ]
    assert summary["verdict"]["result"] == "fail" and summary["bucket_s"] == 1.0
    summary = make_report(run_dir, slos=["p99_ms<100"], bucket_s=2.0, figures=False)
    assert summary["verdict"]["result"] == "pass" and summary["bucket_s"] == 2.0
    assert not (run_dir / "figures").exists()
    assert "<img" not in (run_dir / "report.html").read_text()


def test_cli_exit_codes(tmp_path, capsys):
    good = write_run(tmp_path, "good", events=False)
    assert main(["report", str(good), "--no-figures"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(good / "report.html") and out[1].startswith("verdict: pass")

    assert (
        main(
            [
                "report",
                str(good),
                "--no-figures",
                "--slo",
                "error_rate<0.01",
                "--slo",
                "candidate.p99_ms<0.5*baseline.p99_ms",
            ]
        )
        == 1
    )
    assert "verdict: fail" in capsys.readouterr().out

    bad = write_run(tmp_path, "bad", errors_v2=0.1, events=False)
    assert main(["report", str(bad), "--no-figures", "--bucket", "0.5"]) == 1
    assert json.loads((bad / "summary.json").read_text())["bucket_s"] == 0.5

    down = write_run(tmp_path, "down", all_connect=True, events=False)
    assert main(["report", str(down), "--no-figures"]) == 3
    assert "connect" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["missing-dir"], ["RUN_DIR", "missing-dir"]),
        (["not-a-run"], ["RUN_DIR", "not-a-run", "manifest.json"]),
        (["good", "--slo", "p99<5"], ["--slo", "p99_ms<500"]),
        (["good", "--bucket", "-1"], ["--bucket"]),
        (["good", "--bucket", "1e-6"], ["--bucket", "buckets", "use at least"]),
    ],
)
def test_cli_usage_errors_exit_2(tmp_path, monkeypatch, capsys, args, names):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path, "good", events=False)
    (tmp_path / "not-a-run").mkdir()
    assert main(["report", *args, "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in names), err
