"""``make_report``: a run directory in, summary.json + figures + report.html/.md out."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from probes.errors import ConfigError
from probes.records import write_json_atomic
from probes.run import FIGURES_DIR, REPORT_MD_FILE, SUMMARY_FILE
from probes.run import REPORT_HTML_FILE as HTML_FILE
from reports.analysis import analyse
from reports.rundir import load_run
from reports.verdict import parse_slo

MD_FILE = REPORT_MD_FILE


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _settings(manifest: dict[str, Any]) -> dict[str, Any]:
    settings = manifest.get("settings")
    return settings if isinstance(settings, dict) else {}


#: More buckets than this would make the per-bucket arrays, not the samples, the memory cost.
MAX_BUCKETS = 1_000_000


def _check_bucket_count(frame: Any, manifest: dict[str, Any], bucket: float, name: str) -> None:
    times = [float(t) for t in (manifest.get("started_ts"), manifest.get("ended_ts")) if t]
    if len(frame):
        times += [float(frame["ts"].min()), float(frame["ts"].max())]
    span = max(times) - min(times) if times else 0.0
    if span / bucket > MAX_BUCKETS:
        raise ConfigError(
            f"{name}: {bucket:g} s gives {span / bucket:,.0f} buckets over this {span:,.0f} s"
            f" run; use at least {span / MAX_BUCKETS:.3g} s"
        )


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
    frame, events, manifest = load_run(path)
    settings = _settings(manifest)
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
    _check_bucket_count(frame, manifest, bucket, place("bucket_s"))
    analysis = analyse(frame, events, manifest, slos=slo_list, bucket_s=bucket, figures=figures)
    del frame
    summary = analysis.summary
    write_json_atomic(path / SUMMARY_FILE, summary)
    images: dict[str, bytes] = {}
    if figures:
        from reports.figures import render_figures

        images = render_figures(analysis, path / FIGURES_DIR)
    _write_text_atomic(path / HTML_FILE, render_html(summary, images))
    _write_text_atomic(path / MD_FILE, render_markdown(summary, figures=sorted(images)))
    return summary
