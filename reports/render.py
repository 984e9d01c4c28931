"""report.html (self-contained, responsive, printable) and report.md (CI comments) of a summary."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Every figure ``reports.figures`` draws (its FIGURE_NAMES), in the order the report shows
#: them. Not imported from there: that would load matplotlib to render a page without
#: figures (tests/test_figures.py checks the two agree).
FIGURE_TITLES = {
    "capacity": "Capacity: throughput and p99 per step",
    "traffic_share": "Traffic share by version",
    "connection_share": "Traffic share by version, per connection mode",
    "error_rate": "Error rate by version",
    "latency_over_time": "Latency over time",
    "latency_cdf": "Latency distribution",
    "ttft_over_time": "Time to first token over time",
    "ttft_cdf": "Time to first token distribution",
    "guardrails": "The sequential decision's guardrails: bounds over time",
}
ROLLOUT_FIELDS = (
    ("from_version", "from"),
    ("to_version", "to"),
    ("outcome", "outcome"),
    # times (s from the run's start): from samples, except half_switch_s (from buckets)
    ("requested_at_s", "requested at (s)"),
    ("first_candidate_s", "first candidate answer (s, a sample's send time)"),
    ("half_switch_s", "half switched (s, interpolated between 1 s bucket midpoints)"),
    ("last_baseline_s", "last baseline answer (s, a sample's send time)"),
    # durations
    ("cutover_s", "cutover: last baseline − first candidate answer (s)"),
    ("mixed_window_s", "mixed window: 1 s buckets in which both answered (s)"),
    ("flips", "flips back to baseline"),
    ("errors_during_switch", "errors during switch"),
    ("error_rate_during_switch", "error rate during switch"),
    ("longest_gap_s", "longest gap between successes (s)"),
)


def fmt(value: Any, kind: str = "") -> str:
    """A number for humans: percentages, ms, counts; ``—`` for null."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "pct" and isinstance(value, int | float):
        return f"{100 * value:.3g}%" if value else "0%"
    if kind == "p" and isinstance(value, int | float):
        return f"{value:.2g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def _target(summary: Mapping[str, Any]) -> str:
    target = summary.get("target")
    if isinstance(target, Mapping):
        for key in ("url", "invoke_url", "api", "workload_id"):
            if target.get(key):
                return str(target[key])
        return json.dumps(target, default=str)
    return "—" if target is None else str(target)


def _headline(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    lat = s.get("latency_ms") or {}
    return [
        ("requests", fmt(s.get("requests"))),
        ("errors", f"{fmt(s.get('errors'))} ({fmt(s.get('error_rate'), 'pct')})"),
        ("throughput", f"{fmt(s.get('throughput_rps'))} req/s"),
        ("p50 / p99", f"{fmt(lat.get('p50'))} / {fmt(lat.get('p99'))} ms"),
        ("duration", f"{fmt(s.get('duration_s'))} s"),
    ]


def _versions_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = [
        "version",
        "role",
        "requests",
        "share",
        "errors",
        "error rate",
        "p50 ms",
        "p99 ms",
        "max ms",
        "first seen s",
        "last seen s",
    ]
    rows = []
    for label, v in (s.get("versions") or {}).items():
        lat = v.get("latency_ms") or {}
        rows.append(
            [
                label,
                v.get("role"),
                fmt(v.get("requests")),
                fmt(v.get("share"), "pct"),
                fmt(v.get("errors")),
                fmt(v.get("error_rate"), "pct"),
                fmt(lat.get("p50")),
                fmt(lat.get("p99")),
                fmt(lat.get("max")),
                fmt(v.get("first_seen_s")),
                fmt(v.get("last_seen_s")),
            ]
        )
    return head, rows


def _phase_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["phase", "start s", "end s", "requests", "error rate", "p50 ms", "p99 ms", "share"]
    rows = []
    for p in s.get("phases") or []:
        lat = p.get("latency_ms") or {}
        share = ", ".join(f"{k} {fmt(v, 'pct')}" for k, v in (p.get("share") or {}).items())
        rows.append(
            [
                p["name"],
                fmt(p.get("start_s")),
                fmt(p.get("end_s")),
                fmt(p.get("requests")),
                fmt(p.get("error_rate"), "pct"),
                fmt(lat.get("p50")),
                fmt(lat.get("p99")),
                share or "—",
            ]
        )
    return head, rows


def _stream_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The streamed answers per version, then per phase (rows without streams left out)."""
    head = ["scope", "streams", "aborted", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms",
            "ITL p99 ms", "tokens p50", "tokens/s p50"]  # fmt: skip
    scopes = [(label, v.get("stream")) for label, v in (s.get("versions") or {}).items()]
    scopes += [(f"phase {p['name']}", p.get("stream")) for p in s.get("phases") or []]
    rows = []
    for scope, block in scopes:
        if not block:
            continue
        ttft, itl = block.get("ttft_ms") or {}, block.get("itl_ms") or {}
        rows.append(
            [
                scope, fmt(block.get("requests")), fmt(block.get("aborted")),
                fmt(ttft.get("p50")), fmt(ttft.get("p99")), fmt(itl.get("p50")),
                fmt(itl.get("p99")), fmt((block.get("tokens") or {}).get("p50")),
                fmt((block.get("tokens_per_s") or {}).get("p50")),
            ]
        )  # fmt: skip
    return head, rows


def _check_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["check", "value", "op", "threshold", "result"]
    rows = []
    for c in (s.get("verdict") or {}).get("checks") or []:
        result = {True: "pass", False: "FAIL", None: "n/a"}[c.get("passed")]
        threshold = fmt(c.get("threshold"))
        if c.get("threshold_expr") and c.get("threshold_expr") != threshold:
            threshold = f"{threshold} ({c['threshold_expr']})"
        rows.append([c.get("name"), fmt(c.get("value")), c.get("op"), threshold, result])
    return head, rows


def _rate_rows(steps: list[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = ["offered req/s", "achieved req/s", "requests", "error rate", "p99 lateness ms",
            "CO p50 ms", "CO p99 ms", "p99 ms", "within SLO"]  # fmt: skip
    rows = []
    for step in steps:
        co, late = step.get("co_latency_ms") or {}, step.get("lateness_ms") or {}
        rows.append(
            [
                fmt(step.get("offered_rps")),
                fmt(step.get("achieved_rps")),
                fmt(step.get("requests")),
                fmt(step.get("error_rate"), "pct"),
                fmt(late.get("p99")),
                fmt(co.get("p50")),
                fmt(co.get("p99")),
                fmt((step.get("latency_ms") or {}).get("p99")),
                "yes" if step.get("passed") else "NO",
            ]
        )
    return head, rows


def _capacity_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    block = s.get("capacity") or {}
    if block.get("mode") == "rate":
        return _rate_rows(block.get("steps") or [])
    head = ["users", "req/s", "requests", "error rate", "p50 ms", "p99 ms", "within SLO"]
    rows = []
    for step in block.get("steps") or []:
        lat = step.get("latency_ms") or {}
        rows.append(
            [
                fmt(step.get("users")),
                fmt(step.get("rps")),
                fmt(step.get("requests")),
                fmt(step.get("error_rate"), "pct"),
                fmt(lat.get("p50")),
                fmt(lat.get("p99")),
                "yes" if step.get("passed") else "NO",
            ]
        )
    return head, rows


KNEE_CASES = {
    "plateau": "plateau: past it, added users add no throughput",
    "retrograde": "retrograde: past it, throughput falls",
    "slo": "SLO: a check broke before throughput saturated",
    "scaling": "still scaling at the last step: no knee yet",
    "undetermined": "too few steps to tell",
}


def _model_text(m: Mapping[str, Any] | None, last_users: float | None, rated: bool = False) -> str:
    if not m:
        return "— (fewer than 3 steps)"
    unit = "req/s offered" if rated else "users"
    peak_users, peak_rps = m.get("peak_offered_rps" if rated else "peak_users"), m.get("peak_rps")
    peak = (
        f"peak {fmt(peak_rps)} req/s at N* = {fmt(peak_users)} {unit}"
        if peak_users is not None
        else ("no peak (κ = 0)" if peak_rps is None else f"ceiling {fmt(peak_rps)} req/s (κ = 0)")
    )
    if peak_users is not None and last_users is not None and peak_users > last_users:
        peak += " (past the last step: extrapolated)"
    return (
        f"USL X(N) = λN / (1 + σ(N−1) + κN(N−1)): λ = {m['lambda']:.4g} req/s per "
        f"{'req/s offered' if rated else 'user'}, "
        f"σ = {m['sigma']:.4g}, κ = {m['kappa']:.4g}, R² = {fmt(m.get('r2'))}; {peak}"
    )


def _capacity_pairs(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    c = s.get("capacity") or {}
    knee = c.get("knee_rps")
    case = c.get("knee_case")
    rated = c.get("mode") == "rate"
    load = "offered_rps" if rated else "users"
    users = [step[load] for step in c.get("steps") or []]
    at = (
        f"{fmt(c.get('knee_offered_rps'))} req/s offered"
        if rated
        else f"{c.get('knee_users')} users"
    )
    pairs = [("version measured", str(c["version"]))] if c.get("version") else []
    if rated:
        pairs.append(("mode", "open model: offered arrival rate per step (the probe)"))
    return [
        *pairs,
        (
            "max offered req/s within SLO (achieved ≥ 99 %)" if rated else "max req/s within SLO",
            fmt(c.get("max_rps_within_slo")),
        ),
        ("knee", "—" if knee is None else f"{fmt(knee)} req/s at {at}"),
        ("knee case", "—" if case is None else KNEE_CASES.get(case, str(case))),
        ("model", _model_text(c.get("model"), max(users, default=None), rated)),
        ("limit", str(c.get("limit_reason"))),
        ("checks per step", ", ".join(c.get("slos") or []) or "—"),
    ]


CAPACITY_NOTE = (
    "Each step is measured after its ramp-up (the first max(1 s, added users / spawn rate) "
    "seconds are left out); steps cut short by a stop or by --duration are not shown."
)
RATE_NOTE = (
    "Open model: each step offers its rate whatever the target's speed; the first 1 s of a "
    "step is left out. A request belongs to the step in which it was due; achieved req/s "
    "counts successful responses that arrived in the step; CO latency (coordinated omission "
    "corrected) is ts − intended_ts + latency, what a caller arriving on schedule waited, "
    "and is what the latency checks read. A step passes when achieved ≥ 99 % of offered "
    "and every check passed."
)


def capacity_note(s: Mapping[str, Any]) -> str:
    return RATE_NOTE if (s.get("capacity") or {}).get("mode") == "rate" else CAPACITY_NOTE


def _comparison_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    c = s.get("comparison")
    if not c:
        return []
    return [
        ("baseline → candidate", f"{c['baseline']} → {c['candidate']}"),
        ("judgement (fixed-horizon)", str(c.get("judgement"))),
        ("p50 delta", f"{fmt(c.get('p50_delta_ms'))} ms"),
        ("p99 delta", f"{fmt(c.get('p99_delta_ms'))} ms"),
        ("latency p-value", fmt(c.get("latency_p_value"), "p")),
        ("error rate delta", fmt(c.get("error_rate_delta"), "pct")),
        ("error p-value", fmt(c.get("error_p_value"), "p")),
    ]


def sequential_line(s: Mapping[str, Any]) -> str | None:
    """Why the sequential decision is what it is, in one line (None without one)."""
    q = (s.get("comparison") or {}).get("sequential")
    if not q:
        return None
    head = f"Sequential decision: {q['decision']}"
    if q.get("reason"):
        return f"{head} — {q['reason']}"
    if q["decision"] == "pending":
        return f"{head}: no guardrail lies wholly beyond its margin, not all lie within yet"
    n = q.get("samples_at_decision") or {}
    return (
        f"{head} at {fmt(q.get('decided_at_s'))} s, with {fmt(n.get('baseline'))} baseline and "
        f"{fmt(n.get('candidate'))} candidate requests (α = {q['alpha']:g}, kept once reached)"
    )


def _signed_ms(value: Any) -> str:
    return "—" if value is None else f"{value:+,.1f}"


def guardrail_bounds(g: Mapping[str, Any] | None) -> str:
    """``1.02 [0.81, 1.9]``, and a latency guardrail's difference: ``; +0.4 ms [-9.1, +3.5]``."""
    if not g:
        return "—"
    lower, upper = g.get("lower"), g.get("upper")
    text = f"{fmt(g.get('estimate'))} [{fmt(lower)}, {'∞' if upper is None else fmt(upper)}]"
    if "delta_lower_ms" in g:
        hi = g.get("delta_upper_ms")
        text += (f"; {_signed_ms(g.get('delta_ms'))} ms [{_signed_ms(g.get('delta_lower_ms'))}, "
                 f"{'∞' if hi is None else _signed_ms(hi)}]")  # fmt: skip
    return text


def guardrail_margin(g: Mapping[str, Any]) -> str:
    """``≤ 1.25 or +20 ms`` (a latency guardrail with its floor), ``≤ 0.005``."""
    floor = g.get("margin_ms")
    return f"≤ {fmt(g['margin'])}" + (f" or +{fmt(float(floor))} ms" if floor else "")


def _guardrail_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per guardrail: the margin, the estimate and bounds when decided and now, the state."""
    q = (s.get("comparison") or {}).get("sequential") or {}
    head = ["guardrail", "margin", "at decision: estimate [bounds]", "state then",
            "now: estimate [bounds]", "state now"]  # fmt: skip
    rows = []
    for g in q.get("guardrails") or []:
        at = g.get("at_decision")
        rows.append([g["metric"], guardrail_margin(g), guardrail_bounds(at),
                     (at or {}).get("state") or "—", guardrail_bounds(g), g["state"]])  # fmt: skip
    return head, rows


SEQUENTIAL_NOTE = (
    "Each guardrail is a confidence sequence (bounds valid at every sample size at once), so the "
    "decision can be read at any time without raising its false-fail rate: fail as soon as one "
    "lies wholly beyond its margin (lower bound > margin), pass once all lie within (upper "
    "bound ≤ margin). Ratios are candidate over baseline; error_rate_delta is the candidate's "
    "error rate minus the baseline's, on requests. A latency guardrail's margin has a floor "
    "(today's materiality rule: a ratio beyond its margin is material only when the difference "
    "is beyond its ms too): beyond needs both lower bounds past, within either upper bound "
    "under (the second pair of bounds is the difference, ms)."
)


def _rollout_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    r = s.get("rollout")
    if not r:
        return []
    pct = {"error_rate_during_switch"}
    rows = [(title, fmt(r.get(key), "pct" if key in pct else "")) for key, title in ROLLOUT_FIELDS]
    platform = r.get("platform")
    if platform:
        rows.append(("replacement", str(platform.get("replacement_id"))))
        rows.append(("switchedAt (s)", fmt(platform.get("switched_at_s"))))
        statuses = ", ".join(f"{x['status']}@{fmt(x['at_s'])}s" for x in platform["statuses"])
        rows.append(("platform statuses", statuses or "—"))
    return rows


def _mode_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per connection mode × version: requests, share, errors, latency."""
    head = ["mode", "version", "requests", "share", "errors", "error rate", "p50 ms", "p99 ms"]
    rows = []
    for mode, block in ((s.get("connections") or {}).get("by_mode") or {}).items():
        for label, v in (block.get("versions") or {}).items():
            lat = v.get("latency_ms") or {}
            rows.append(
                [
                    mode, label, fmt(v.get("requests")), fmt(v.get("share"), "pct"),
                    fmt(v.get("errors")), fmt(v.get("error_rate"), "pct"),
                    fmt(lat.get("p50")), fmt(lat.get("p99")),
                ]
            )  # fmt: skip
    return head, rows


def _mode_phase_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per connection mode × phase: requests, errors, latency, split."""
    head = ["mode", "phase", "requests", "errors", "error rate", "p50 ms", "p99 ms", "share"]
    rows = []
    for mode, block in ((s.get("connections") or {}).get("by_mode") or {}).items():
        for p in block.get("phases") or []:
            lat = p.get("latency_ms") or {}
            share = ", ".join(f"{k} {fmt(v, 'pct')}" for k, v in (p.get("share") or {}).items())
            rows.append(
                [
                    mode, p["name"], fmt(p.get("requests")), fmt(p.get("errors")),
                    fmt(p.get("error_rate"), "pct"), fmt(lat.get("p50")), fmt(lat.get("p99")),
                    share or "—",
                ]
            )  # fmt: skip
    return head, rows


#: Connections shown in the report's table (summary.json lists up to 200).
REPORT_CONNECTIONS = 20


def _connection_pairs(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    c = s.get("connections") or {}
    modes = c.get("by_mode") or {}
    per_mode = "; ".join(
        f"{m}: {fmt(b.get('connections'))} connections, {fmt(b.get('pinned'))} pinned"
        + (f" (longest {fmt(b['longest_pin_s'])} s)" if b.get("longest_pin_s") is not None else "")
        + f", {fmt(b.get('saw_both'))} saw both"
        for m, b in modes.items()
    )
    ref = c.get("switch_ref")
    return [
        ("switch reference", "—" if ref is None else f"{ref} at {fmt(c.get('switch_ref_s'))} s"),
        ("connections identified", fmt(c.get("identified"))),
        ("pinned callers", fmt(c.get("pinned_callers"))),
        (
            "longest pin",
            "—"
            if c.get("longest_pin_s") is None
            else f"{fmt(c['longest_pin_s'])} s ({c.get('longest_pin_conn')})",
        ),
        ("connections that failed", fmt(c.get("failed_connections"))),
        ("per mode", per_mode or "—"),
    ]


def _per_connection_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["connection", "mode", "versions", "first s", "last s", "requests", "errors",
            "pinned s", "age at failure s"]  # fmt: skip
    rows = []
    for c in ((s.get("connections") or {}).get("per_connection") or [])[:REPORT_CONNECTIONS]:
        rows.append(
            [
                c.get("conn"), c.get("mode"), " → ".join(c.get("versions") or []) or "—",
                fmt(c.get("first_s")), fmt(c.get("last_s")), fmt(c.get("requests")),
                fmt(c.get("errors")), fmt(c.get("pinned_s")), fmt(c.get("failed_age_s")),
            ]
        )  # fmt: skip
    return head, rows


def _disruption_pairs(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    d = s.get("disruption") or {}

    def line(b: Mapping[str, Any]) -> str:
        return (
            f"{fmt(b.get('count'))} intervals, {fmt(b.get('total_s'))} s in all,"
            f" longest {fmt(b.get('longest_s'))} s"
        )

    pairs = [("whole run", line(d))]
    pairs += [(f"{m} connections", line(b)) for m, b in (d.get("by_mode") or {}).items()]
    return pairs


def _interval_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The disruption intervals as a table (one row each, the first ``REPORT_CONNECTIONS``)."""
    intervals = ((s.get("disruption") or {}).get("intervals") or [])[:REPORT_CONNECTIONS]
    head = ["from (s)", "to (s)", "lasted (s)", "failed requests"]
    rows = [
        [fmt(i.get("start_s")), fmt(i.get("end_s")), fmt(i.get("duration_s")),
         fmt(i.get("failures"))]
        for i in intervals
    ]  # fmt: skip
    return head, rows


DISRUPTION_NOTE = (
    "Disruption: a run of consecutive failed requests (in send order) is one interval, from"
    " the first failure's send time to the next successful request's (SLO key disruption_s:"
    " the total; new.disruption_s / reused.disruption_s per connection mode)."
)


def _reconciliation_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["proton", "version", "platform requests", "caller requests", "difference",
            "difference %", "platform errors", "caller errors", "probable cause"]  # fmt: skip
    r = s.get("reconciliation") or {}
    rows = []
    for p in r.get("protons") or []:
        rows.append(
            [
                p.get("proton_id"), p.get("version"), fmt(p.get("platform_requests")),
                fmt(p.get("caller_requests")), fmt(p.get("difference")),
                fmt(p.get("difference_pct")), fmt(p.get("platform_errors")),
                fmt(p.get("caller_errors")), p.get("cause") or "agrees (within 1%)",
            ]
        )  # fmt: skip
    total = r.get("total") or {}
    if total:
        rows.append(
            [
                "all protons", "", fmt(total.get("platform_requests")),
                fmt(total.get("caller_requests")), fmt(total.get("difference")),
                fmt(total.get("difference_pct")), "", "", total.get("cause") or "agrees",
            ]
        )  # fmt: skip
    for f in r.get("failed_fetches") or []:
        rows.append(
            [f.get("proton_id"), "", "—", "", "", "", "", "", f"not fetched: {f.get('error')}"]
        )
    return head, rows


def _worker_rows(s: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["worker", "host", "rows", "first row (s)", "last row (s)", "lost mid-run"]
    rows = [
        [
            w.get("id"), w.get("host"), fmt(w.get("rows")), fmt(w.get("first_s")),
            fmt(w.get("last_s")), w.get("lost") or "",
        ]
        for w in s.get("workers") or []
    ]  # fmt: skip
    return head, rows


def _unattributed_line(s: Mapping[str, Any]) -> str:
    u = (s.get("reconciliation") or {}).get("unattributed") or {}
    never = _counts_line(u.get("no_answer"))
    gateway = _counts_line(u.get("gateway"))
    return (
        f"Requests no proton can be named for — answers never got: {never}; answered by the"
        f" gateway with no version: {gateway}."
    )


def _connection_sections_html(s: Mapping[str, Any]) -> list[str]:
    """Connections, disruption and reconciliation (the additions of connection modes)."""
    parts: list[str] = []
    if (s.get("connections") or {}).get("by_mode"):
        parts += ["<h2>Connections</h2>", _dl(_connection_pairs(s)), _table(*_mode_rows(s))]
        parts.append(_table(*_mode_phase_rows(s)))
        if (s.get("connections") or {}).get("per_connection"):
            parts.append(_table(*_per_connection_rows(s)))
    if s.get("disruption"):
        parts += ["<h2>Disruption</h2>", _dl(_disruption_pairs(s))]
        if (s.get("disruption") or {}).get("intervals"):
            parts.append(_table(*_interval_rows(s)))
        parts.append(f"<p class='muted'>{html.escape(DISRUPTION_NOTE)}</p>")
    if s.get("reconciliation"):
        parts += ["<h2>Reconciliation with the platform</h2>", _table(*_reconciliation_rows(s))]
        parts.append(f"<p class='muted'>{html.escape(_unattributed_line(s))}</p>")
    return parts


def _connection_sections_md(s: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if (s.get("connections") or {}).get("by_mode"):
        lines += ["", "### Connections", "", *_md_table(["", ""], _connection_pairs(s))]
        lines += ["", *_md_table(*_mode_rows(s)), "", *_md_table(*_mode_phase_rows(s))]
        if (s.get("connections") or {}).get("per_connection"):
            lines += ["", *_md_table(*_per_connection_rows(s))]
    if s.get("disruption"):
        lines += ["", "### Disruption", "", *_md_table(["", ""], _disruption_pairs(s))]
        if (s.get("disruption") or {}).get("intervals"):
            lines += ["", *_md_table(*_interval_rows(s))]
        lines += ["", DISRUPTION_NOTE]
    if s.get("reconciliation"):
        lines += ["", "### Reconciliation with the platform", ""]
        lines += [*_md_table(*_reconciliation_rows(s)), "", _unattributed_line(s)]
    return lines


# ---------------------------------------------------------------- HTML

CSS = """
:root{--fg:#1b1f24;--muted:#5b6470;--line:#d8dde3;--pass:#1a7f37;--fail:#cf222e;--inc:#9a6700}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
margin:0 auto;padding:12px;max-width:1000px}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .4em;
border-bottom:1px solid var(--line)}
.muted{color:var(--muted)}.badge{display:inline-block;padding:.15em .6em;border-radius:1em;
color:#fff;font-weight:600;text-transform:uppercase;font-size:.85em}
.pass{background:var(--pass)}.fail{background:var(--fail)}.inconclusive{background:var(--inc)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:8px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px}
.card b{display:block;font-size:1.15em}
.banner{border:2px solid var(--fail);border-radius:8px;padding:8px 10px;font-weight:600}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
dl{display:grid;grid-template-columns:fit-content(55%) minmax(0,1fr);gap:2px 14px;margin:0}
dt{color:var(--muted)}dd{margin:0;min-width:0;overflow-wrap:break-word}
figure{margin:10px 0;break-inside:avoid;page-break-inside:avoid}
figure img{width:100%;height:auto;border:1px solid var(--line);border-radius:6px}
figcaption{font-size:.85em;color:var(--muted)}
code{font-size:.9em}
@media (max-width:600px){body{font-size:14px;padding:8px}th,td{padding:3px 5px}
/* a phone: figures at a legible size, swiped sideways inside their box, not the page */
figure{overflow-x:auto;-webkit-overflow-scrolling:touch}figure img{width:180%;max-width:none}}
@media print{body{max-width:none;font-size:11pt}.scroll{overflow:visible}
h2{break-after:avoid}a{color:inherit;text-decoration:none}}
"""


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    table = f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _dl(pairs: Iterable[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in pairs)
    return f"<dl>{items}</dl>"


def _counts_line(counts: Mapping[str, int] | None) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in (counts or {}).items()) or "—"


def _corrected(s: Mapping[str, Any]) -> str:
    """The probe's latency corrected for coordinated omission (send lateness added)."""
    block = s.get("latency_corrected_ms")
    if not block:
        return "—"
    return f"p50 {fmt(block.get('p50'))} / p99 {fmt(block.get('p99'))} ms (ts − intended_ts added)"


def caveats(s: Mapping[str, Any]) -> list[str]:
    """What a reader must know before trusting the numbers: an unfinished run, skipped shards."""
    notes = []
    if s.get("complete") is False:
        notes.append(f"Incomplete run: {s.get('incomplete_reason') or 'it never finished'}.")
    skipped = s.get("skipped_shards") or []
    if skipped:
        files = "; ".join(f"{x.get('file')} ({x.get('reason')})" for x in skipped)
        notes.append(
            f"{len(skipped)} sample shard(s) skipped as unreadable, their rows left out: {files}."
        )
    lost = [w for w in s.get("workers") or [] if w.get("lost")]
    if lost:
        names = "; ".join(
            f"{w.get('id')} ({w.get('lost')}, last row at {fmt(w.get('last_s'))} s)" for w in lost
        )
        notes.append(
            f"{len(lost)} Locust worker(s) lost mid-run, the run went on with the others "
            f"(a lost worker's last second of rows may be missing): {names}."
        )
    return notes


def render_html(summary: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """A self-contained page: figures inlined as base64 PNG, no external resource at all."""
    s = summary
    result = (s.get("verdict") or {}).get("result", "inconclusive")
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>proton-probe report {esc(str(s.get('run_id')))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Run {esc(str(s.get('run_id')))} <span class='badge {esc(result)}'>"
        f"{esc(result)}</span></h1>",
        f"<p class='muted'>{esc(str(s.get('kind')))} · {esc(_target(s))}<br>"
        f"{esc(str(s.get('started_at')))} → {esc(str(s.get('ended_at')))}</p>",
        *(f"<p class='banner' role='alert'>⚠ {esc(note)}</p>" for note in caveats(s)),
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><span class='muted'>{esc(k)}</span><b>{esc(v)}</b></div>"
            for k, v in _headline(s)
        )
        + "</div>",
        "<h2>Verdict</h2>",
        _table(*_check_rows(s)),
    ]
    if s.get("capacity"):
        parts += ["<h2>Capacity</h2>", _dl(_capacity_pairs(s)), _table(*_capacity_rows(s))]
        parts.append(f"<p class='muted'>{esc(capacity_note(s))}</p>")
    if s.get("rollout"):
        parts += ["<h2>Rollout</h2>", _dl(_rollout_rows(s))]
    if s.get("comparison"):
        parts += ["<h2>Baseline vs candidate</h2>", _dl(_comparison_rows(s))]
        line = sequential_line(s)
        if line:
            parts += [f"<p><b>{esc(line)}</b></p>", _table(*_guardrail_rows(s)),
                      f"<p class='muted'>{esc(SEQUENTIAL_NOTE)}</p>"]  # fmt: skip
    parts += ["<h2>Versions</h2>", _table(*_versions_rows(s))]
    parts += ["<h2>Phases</h2>", _table(*_phase_rows(s))]
    if s.get("stream"):
        parts += ["<h2>Streamed answers</h2>", _table(*_stream_rows(s))]
    parts += _connection_sections_html(s)
    if s.get("workers"):
        parts += ["<h2>Locust workers</h2>", _table(*_worker_rows(s))]
    for name in FIGURE_TITLES:
        if name in images:
            data = base64.b64encode(images[name]).decode("ascii")
            title = FIGURE_TITLES[name]
            parts.append(
                f"<figure><img alt='{esc(title)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{esc(title)}</figcaption></figure>"
            )
    parts += [
        "<h2>Responses</h2>",
        _dl(
            [
                ("status codes", _counts_line(s.get("status_counts"))),
                ("error classes", _counts_line(s.get("error_classes"))),
                ("sources", _counts_line(s.get("sources"))),
                (
                    "not sent (probe saturated)",
                    f"{s.get('not_sent') or 0:,} scheduled requests, left out of every count",
                ),
                (
                    "interrupted (in flight at the stop)",
                    f"{s.get('interrupted') or 0:,} requests, outcome unknown, left out of"
                    " every count",
                ),
                ("probe latency, corrected", _corrected(s)),
            ]
        ),
        "<p class='muted'>Latency percentiles are exact, over successful responses. "
        "Times are seconds from the run's start. Machine-readable: summary.json "
        "(proton-probe/summary/1).</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------- Markdown


def _md_table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(summary: Mapping[str, Any], *, figures: Sequence[str] = ()) -> str:
    """A compact report for CI comments: verdict, headline, rollout, comparison, versions."""
    s = summary
    result = (s.get("verdict") or {}).get("result", "inconclusive")
    mark = {"pass": "✅", "fail": "❌"}.get(result, "⚠️")
    lines = [
        f"## {mark} proton-probe: **{result}** — run `{s.get('run_id')}`",
        "",
        f"{s.get('kind')} · `{_target(s)}` · {s.get('started_at')} → {s.get('ended_at')}",
        "",
        *(line for note in caveats(s) for line in (f"> ⚠️ **{note}**", "")),
        " · ".join(f"**{k}** {v}" for k, v in _headline(s)),
        "",
        "### Checks",
        "",
        *_md_table(*_check_rows(s)),
    ]
    if s.get("capacity"):
        lines += ["", "### Capacity", "", *_md_table(["", ""], _capacity_pairs(s))]
        lines += ["", *_md_table(*_capacity_rows(s)), "", capacity_note(s)]
    if s.get("rollout"):
        lines += ["", "### Rollout", "", *_md_table(["", ""], _rollout_rows(s))]
    if s.get("comparison"):
        lines += ["", "### Baseline vs candidate", "", *_md_table(["", ""], _comparison_rows(s))]
        line = sequential_line(s)
        if line:
            lines += ["", f"**{line}**", "", *_md_table(*_guardrail_rows(s)), "", SEQUENTIAL_NOTE]
    lines += ["", "### Versions", "", *_md_table(*_versions_rows(s))]
    lines += ["", "### Phases", "", *_md_table(*_phase_rows(s))]
    if s.get("stream"):
        lines += ["", "### Streamed answers", "", *_md_table(*_stream_rows(s))]
    lines += _connection_sections_md(s)
    if s.get("workers"):
        lines += ["", "### Locust workers", "", *_md_table(*_worker_rows(s))]
    if figures:
        lines += ["", "Figures: " + ", ".join(f"`figures/{n}.png`" for n in figures)]
    return "\n".join(lines) + "\n"
