"""Figures of a report, drawn from aggregated buckets (never from raw rows): matplotlib Agg.

- ``traffic_share.png`` — share of answers per version over time (stacked areas), the phases
  shaded, platform statuses and ``switchedAt`` as vertical lines;
- ``connection_share.png`` — runs with ``new`` connections only: the traffic share over time
  per connection mode, one panel each (``reused`` above ``new``), ``switchedAt`` marked;
- ``error_rate.png`` — error rate per version over time;
- ``latency_over_time.png`` — p50 (solid) and p99 (dashed) per version over time, from a
  log-spaced histogram (about 3% resolution; the summary's numbers are exact);
- ``latency_cdf.png`` — latency distribution per version (CDF, log x);
- ``ttft_over_time.png`` — runs with streamed answers only: time to first token per version
  over time, p50 (solid) and p99 (dashed) per time bin, from the streamed rows' exact TTFTs;
- ``ttft_cdf.png`` — runs with streamed answers only: the TTFT distribution per version (CDF);
- ``capacity.png`` — capacity runs only: rps (with the fitted USL curve) and p99 (with the
  p99 checks) per step against users, the knee and the limit marked.

Drawn on ``matplotlib.figure.Figure`` + the Agg canvas, never pyplot: no global figure
registry (the service makes reports in threads) and nothing to close. The time-series
figures have fixed margins (``_place``: room for the widest y tick label, measured) rather
than constrained layout, which measures every artist twice before drawing and cost ~40% of
a figure; capacity (two panels, legends inside, rare) keeps constrained layout. PNGs are
RGB: the figures are opaque, an alpha channel made them 10% larger and slower to encode.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
from PIL import Image

from reports.analysis import Analysis

MAX_POINTS = 300
ROLE_COLORS = {"baseline": "#1f77b4", "candidate": "#ff7f0e", "unknown": "#9e9e9e"}
OTHER_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728")
PHASE_COLORS = {"before": "#1f77b4", "mixed": "#d62728", "after": "#ff7f0e"}
FIGURE_NAMES = (
    "capacity",
    "traffic_share",
    "connection_share",
    "error_rate",
    "latency_over_time",
    "latency_cdf",
    "ttft_over_time",
    "ttft_cdf",
    "guardrails",
)
#: Status labels closer than this (a fraction of the time axis) are spread apart.
LABEL_GAP = 0.022
#: Fixed margins of the time-series figures, inches (``_place``): above the title, beside
#: the y tick labels and the axis label, right of the axes (half the last x tick label),
#: below the axes for the x tick labels and the x label, and per row of the legend.
TOP_IN, LEFT_PAD_IN, RIGHT_IN, XAXIS_IN, LEGEND_ROW_IN = 0.3, 0.42, 0.25, 0.5, 0.19


def version_colors(summary: dict[str, Any]) -> dict[str, str]:
    """A stable colour per version: blue baseline, orange candidate, grey unknown."""
    colors: dict[str, str] = {}
    others = iter(OTHER_COLORS * 4)
    for label, block in (summary.get("versions") or {}).items():
        colors[label] = ROLE_COLORS.get(block.get("role"), "") or next(others)
    return colors


def _coarsen(counts: np.ndarray, bucket_s: float) -> tuple[np.ndarray, float]:
    """Sum adjacent buckets so that at most MAX_POINTS remain; (counts, new bucket width)."""
    factor = max(1, int(np.ceil(counts.shape[0] / MAX_POINTS)))
    if factor == 1:
        return counts, bucket_s
    pad = (-counts.shape[0]) % factor
    padded = np.concatenate([counts, np.zeros((pad, *counts.shape[1:]), counts.dtype)])
    return padded.reshape(-1, factor, *counts.shape[1:]).sum(axis=1), bucket_s * factor


def _figure(width: float, height: float, layout: Literal["constrained"] | None = None) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _new(title: str, ylabel: str) -> tuple[Figure, Axes]:
    fig = _figure(9, 4.0)
    ax = fig.subplots()
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _overlay_events(ax: Axes, summary: dict[str, Any], *, strip: bool = False) -> None:
    """Phase shading (a strip above the data when ``strip``) and platform lines."""
    phases = summary.get("phases") or []
    for phase in phases if len(phases) > 1 else []:
        start, end = phase["start_s"], phase["end_s"]
        color = PHASE_COLORS.get(phase["name"], "grey")
        if end <= start:
            ax.axvline(start, color=color, lw=1.0)
            continue
        if strip:
            ax.axvspan(start, end, ymin=0.93, ymax=1.0, alpha=0.35, lw=0, color=color)
            ax.text((start + end) / 2, 104, phase["name"], ha="center", va="center", fontsize=7)
        else:
            ax.axvspan(start, end, alpha=0.07, lw=0, color=color)
    rollout = summary.get("rollout") or {}
    platform = rollout.get("platform") or {}
    _status_labels(ax, platform.get("statuses") or [])
    if platform.get("switched_at_s") is not None:
        ax.axvline(platform["switched_at_s"], color="#d62728", lw=1.2, ls="--", label="switchedAt")
    if rollout.get("requested_at_s") is not None:
        ax.axvline(
            rollout["requested_at_s"],
            color="#2ca02c",
            lw=1.0,
            ls="-.",
            label="replacement requested",
        )


def spread_labels(xs: list[float], min_gap: float) -> list[float]:
    """Where to write the labels of lines at ``xs`` (sorted) so that none is closer than
    ``min_gap`` to the one before it: each as close to its own line as that allows."""
    out: list[float] = []
    for x in xs:
        out.append(x if not out else max(x, out[-1] + min_gap))
    return out


def _status_labels(ax: Axes, statuses: list[dict[str, Any]]) -> None:
    """A dotted line per platform status and its label; labels of statuses that changed
    within moments of each other are moved apart, each tied to its line by a leader."""
    ordered = sorted(statuses, key=lambda st: st["at_s"])
    lo, hi = ax.get_xlim()
    ymax = ax.get_ylim()[1]
    xs = [float(st["at_s"]) for st in ordered]
    for st, x, pos in zip(ordered, xs, spread_labels(xs, LABEL_GAP * (hi - lo)), strict=True):
        ax.axvline(x, color="#555555", lw=0.8, ls=":")
        leader = {"arrowstyle": "-", "lw": 0.6, "color": "#777777"} if pos > x else None
        ax.annotate(
            f" {st['status']}",
            xy=(x, ymax),
            xytext=(pos, ymax),
            rotation=90,
            va="top",
            ha="left",
            fontsize=7,
            color="#333333",
            arrowprops=leader,
            annotation_clip=False,
        )


def _plain_log_ticks(axis: Any) -> None:
    """Log axis labelled 1, 2, 5, 10, 20 … rather than 2×10⁰ (call after plotting)."""
    lo, hi = sorted(axis.get_view_interval())
    if not (lo > 0 and hi > lo):
        return
    ticks = [
        m * 10.0**e
        for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for m in (1, 2, 5)
        if lo <= m * 10.0**e <= hi
    ]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _legend(fig: Figure, ax: Axes) -> int:
    """Below the plot, so it never hides data (phones included); its number of rows."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return 0
    ncol = min(len(labels), 4)
    fig.legend(
        handles,
        labels,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=ncol,
        fontsize=8,
        frameon=False,
    )
    return math.ceil(len(labels) / ncol)


def _place(fig: Figure, axes: Sequence[Axes], legend_rows: int) -> None:
    """Fixed margins around ``axes`` (stacked, sharing x): what constrained layout would
    leave, without its two passes over every artist. The left margin fits the widest y
    tick label, measured by the renderer the figure is drawn with."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    widths = [0.0]
    for ax in axes:
        lo, hi = sorted(ax.get_ylim())
        slack = 1e-9 * (hi - lo)
        labels = ax.yaxis.get_majorticklabels()  # formats them, as drawing will
        for loc, text in zip(ax.yaxis.get_majorticklocs(), labels, strict=False):
            if lo - slack <= loc <= hi + slack:  # the ticks that will be drawn
                widths.append(text.get_window_extent(renderer).width)
    widest = max(widths)
    w, h = fig.get_size_inches()
    fig.subplots_adjust(
        left=(LEFT_PAD_IN + widest / fig.dpi) / w,
        right=1 - RIGHT_IN / w,
        top=1 - TOP_IN / h,
        bottom=(XAXIS_IN + LEGEND_ROW_IN * legend_rows + 0.06) / h,
        hspace=0.12,
    )


def _time_axis(ax: Axes, summary: dict[str, Any]) -> None:
    ax.set_xlabel("time since run start (s)")
    ax.set_xlim(0, max(summary.get("duration_s") or 0, 1e-3))


def traffic_share(analysis: Analysis, colors: dict[str, str]) -> Figure:
    """Stacked share of answers per version over time."""
    summary = analysis.summary
    counts, width = _coarsen(analysis.buckets.requests, analysis.buckets.bucket_s)
    total = counts.sum(axis=1)
    # Bucket starts plus the end, drawn as steps: each bucket's share fills its own interval.
    x = np.arange(counts.shape[0] + 1) * width
    counts = np.concatenate([counts, counts[-1:]])
    total = np.concatenate([total, total[-1:]])
    fig, ax = _new(f"Traffic share by version ({width:g} s buckets)", "share of answers (%)")
    labels = [lab for lab in summary["versions"] if lab in analysis.labels]
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = [
            np.where(total > 0, counts[:, analysis.labels.index(lab)] / total, np.nan)
            for lab in labels
        ]
    if labels:
        ax.stackplot(
            x,
            [100 * np.nan_to_num(s) for s in shares],
            labels=labels,
            colors=[colors[lab] for lab in labels],
            alpha=0.85,
            step="post",
        )
    ax.set_ylim(0, 108)
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    _time_axis(ax, summary)
    _overlay_events(ax, summary, strip=True)
    _place(fig, [ax], _legend(fig, ax))
    return fig


def connection_share(analysis: Analysis, colors: dict[str, str]) -> Figure:
    """Stacked share of answers per version over time, one panel per connection mode."""
    summary = analysis.summary
    modes = [m for m in ("reused", "new") if m in analysis.mode_labels]
    data = analysis.mode_requests
    fig = _figure(9, 2.2 + 1.8 * len(modes))
    axes = fig.subplots(len(modes), 1, sharex=True, squeeze=False)
    labels = [lab for lab in summary["versions"] if lab in analysis.labels]
    width = analysis.buckets.bucket_s
    for ax, mode in zip(axes[:, 0], modes, strict=True):
        counts = data[analysis.mode_labels.index(mode)] if data is not None else np.zeros((1, 1))
        counts, width = _coarsen(counts, analysis.buckets.bucket_s)
        total = counts.sum(axis=1)
        x = np.arange(counts.shape[0] + 1) * width
        counts = np.concatenate([counts, counts[-1:]])
        total = np.concatenate([total, total[-1:]])
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = [
                100 * np.nan_to_num(counts[:, analysis.labels.index(lab)] / total) for lab in labels
            ]
        if labels:
            ax.stackplot(x, shares, labels=labels, colors=[colors[lab] for lab in labels],
                         alpha=0.85, step="post")  # fmt: skip
        ax.set_ylim(0, 108)
        ax.set_yticks([0, 50, 100])
        ax.set_ylabel(f"{mode} (%)")
        ax.grid(True, alpha=0.3)
        _time_axis(ax, summary)
        _overlay_events(ax, summary)
    axes[0, 0].set_title(
        f"Traffic share by version, per connection mode ({width:g} s buckets)",
        fontsize=11, loc="left",
    )  # fmt: skip
    for ax in axes[:-1, 0]:
        ax.set_xlabel("")
    _place(fig, list(axes[:, 0]), _legend(fig, axes[0, 0]))
    return fig


def error_rate(analysis: Analysis, colors: dict[str, str]) -> Figure:
    """Error rate per version over time."""
    summary = analysis.summary
    req, width = _coarsen(analysis.buckets.requests, analysis.buckets.bucket_s)
    err, _ = _coarsen(analysis.buckets.errors, analysis.buckets.bucket_s)
    x = (np.arange(req.shape[0]) + 0.5) * width
    fig, ax = _new(f"Error rate by version ({width:g} s buckets)", "errors (% of requests)")
    for label in summary["versions"]:
        i = analysis.labels.index(label)
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(req[:, i] > 0, 100 * err[:, i] / req[:, i], np.nan)
        ax.plot(x, y, color=colors[label], lw=1.4, marker=".", ms=3, label=label)
    ax.set_ylim(bottom=0, top=max(1.0, float(np.nanmax(ax.get_ylim()[1]))))
    _time_axis(ax, summary)
    _overlay_events(ax, summary)
    _place(fig, [ax], _legend(fig, ax))
    return fig


def _hist_quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> np.ndarray:
    """Quantile per row of a histogram (geometric bin middle); NaN for empty rows."""
    cum = np.cumsum(counts, axis=-1)
    total = cum[..., -1:]
    idx = np.argmax(cum >= np.maximum(q * total, 1), axis=-1)
    mids = np.sqrt(edges[:-1] * edges[1:])
    return np.where(total[..., 0] > 0, mids[idx], np.nan)


def latency_over_time(analysis: Analysis, colors: dict[str, str]) -> Figure:
    """p50 and p99 per version over time (successful responses)."""
    summary = analysis.summary
    fig, ax = _new("Latency by version: p50 (solid), p99 (dashed)", "latency (ms)")
    hist = analysis.hist
    if hist is not None:
        x = (np.arange(hist.counts.shape[0]) + 0.5) * hist.bin_s
        for label in summary["versions"]:
            c = hist.counts[:, analysis.labels.index(label), :]
            for q, ls in ((0.5, "-"), (0.99, "--")):
                ax.plot(
                    x,
                    _hist_quantile(c, hist.edges_ms, q),
                    ls=ls,
                    lw=1.3,
                    color=colors[label],
                    label=f"{label} p{q * 100:g}",
                )
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    _time_axis(ax, summary)
    _overlay_events(ax, summary)
    _place(fig, [ax], _legend(fig, ax))
    return fig


def latency_cdf(analysis: Analysis, colors: dict[str, str]) -> Figure:
    """Cumulative latency distribution per version, log x."""
    summary = analysis.summary
    fig, ax = _new(
        "Latency distribution by version (successful responses)", "fraction of responses ≤ x"
    )
    hist = analysis.hist
    if hist is not None:
        for label in summary["versions"]:
            c = hist.counts[:, analysis.labels.index(label), :].sum(axis=0)
            if c.sum() == 0:
                continue
            nz = np.flatnonzero(c)
            lo, hi = nz[0], nz[-1] + 1
            cdf = np.cumsum(c[lo:hi]) / c.sum()
            ax.step(
                hist.edges_ms[lo + 1 : hi + 1],
                cdf,
                where="post",
                color=colors[label],
                lw=1.5,
                label=f"{label} (n={int(c.sum()):,})",
            )
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylim(0, 1.02)
    _place(fig, [ax], _legend(fig, ax))
    return fig


def _ttft_by_version(analysis: Analysis) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, send times, TTFTs) of each version's streamed answers that got a first token."""
    if analysis.ttft_points is None:
        return []
    rel, codes, ttft = analysis.ttft_points
    out = []
    for label in analysis.summary["versions"]:
        rows = (codes == analysis.labels.index(label)) & np.isfinite(ttft)
        if rows.any():
            out.append((label, rel[rows], ttft[rows]))
    return out


def ttft_over_time(analysis: Analysis, colors: dict[str, str]) -> Figure:
    """Time to first token per version over time: p50 (solid), p99 (dashed) per time bin."""
    import pandas as pd

    summary = analysis.summary
    fig, ax = _new("Time to first token by version: p50 (solid), p99 (dashed)", "TTFT (ms)")
    end = max(float(summary.get("duration_s") or 0.0), 1e-9)
    bin_s = max(analysis.buckets.bucket_s, end / MAX_POINTS)
    for label, rel, ttft in _ttft_by_version(analysis):
        groups = pd.Series(ttft).groupby(np.floor(rel / bin_s).astype(np.int64))
        for q, ls in ((0.5, "-"), (0.99, "--")):
            qs = groups.quantile(q)
            x = (qs.index.to_numpy() + 0.5) * bin_s
            ax.plot(x, qs.to_numpy(), ls=ls, lw=1.3, marker=".", ms=2, color=colors[label],
                    label=f"{label} p{q * 100:g}")  # fmt: skip
    ax.set_ylim(bottom=0)
    _time_axis(ax, summary)
    _overlay_events(ax, summary)
    _place(fig, [ax], _legend(fig, ax))
    return fig


def ttft_cdf(analysis: Analysis, colors: dict[str, str]) -> Figure:
    """Cumulative distribution of the time to first token per version."""
    fig, ax = _new("Time to first token by version (streamed answers)", "fraction of answers ≤ x")
    for label, _rel, ttft in _ttft_by_version(analysis):
        values = np.sort(ttft)
        # At most ~2,000 steps: the CDF's shape, not every answer.
        picks = np.unique(np.linspace(0, values.size - 1, min(values.size, 2000)).astype(int))
        ax.step(values[picks], (picks + 1) / values.size, where="post", color=colors[label],
                lw=1.5, label=f"{label} (n={values.size:,})")  # fmt: skip
    ax.set_xlabel("time to first token (ms)")
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1.02)
    _place(fig, [ax], _legend(fig, ax))
    return fig


def _slo_lines(slos: list[str]) -> list[tuple[str, float]]:
    """(expression, threshold) of the checks on a step's p99 (``p99_ms<500``)."""
    from reports.verdict import checks_of, parse_slo

    found = []
    for expr in checks_of(slos):
        slo = parse_slo(expr)
        if slo.left.metric == "p99_ms" and slo.number is not None and slo.ref is None:
            found.append((expr, float(slo.number)))
    return found


def capacity(analysis: Analysis, colors: dict[str, str]) -> Figure:
    """Throughput (top) and p99 (bottom) of each capacity step against its users: the fitted
    USL curve over the throughput, the p99 checks as horizontal lines, the knee and the limit
    (the first step that broke a check) as vertical lines; failing steps are drawn hollow.
    Rate mode: against the offered rate, the achieved rate and the coordinated-omission-
    corrected p99, with the line where achieved equals offered."""
    from reports.capacity import usl

    block = analysis.summary["capacity"]
    steps = block["steps"]
    rated = block.get("mode") == "rate"
    load, lat = ("offered_rps", "co_latency_ms") if rated else ("users", "latency_ms")
    users = np.array([s[load] for s in steps], dtype=np.float64)
    rps = np.array([s["rps"] for s in steps], dtype=np.float64)
    p99 = np.array([np.nan if (s[lat] or {}).get("p99") is None else s[lat]["p99"]
                    for s in steps])  # fmt: skip
    passed = np.array([bool(s["passed"]) for s in steps])
    fig = _figure(9, 6.5, layout="constrained")
    top, low = fig.subplots(2, 1, sharex=True)
    top.set_title("Capacity: throughput and p99 per step", fontsize=11, loc="left")
    for ax, y, color, name in ((top, rps, "#1f77b4", "req/s"), (low, p99, "#d62728", "p99 ms")):
        ax.grid(True, alpha=0.3)
        ax.plot(users, y, color=color, lw=1.0, alpha=0.6, label=f"measured {name}")
        if passed.any():
            ax.scatter(users[passed], y[passed], color=color, s=30, zorder=3, label="within SLO")
        if not passed.all():
            ax.scatter(users[~passed], y[~passed], facecolors="white", edgecolors=color, s=30,
                       zorder=3, label="broke a check")  # fmt: skip
    model = block.get("model")
    if model and users.size:
        grid = np.linspace(max(1.0, users.min() * 0.5), users.max() * 1.05, 200)
        fit = usl(grid, model["lambda"], model["sigma"], model["kappa"])
        r2 = "n/a" if model["r2"] is None else f"{model['r2']:.3f}"
        top.plot(grid, fit, color="#2ca02c", lw=1.6, ls="--", label=f"USL fit (R² {r2})")
    highest = float(np.nanmax(p99)) if np.isfinite(p99).any() else 0.0
    for expr, threshold in _slo_lines(block.get("slos") or []):
        off = highest > 0 and threshold > 3 * highest  # drawn, the data would be a flat line
        low.axhline(threshold, color="#555555", lw=1.2, ls=":",
                    label=f"SLO {expr}" + (" (above the axis)" if off else ""))  # fmt: skip
        if off:
            low.set_ylim(top=highest * 1.25)
    knee_x = block.get("knee_offered_rps" if rated else "knee_users")
    if knee_x is not None:
        at = f"{knee_x:g} req/s offered" if rated else f"{knee_x} users"
        label = f"knee: {block['knee_rps']:.4g} req/s at {at}"
        for ax in (top, low):
            ax.axvline(knee_x, color="#ff7f0e", lw=1.4,
                       label=f"{label} ({block.get('knee_case')})")  # fmt: skip
    if rated and users.size:
        top.plot(users, users, color="#7f7f7f", lw=1.0, ls="--", label="achieved = offered")
    failing = [s[load] for s in steps if not s["passed"]]
    if failing:
        for ax in (top, low):
            ax.axvline(failing[0], color="#d62728", lw=1.4, ls="-.",
                       label=f"limit: {block.get('limit_reason')}")  # fmt: skip
    if block.get("max_rps_within_slo") is not None:
        top.axhline(block["max_rps_within_slo"], color="#9467bd", lw=1.0, ls=":",
                    label=f"max within SLO: {block['max_rps_within_slo']:.4g} req/s")  # fmt: skip
    top.set_ylabel("requests per second")
    low.set_ylabel("p99 latency, CO-corrected (ms)" if rated else "p99 latency (ms)")
    low.set_xlabel("offered rate (requests per second)" if rated else "users")
    top.set_ylim(bottom=0, top=max(top.get_ylim()[1], float(np.nanmax(rps, initial=0)) * 1.15))
    low.set_ylim(bottom=0)
    top.legend(loc="lower right", fontsize=8, ncols=2)
    low.legend(loc="upper left", fontsize=8)
    return fig


def guardrails(analysis: Analysis, colors: dict[str, str]) -> Figure:
    """The sequential decision's guardrails over time: each one's confidence-sequence bounds
    (shaded), estimate and margin, and the decision's time."""
    summary = analysis.summary
    q = summary["comparison"]["sequential"]
    history = analysis.sequential_history
    metrics = [g["metric"] for g in q["guardrails"]]
    fig = _figure(9.0, 1.9 * len(metrics) + 0.8, layout="constrained")
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(f"Sequential decision: {q['decision']} (α = {q['alpha']:g})", fontsize=11)
    x = np.array([t for t, _ in history])
    for ax, metric in zip(axes, metrics, strict=True):
        rows = [next(r for r in rows if r["metric"] == metric) for _, rows in history]
        lower = np.array([r["lower"] for r in rows], dtype=float)
        upper = np.array([r["upper"] for r in rows], dtype=float)
        estimate = np.array([r["estimate"] for r in rows], dtype=float)
        margin = float(rows[0]["margin"]) if rows else float("nan")
        finite = np.concatenate([lower, estimate, upper[np.isfinite(upper)], [margin]])
        finite = finite[np.isfinite(finite)]
        top = float(finite.max()) * 1.1 if finite.size else 1.0
        bottom = min(0.0, float(finite.min())) if finite.size else 0.0
        ax.fill_between(x, lower, np.minimum(upper, top), step="post", color="#1f77b4",
                        alpha=0.25, label="bounds")  # fmt: skip
        ax.step(x, estimate, where="post", color="#1f77b4", lw=1.2, label="estimate")
        ax.axhline(margin, color="#d62728", ls="--", lw=1.1, label="margin")
        floor = rows[0].get("margin_ms") if rows else None
        if floor:  # a latency guardrail is also within while the difference is under its floor
            under = np.array([(r.get("delta_upper_ms") or math.inf) <= floor for r in rows])
            ax.fill_between(x, bottom, top, where=under, step="post", color="#2ca02c",
                            alpha=0.12, label=f"within the +{floor:g} ms floor")  # fmt: skip
        if q.get("decided_at_s") is not None:
            ax.axvline(q["decided_at_s"], color="#444", ls=":", lw=1.1, label="decided")
        ax.set_ylim(bottom, top)
        ax.set_ylabel(metric.replace("_", " "), fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("seconds from the run's start")
    shown: dict[str, Any] = {}  # one legend over every panel's kinds (the floor: latency ones)
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            shown.setdefault(label, handle)
    axes[0].legend(list(shown.values()), list(shown), loc="upper right", fontsize=7, ncol=5)
    return fig


def _png(fig: Figure) -> bytes:
    """The figure drawn once by Agg, as an RGB PNG (what ``savefig`` writes, less the
    always-opaque alpha channel)."""
    canvas = fig.canvas
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buf, format="png", compress_level=6)
    return buf.getvalue()


def render_figures(analysis: Analysis, directory: Path) -> dict[str, bytes]:
    """Draw every figure, write ``directory/<name>.png`` and return ``{name: png bytes}``."""
    directory.mkdir(parents=True, exist_ok=True)
    colors = version_colors(analysis.summary)
    images: dict[str, bytes] = {}
    steps = (analysis.summary.get("capacity") or {}).get("steps")
    modes = (analysis.summary.get("connections") or {}).get("modes") or []
    streams = analysis.summary.get("stream") is not None and bool(_ttft_by_version(analysis))
    for name, draw in (
        *((("capacity", capacity),) if steps else ()),
        ("traffic_share", traffic_share),
        *((("connection_share", connection_share),) if "new" in modes else ()),
        ("error_rate", error_rate),
        ("latency_over_time", latency_over_time),
        ("latency_cdf", latency_cdf),
        *((("ttft_over_time", ttft_over_time), ("ttft_cdf", ttft_cdf)) if streams else ()),
        *((("guardrails", guardrails),) if analysis.sequential_history else ()),
    ):
        images[name] = _png(draw(analysis, colors))
        tmp = directory / f".{name}.png.tmp"
        tmp.write_bytes(images[name])
        tmp.replace(directory / f"{name}.png")
    return images
