"""The service's web UI: server-rendered pages from the same JSON the API returns. Pure.

``render(page, data, ...) -> str`` turns one page's JSON twin into a complete HTML page
(Jinja2 templates in ``templates/``, autoescaped). Nothing here does I/O at render time or
knows about HTTP: the HTTP layer fetches the JSON (from memory or the run index), calls
``render`` and answers. Every page is readable without JavaScript, usable 390 px wide and
printable; ``static/live.js`` (vendored, no CDN) only refreshes the live panels every 2 s
from the JSON twin of the page.

========== ===================== ==================================================================
page       path (``PATHS``)      ``data`` (its JSON twin)
========== ===================== ==================================================================
targets    ``/``                 ``GET /api/v1/targets``: a list of target items
target     ``/targets/{name}``   ``GET /api/v1/targets/{name}`` (with ``recent_runs``); optional
                                 ``schedules`` ``[{name, kind, cron|every, next_fire_at,
                                 last_run_id, last_result, missed}]`` and ``trends`` (the
                                 ``reports.trends.trends`` list)
runs       ``/runs``             ``GET /api/v1/runs``: a list of run items; ``query`` holds the
                                 filters (target, kind, trigger, verdict, since, until, limit,
                                 offset) for the form and the pager
run        ``/runs/{run_id}``    ``GET /api/v1/runs/{run_id}``: the run's summary.json; ``extra``
                                 may add ``row`` (its run item) and ``files`` (names in the dir)
rollouts   ``/rollouts``         ``GET /api/v1/rollouts``: a list of ``rollout_item(run item,
                                 summary)``
trends     ``/trends``           ``GET /api/v1/trends``: ``{"scope": "target"|"schedule",
                                 "name", "series": reports.trends.trends(...)}``
========== ===================== ==================================================================

``base`` prefixes every link (the UI mounted below a path); static files (``STATIC_DIR``)
are expected at ``{base}/static/``; the stylesheet is inlined, so a page stays readable
even when they are not served.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from reports.render import fmt as report_fmt
from reports.render import guardrail_bounds, guardrail_margin

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
PAGES = ("targets", "target", "runs", "run", "rollouts", "trends")
PATHS = {
    "targets": "/",
    "target": "/targets/{name}",
    "runs": "/runs",
    "run": "/runs/{run_id}",
    "rollouts": "/rollouts",
    "trends": "/trends",
}
#: The JSON twin of each page (what ``data`` is), linked from the page itself.
TWINS = {
    "targets": "/api/v1/targets",
    "target": "/api/v1/targets/{name}",
    "runs": "/api/v1/runs",
    "run": "/api/v1/runs/{run_id}",
    "rollouts": "/api/v1/rollouts",
    "trends": "/api/v1/trends",
}
ROLLOUT_KEYS = (
    "outcome",
    "cutover_s",
    "mixed_window_s",
    "errors_during_switch",
    "error_rate_during_switch",
    "flips",
    "first_candidate_s",
    "last_baseline_s",
)
RUN_FILTERS = ("target", "kind", "trigger", "verdict", "since", "until")
KINDS = ("canary", "rollout", "observe", "load", "capacity")
TRIGGERS = ("continuous", "auto", "schedule", "api", "cli")
VERDICTS = ("pass", "fail", "inconclusive")


def color(label: str) -> str:
    """A stable colour per version label (the same hash as ``static/live.js``)."""
    h = 0
    for ch in str(label):
        h = (h * 31 + ord(ch)) % 360
    return f"hsl({h * 137 % 360},62%,45%)"  # 137: labels one apart land far apart


def fmt(value: Any, kind: str = "") -> str:
    """Numbers for people: the report's ``reports.render.fmt`` (``pct`` percentages, counts,
    ``—`` for null), plus ``ms`` milliseconds and ``—`` for a non-finite float."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if kind == "ms" and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.1f} ms" if value < 1000 else f"{value / 1000:,.2f} s"
    return report_fmt(value, kind)


def when(value: Any) -> str:
    """An ISO 8601 time (or epoch seconds) as ``2026-12-02 05:04:03Z``; ``—`` for null."""
    if value is None:
        return "—"
    try:
        if isinstance(value, int | float):
            stamp = datetime.fromtimestamp(float(value), UTC)
        else:
            stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return str(value)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%SZ")


def split(versions: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Segments of a traffic-split bar: ``[{label, share, pct, color}]``, largest first."""
    items = [(str(k), float(v)) for k, v in (versions or {}).items() if isinstance(v, int | float)]
    total = sum(v for _, v in items) or 1.0
    items.sort(key=lambda kv: (-kv[1], kv[0]))
    return [
        {"label": k, "share": v, "pct": round(100 * v / total, 2), "color": color(k)}
        for k, v in items
        if v > 0
    ]


def chart(series: Mapping[str, Any], width: int = 600, height: int = 160) -> dict[str, Any]:
    """Coordinates of a trend chart (an inline SVG, no JS): points, axis range, change points."""
    points = list(series.get("points") or [])
    values = [float(p["value"]) for p in points]
    pad_l, pad_r, pad_t, pad_b = 44, 8, 10, 18
    if not values:
        return {"width": width, "height": height, "points": [], "polyline": "", "cps": []}
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - (abs(lo) * 0.05 or 1.0), hi + (abs(hi) * 0.05 or 1.0)
    span_x = max(1, len(values) - 1)

    def x(i: float) -> float:
        return round(pad_l + (width - pad_l - pad_r) * i / span_x, 1)

    def y(v: float) -> float:
        return round(height - pad_b - (height - pad_t - pad_b) * (v - lo) / (hi - lo), 1)

    xy = [(x(i), y(v)) for i, v in enumerate(values)]
    cps = []
    for cp in series.get("change_points") or []:
        i = int(cp["index"])
        cps.append({"x": round((x(i - 1) + x(i)) / 2, 1) if i else x(i), **cp})
    return {
        "width": width,
        "height": height,
        "points": [{"x": px, "y": py, **p} for (px, py), p in zip(xy, points, strict=True)],
        "polyline": " ".join(f"{px},{py}" for px, py in xy),
        "cps": cps,
        "lo": lo,
        "hi": hi,
        "top": pad_t,
        "bottom": height - pad_b,
        "left": pad_l,
    }


def rollout_item(run: Mapping[str, Any], summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """One row of the Rollouts page: a run item plus its summary's rollout numbers."""
    block = (summary or {}).get("rollout") or {}
    return {**dict(run), "rollout": {k: block.get(k) for k in ROLLOUT_KEYS}}


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        # a key missing from the JSON renders as "—", never as a 500: pages read live data
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def defined(value: Any) -> Any:
        return None if isinstance(value, jinja2.Undefined) else value

    env.filters.update(
        fmt=lambda v, kind="": fmt(defined(v), kind),
        when=lambda v: when(defined(v)),
        color=color,
        urlquote=lambda s: quote(str(s), safe=""),
        guardrail_bounds=lambda g: guardrail_bounds(defined(g)),
        guardrail_margin=guardrail_margin,
    )
    env.globals.update(split=split, chart=chart, KINDS=KINDS, TRIGGERS=TRIGGERS, VERDICTS=VERDICTS)
    return env


@lru_cache(maxsize=1)
def _css() -> str:
    return (STATIC_DIR / "web.css").read_text(encoding="utf-8")


def _pager(query: Mapping[str, Any], count: int) -> dict[str, str | None]:
    """Links to the previous and next page of runs (None where there is none)."""
    limit = _int(query.get("limit"), 50)
    offset = _int(query.get("offset"), 0)
    keep = {k: query[k] for k in RUN_FILTERS if query.get(k)}

    def link(off: int) -> str:
        return "?" + urlencode({**keep, "limit": limit, "offset": off})

    return {
        "prev": link(max(0, offset - limit)) if offset > 0 else None,
        "next": link(offset + limit) if count >= limit else None,
        "from": str(offset + 1 if count else 0),
        "to": str(offset + count),
    }


def _int(value: Any, default: int) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


def render(
    page: str,
    data: Any,
    *,
    base: str = "",
    query: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """The HTML page ``page`` (one of ``PAGES``) of its JSON twin ``data``.

    ValueError for an unknown page. ``query``: the request's query parameters (Runs filters
    and paging); ``extra``: additions a page documents (Run: ``row``, ``files``); ``now``:
    the time shown as "rendered at" (epoch seconds; default: the clock).
    """
    if page not in PAGES:
        raise ValueError(f"unknown page {page!r} (known: {', '.join(PAGES)})")
    import time

    q = dict(query or {})
    context: dict[str, Any] = {
        "page": page,
        "data": data,
        "base": base.rstrip("/"),
        "static": base.rstrip("/") + "/static",
        "css": _css(),
        "query": q,
        "extra": dict(extra or {}),
        "rendered_at": when(time.time() if now is None else now),
    }
    if page == "runs":
        context["pager"] = _pager(q, len(data or []))
    template = _environment().get_template(f"{page}.html")
    return str(template.render(**context))


def twin(page: str, **params: str) -> str:
    """The API path of a page's JSON twin (``twin("target", name="chat")``)."""
    return TWINS[page].format(**{k: quote(v, safe="") for k, v in params.items()})


def path(page: str, **params: str) -> str:
    """The UI path of a page (``path("run", run_id="r1")``)."""
    return PATHS[page].format(**{k: quote(v, safe="") for k, v in params.items()})
