"""Streamed answers in the report: the ``stream`` blocks per run, version and phase (exact, the
same on the fast path and the frame path), the TTFT SLO metrics, and the TTFT figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from probes.records import Sample, read_events, read_manifest
from probes.run import Run
from reports import make_report
from reports.analysis import analyse
from reports.rundir import load_run
from reports.verdict import parse_slo

T0 = 1_750_000_000.0
N = 600  # 30 s at 20/s: app:1 before 15 s, app:2 after


def _row(i: int) -> Sample:
    ts = T0 + i / 20
    v2 = ts >= T0 + 15
    version = "app:2" if v2 else "app:1"
    ttft = (170.0 if v2 else 20.0) + (i % 5)
    tokens, itl = 16, (5.0 if v2 else 15.0)
    error = "stream_aborted" if v2 and i % 10 == 0 else None
    if error:
        tokens = 8
    latency = ttft + itl * (tokens - 1)
    if i % 50 == 7:  # a plain JSON answer among the streams: no stream columns
        return Sample(ts, ts, 3.0, "probe", "w", "POST", "/", 200, None, version, "json", 9, None)
    return Sample(ts, ts, latency, "probe", "w", "POST", "/", 200, error, version, "json", 99,
                  None, "reused", ttft, tokens, itl)  # fmt: skip


def write_stream_run(runs_dir: Path) -> Path:
    run = Run.create(
        runs_dir, "s1", "observe", target={"url": "http://127.0.0.1:9/"},
        settings={"slos": [], "bucket_s": 1.0}, started_at=T0,
    )  # fmt: skip
    with run.shard_writer("probe", background=False) as writer:
        for i in range(N):
            writer.add(_row(i))
    run.finish(ended_at=T0 + N / 20)
    return run.path


def expected(rows: list[Sample]) -> dict[str, object]:
    streamed = [r for r in rows if r.tokens is not None]
    ok = [r for r in streamed if r.error is None]
    return {
        "requests": len(streamed),
        "aborted": sum(r.error == "stream_aborted" for r in streamed),
        "ttft_p50": float(np.percentile([r.ttft_ms for r in streamed], 50)),
        "ttft_p99": float(np.percentile([r.ttft_ms for r in streamed], 99)),
        "itl_p50": float(np.percentile([r.itl_ms for r in streamed], 50)),
        "tokens_max": float(max(r.tokens for r in streamed)),  # type: ignore[type-var]
        "tps_p50": float(np.percentile([r.tokens / (r.latency_ms / 1000) for r in ok], 50)),  # type: ignore[operator]
    }


def test_stream_blocks_per_run_version_and_phase(tmp_path: Path) -> None:
    run_dir = write_stream_run(tmp_path)
    summary = make_report(
        run_dir,
        slos=[
            "candidate.ttft_p50_ms<1.2*baseline.ttft_p50_ms",
            "ttft_p99_ms<800",
            "candidate.tokens_per_s_p50>1",
            "itl_p99_ms<100",
        ],
    )
    rows = [_row(i) for i in range(N)]
    for label, block in summary["versions"].items():
        want = expected([r for r in rows if r.version == label])
        got = block["stream"]
        assert got["requests"] == want["requests"] and got["aborted"] == want["aborted"]
        assert got["ttft_ms"]["p50"] == pytest.approx(want["ttft_p50"], abs=1e-3)
        assert got["ttft_ms"]["p99"] == pytest.approx(want["ttft_p99"], abs=1e-3)
        assert got["itl_ms"]["p50"] == pytest.approx(want["itl_p50"], abs=1e-3)
        assert got["tokens"]["max"] == want["tokens_max"]
        assert got["tokens_per_s"]["p50"] == pytest.approx(want["tps_p50"], abs=1e-3)
    v1, v2 = summary["versions"]["app:1"]["stream"], summary["versions"]["app:2"]["stream"]
    assert (v1["aborted"], v2["aborted"]) == (0, 30)
    whole = summary["stream"]
    assert whole["requests"] == v1["requests"] + v2["requests"] == N - N // 50
    assert summary["error_classes"] == {"stream_aborted": 30}
    # Phases: before the switch only app:1's streams, after only app:2's.
    by_phase = {p["name"]: p["stream"] for p in summary["phases"]}
    assert by_phase["before"]["requests"] == v1["requests"]
    assert by_phase["after"]["requests"] == v2["requests"]
    # The TTFT regression fails its check; total latency alone barely moved.
    checks = {c["expr"]: c for c in summary["verdict"]["checks"]}
    ratio = checks["candidate.ttft_p50_ms<1.2*baseline.ttft_p50_ms"]
    assert ratio["passed"] is False and ratio["value"] == v2["ttft_ms"]["p50"]
    assert checks["ttft_p99_ms<800"]["passed"] is True
    assert checks["candidate.tokens_per_s_p50>1"]["passed"] is True
    assert checks["itl_p99_ms<100"]["value"] == whole["itl_ms"]["p99"] == 15.0
    # Figures only when streams exist.
    assert (run_dir / "figures" / "ttft_over_time.png").stat().st_size > 1000
    assert (run_dir / "figures" / "ttft_cdf.png").stat().st_size > 1000
    # The frame path gives the same numbers as the fast path.
    frame, _events, _ = load_run(run_dir)
    slow = analyse(frame, read_events(run_dir), read_manifest(run_dir), slos=None, bucket_s=1.0)
    assert slow.summary["versions"]["app:2"]["stream"] == v2
    assert slow.summary["stream"] == whole
    md = (run_dir / "report.md").read_text()
    assert "### Streamed answers" in md
    section = md.split("### Streamed answers", 1)[1]
    line = next(x for x in section.splitlines() if x.startswith("| app:2 "))
    assert f"| {v2['requests']} | 30 | {v2['ttft_ms']['p50']:g} |" in line
    assert "<h2>Streamed answers</h2>" in (run_dir / "report.html").read_text()
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["versions"]["app:1"]["stream"] == v1


def test_a_run_without_streams_has_null_blocks_and_undecided_checks(tmp_path: Path) -> None:
    from tests.test_reports_report import write_run

    run_dir = write_run(tmp_path)
    summary = make_report(run_dir, slos=["ttft_p99_ms<800", "error_rate<0.5"])
    assert summary["stream"] is None
    assert {v["stream"] for v in summary["versions"].values()} == {None}
    assert {p["stream"] for p in summary["phases"]} == {None}
    check = summary["verdict"]["checks"][0]
    assert (check["value"], check["passed"]) == (None, None)
    assert not (run_dir / "figures" / "ttft_cdf.png").exists()
    assert "Streamed answers" not in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "expr", ["ttft_p50_ms<100", "candidate.ttft_p99_ms<1.2*baseline.ttft_p99_ms",
             "itl_p50_ms<20", "app:2.itl_p99_ms<30", "tokens_per_s_p50>10"],
)  # fmt: skip
def test_stream_slo_metrics_parse(expr: str) -> None:
    assert parse_slo(expr).left.metric in expr


def test_the_terminal_line_names_each_versions_ttft_and_aborts() -> None:
    from probes.cli.output import stream_line

    block = {"requests": 77, "aborted": 3, "ttft_ms": {"p50": 24.237, "p99": 58.1}}
    summary = {"versions": {"a:1": {"stream": block}, "a:2": {"stream": None}}}
    assert stream_line(summary) == "streams: a:1 TTFT p50 24.24 / p99 58.1 ms, aborted 3/77"
    assert stream_line({"versions": {"a:1": {"stream": None}}}) is None
