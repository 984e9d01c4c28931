"""``make_report``: a run directory in, summary.json + figures + report.html/.md out.

A run directory is read as data that may be damaged (a crash, a full disk, a hand edit): a
manifest or events file that is not UTF-8 JSON of the record formats is a RunDirError naming
the file (exit 2), never a traceback; an unreadable sample shard is skipped, and the summary
(``skipped_shards``) and the report say so, so one bad shard cannot block the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probes.errors import ConfigError, RunDirError
from probes.records import (
    MANIFEST_FILE,
    read_events,
    read_manifest,
    read_samples,
    write_json_atomic,
    write_text_atomic,
)
from probes.run import FIGURES_DIR, REPORT_MD_FILE, SUMMARY_FILE
from probes.run import REPORT_HTML_FILE as HTML_FILE
from reports.analysis import Analysis, analyse, analyse_samples
from reports.arrays import Unsupported, read_arrays
from reports.rundir import COLUMNS
from reports.verdict import parse_slo
from reports.workers import workers_block

MD_FILE = REPORT_MD_FILE


def _settings(manifest: dict[str, Any]) -> dict[str, Any]:
    settings = manifest.get("settings")
    return settings if isinstance(settings, dict) else {}


def _check_settings(run_dir: Path, settings: dict[str, Any], kind: Any) -> None:
    """The manifest settings the report reads have the types it reads them as."""

    def bad(key: str, value: Any, expected: str) -> RunDirError:
        return RunDirError(
            f"RUN_DIR {run_dir}: {MANIFEST_FILE} has settings.{key} {value!r}, not {expected}"
        )

    slos = settings.get("slos")
    if slos is not None and not (isinstance(slos, list) and all(isinstance(x, str) for x in slos)):
        raise bad("slos", slos, "a list of SLO strings")
    bucket = settings.get("bucket_s")
    if bucket is not None and not (
        isinstance(bucket, int | float) and not isinstance(bucket, bool) and math.isfinite(bucket)
    ):
        raise bad("bucket_s", bucket, "a number of seconds")
    plan = settings.get("capacity")
    if kind == "capacity" and isinstance(plan, dict):
        from reports.capacity import plan_from_dict

        try:
            plan_from_dict(plan)
        except (KeyError, TypeError, ValueError) as exc:
            raise bad("capacity", plan, f"a step plan ({exc})") from None


#: More buckets than this would make the per-bucket arrays, not the samples, the memory cost.
MAX_BUCKETS = 1_000_000


def _check_bucket_count(ts: np.ndarray, manifest: dict[str, Any], bucket: float, name: str) -> None:
    times = [float(t) for t in (manifest.get("started_ts"), manifest.get("ended_ts")) if t]
    if ts.size:
        times += [float(ts.min()), float(ts.max())]
    span = max(times) - min(times) if times else 0.0
    if span / bucket > MAX_BUCKETS:
        raise ConfigError(
            f"{name}: {bucket:g} s gives {span / bucket:,.0f} buckets over this {span:,.0f} s"
            f" run; use at least {span / MAX_BUCKETS:.3g} s"
        )


def _rate_capacity(manifest: dict[str, Any]) -> bool:
    plan = _settings(manifest).get("capacity")
    return (
        manifest.get("kind") == "capacity" and isinstance(plan, dict) and plan.get("mode") == "rate"
    )


def _analyse_run(
    path: Path,
    events: list[dict[str, Any]],
    manifest: dict[str, Any],
    slos: list[str],
    bucket: float,
    figures: bool,
    place: Callable[[str], str],
) -> Analysis:
    """The analysis of a run's samples: shard by shard into numpy columns
    (``reports.arrays``), or, for what only the frame path reads (rate capacity steps, which
    need the frame; null status codes), through ``read_samples``' pandas frame. Both give
    the same summary (tests/test_report_golden.py)."""
    skipped: list[dict[str, str]] = []
    if not _rate_capacity(manifest):
        try:
            samples = read_arrays(path, skipped=skipped)
        except Unsupported:
            skipped = []
        else:
            _check_bucket_count(samples.ts, manifest, bucket, place("bucket_s"))
            return analyse_samples(
                samples, events, manifest, slos=slos, bucket_s=bucket, figures=figures,
                skipped_shards=skipped,
            )  # fmt: skip
    frame = read_samples(path, columns=COLUMNS, skipped=skipped)
    _check_bucket_count(frame["ts"].to_numpy(), manifest, bucket, place("bucket_s"))
    analysis = analyse(
        frame, events, manifest, slos=slos, bucket_s=bucket, figures=figures,
        skipped_shards=skipped,
    )  # fmt: skip
    if manifest.get("kind") == "capacity":  # rate steps need intended_ts, not in the columns
        from reports.capacity import rate_capacity_from_frame

        rate_capacity_from_frame(analysis.summary, frame, manifest, slos)
    return analysis


def make_report(
    run_dir: Path | str,
    *,
    slos: Sequence[str] | None = None,
    bucket_s: float | None = None,
    figures: bool = True,
    place: Callable[[str], str] = str,
) -> dict[str, Any]:
    """(Re)make summary.json, figures/*.png, report.html and report.md of a run; the summary.

    ``slos`` and ``bucket_s`` default to the manifest's ``settings.slos`` / ``settings.bucket_s``
    (1 s). A bad SLO or bucket raises ConfigError naming ``place("slos")`` /
    ``place("bucket_s")`` (the caller's names: ``--slo``, ``--bucket`` for the CLI); a
    directory that is not a run raises RunDirError naming it.
    """
    from reports.render import render_html, render_markdown

    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"RUN_DIR {run_dir}: no such directory")
    manifest = read_manifest(path)
    events = read_events(path)
    settings = _settings(manifest)
    _check_settings(path, settings, manifest.get("kind"))
    slo_list = list(slos) if slos else [str(s) for s in settings.get("slos") or []]
    for expr in slo_list:
        try:
            parse_slo(expr)
        except ValueError as exc:
            raise ConfigError(f"{place('slos')}: {exc}") from None
    bucket = float(bucket_s if bucket_s is not None else settings.get("bucket_s") or 1.0)
    if not bucket > 0:
        raise ConfigError(
            f"{place('bucket_s')}: must be a positive number of seconds, got {bucket_s!r}"
        )
    analysis = _analyse_run(path, events, manifest, slo_list, bucket, figures, place)
    summary = analysis.summary
    baseline_check(summary, manifest, path)
    workers = workers_block(manifest)
    if workers is not None:
        summary["workers"] = workers
    write_json_atomic(path / SUMMARY_FILE, summary)
    images: dict[str, bytes] = {}
    if figures:
        from reports.figures import render_figures

        images = render_figures(analysis, path / FIGURES_DIR)
    write_text_atomic(path / HTML_FILE, render_html(summary, images))
    write_text_atomic(path / MD_FILE, render_markdown(summary, figures=sorted(images)))
    return summary


def baseline_check(summary: dict[str, Any], manifest: dict[str, Any], run_dir: Path) -> None:
    """A run recorded against a baseline (``settings.baseline``: ``probes capacity --baseline``)
    is gated on it: the check ``baseline_comparison != worse`` joins the verdict, read from the
    run's own ``compare-<baseline>.json`` (``reports.compare``), so the gate is reproducible
    from the run directory alone. No comparison file: the check is undecided."""
    import json

    baseline = _settings(manifest).get("baseline")
    if not isinstance(baseline, dict) or not baseline.get("run_id"):
        return
    judgement = None
    try:
        data = json.loads((run_dir / f"compare-{baseline['run_id']}.json").read_text("utf-8"))
        judgement = data.get("judgement") if isinstance(data, dict) else None
    except (OSError, ValueError):
        judgement = None
    verdict = summary.setdefault("verdict", {"result": "inconclusive", "checks": []})
    passed = None if judgement in (None, "inconclusive") else judgement != "worse"
    verdict.setdefault("checks", []).append(
        {
            "name": "baseline_comparison",
            "value": judgement,
            "op": "!=",
            "threshold": "worse",
            "passed": passed,
            "baseline": baseline["run_id"],
        }
    )
    if passed is False:
        verdict["result"] = "fail"
