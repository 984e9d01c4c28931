"""One run against a baseline run, sample by sample: ``probes compare RUN_A RUN_B``.

RUN_A is the baseline (a pinned run of the same schedule, say), RUN_B the current run. Both
are read back from their raw shards; nothing is taken from bucketed or rounded numbers.

What is compared, each with the tests and the material-difference rule of the report's own
baseline/candidate comparison (``reports.stats.compare`` / ``judge``: Mann–Whitney U on the
latencies of successful responses, Fisher's exact test on errors, a difference counts only
when significant *and* larger than ``MIN_DELTA`` / ``MIN_ERROR_DELTA``):

- **the whole run** (every sent request of A against every one of B);
- **each version label present in both runs**;
- **each capacity step** (capacity runs): steps are cut with ``reports.capacity``'s own step
  clock (``StepPlan``, ``cut_steps``, ``step_window``: ramp-ups skipped, incomplete steps left
  out) and matched by their users; plus the change of ``max_rps_within_slo`` and of the knee.

One guard is added for comparisons *across* runs. Within one run (the report's own
comparison) both versions are measured side by side, so a stall of the machine or of the load
generator hits both; across two runs it hits one of them, and a 100 ms stall in a 4 s step
moves that step's p99 by the stall. So a ``worse``/``better`` that rests on the p99 alone (no
material p50 or error-rate shift) must persist: B's p99 must move the same way by the same
material bound in at least ``TAIL_MIN_PARTS`` of ``TAIL_PARTS`` equal time spans of the
compared rows. Otherwise the judgement is ``same`` and ``judgement_unconfirmed`` keeps what
the report's rule alone said (measured: two runs of one unchanged server on the shared VM
had a single-step p99 jump of 36–64 ms in 3 of 5 pairs, with p50 within 1 ms).

The judgement (``better | same | worse | inconclusive``):

- capacity runs: ``worse`` if a common step is worse, or a step A completed is missing from B
  because B stopped early (its SLO broke sooner), or ``max_rps_within_slo`` fell by more than
  ``MIN_CAPACITY_CHANGE`` (10 %) or to none; ``better`` by the mirror rules when nothing is
  worse; ``same`` when at least one step could be tested; else ``inconclusive``. The whole-run
  comparison is shown but not judged on: it mixes loads when the plans differ;
- other runs: ``worse`` if any common version is worse, ``better`` if one is better and none is
  worse, ``same`` if one could be tested, else ``inconclusive``; without a common version,
  the whole-run comparison decides.

Output: ``comparison.json`` content (``COMPARISON_SCHEMA``), and its Markdown and
self-contained HTML renderings, written into RUN_B as ``compare-<RUN_A id>.{json,md,html}``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probes.errors import RunDirError
from probes.records import write_json_atomic
from probes.run import read_summary
from reports.analysis import split_unsent
from reports.capacity import StepPlan, analyse_capacity, cut_steps, step_window
from reports.render import CSS, _dl, _md_table, _table, fmt
from reports.rundir import load_run
from reports.stats import (
    ALPHA,
    MIN_DELTA,
    MIN_ERROR_DELTA,
    Side,
    _latency_shift,
    compare,
    latency_block,
)

COMPARISON_SCHEMA = "proton-probe/comparison/1"
MIN_CAPACITY_CHANGE = 0.10
#: A judgement resting on the p99 alone must show in this many of the TAIL_PARTS time spans.
TAIL_PARTS = 4
TAIL_MIN_PARTS = 3
JUDGEMENTS = ("better", "same", "worse", "inconclusive")


@dataclass
class RunSamples:
    """One run, as the comparison needs it: send times, latencies, ok, version labels."""

    path: Path
    run_id: str
    kind: str | None
    manifest: dict[str, Any]
    summary: dict[str, Any] | None
    ts: np.ndarray
    latency: np.ndarray
    ok: np.ndarray
    version: np.ndarray  # object array of labels

    def describe(self) -> dict[str, Any]:
        lat = latency_block(self.latency[self.ok])
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "path": str(self.path),
            "started_at": self.manifest.get("started_at"),
            "requests": int(self.ts.size),
            "errors": int(self.ts.size - np.count_nonzero(self.ok)),
            "p50_ms": lat["p50"],
            "p99_ms": lat["p99"],
        }


def read_run(run_dir: Path | str, name: str) -> RunSamples:
    """A run's samples (client_saturated rows left out); RunDirError naming ``name``."""
    try:
        frame, _events, manifest = load_run(run_dir)
    except RunDirError as exc:
        raise RunDirError(str(exc).replace("RUN_DIR", name, 1)) from None
    frame, _ = split_unsent(frame)
    frame = frame.sort_values("ts", kind="stable")
    path = Path(run_dir)
    error = frame["error"] if "error" in frame.columns else None
    return RunSamples(
        path=path,
        run_id=str(manifest.get("run_id") or path.name),
        kind=manifest.get("kind"),
        manifest=manifest,
        summary=read_summary(path),
        ts=frame["ts"].to_numpy(dtype=np.float64),
        latency=frame["latency_ms"].to_numpy(dtype=np.float64),
        ok=np.ones(len(frame), bool) if error is None else error.isna().to_numpy(),
        version=frame["version"].astype(str).to_numpy(dtype=object)
        if "version" in frame.columns
        else np.full(len(frame), "unknown", dtype=object),
    )


def _side(latency: np.ndarray, ok: np.ndarray) -> tuple[Side, np.ndarray]:
    lat = latency[ok]
    block = latency_block(lat)
    n = int(ok.size)
    return Side(n, n - int(np.count_nonzero(ok)), block["p50"], block["p99"], int(lat.size)), lat


def compare_masks(
    a: RunSamples, mask_a: np.ndarray, b: RunSamples, mask_b: np.ndarray, label: str
) -> dict[str, Any]:
    """The report's comparison block of A's rows in ``mask_a`` against B's in ``mask_b``."""
    side_a, lat_a = _side(a.latency[mask_a], a.ok[mask_a])
    side_b, lat_b = _side(b.latency[mask_b], b.ok[mask_b])
    block = compare(f"{label}@{a.run_id}", f"{label}@{b.run_id}", side_a, side_b, lat_a, lat_b)
    block["requests"] = {"baseline": side_a.requests, "current": side_b.requests}
    block["errors"] = {"baseline": side_a.errors, "current": side_b.errors}
    block["p50_ms"] = {"baseline": side_a.p50, "current": side_b.p50}
    block["p99_ms"] = {"baseline": side_a.p99, "current": side_b.p99}
    if block["judgement"] in ("worse", "better") and _only_p99(side_a, side_b, block):
        sign = 1 if block["judgement"] == "worse" else -1
        agree = _tail_parts(a, mask_a, b, mask_b, sign)
        block["tail_persistence"] = {"parts": TAIL_PARTS, "agree": agree}
        if agree < TAIL_MIN_PARTS:
            block["judgement_unconfirmed"] = block["judgement"]
            block["judgement"] = "same"
    return block


def _only_p99(side_a: Side, side_b: Side, block: Mapping[str, Any]) -> bool:
    """Whether the report's judgement rests on the p99 alone (no material p50 or error shift)."""
    error_p = block.get("error_p_value")
    if error_p is not None and error_p < ALPHA and side_a.requests and side_b.requests:
        delta = side_b.errors / side_b.requests - side_a.errors / side_a.requests
        if abs(delta) > MIN_ERROR_DELTA:
            return False
    p50_a = Side(side_a.requests, side_a.errors, side_a.p50, None, side_a.ok_latencies)
    p50_b = Side(side_b.requests, side_b.errors, side_b.p50, None, side_b.ok_latencies)
    return _latency_shift(p50_a, p50_b) == 0


def _parts(run: RunSamples, mask: np.ndarray) -> list[np.ndarray]:
    """The successful latencies of ``mask``'s rows in TAIL_PARTS equal spans of its time."""
    ts, lat = run.ts[mask & run.ok], run.latency[mask & run.ok]
    if ts.size == 0:
        return [lat] * TAIL_PARTS
    edges = np.linspace(float(ts.min()), float(ts.max()), TAIL_PARTS + 1)
    idx = np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, TAIL_PARTS - 1)
    return [lat[idx == k] for k in range(TAIL_PARTS)]


def _tail_parts(
    a: RunSamples, mask_a: np.ndarray, b: RunSamples, mask_b: np.ndarray, sign: int
) -> int:
    """In how many of the TAIL_PARTS spans B's p99 moved materially in direction ``sign``."""
    min_ms, min_fraction = MIN_DELTA["p99"]
    agree = 0
    for part_a, part_b in zip(_parts(a, mask_a), _parts(b, mask_b), strict=True):
        if part_a.size == 0 or part_b.size == 0:
            continue
        p_a, p_b = float(np.percentile(part_a, 99)), float(np.percentile(part_b, 99))
        delta = p_b - p_a
        if delta * sign > 0 and abs(delta) > min_ms and abs(delta) > min_fraction * abs(p_a):
            agree += 1
    return agree


def _plan(run: RunSamples) -> StepPlan | None:
    raw = (run.manifest.get("settings") or {}).get("capacity")
    return StepPlan.from_dict(raw) if isinstance(raw, Mapping) else None


def _step_masks(run: RunSamples) -> dict[int, tuple[np.ndarray, float]]:
    """users -> (row mask of the step's measured window, its rps), for the complete steps."""
    plan = _plan(run)
    if plan is None or run.ts.size == 0:
        return {}
    stop = run.manifest.get("capacity") or {}
    stopped = stop.get("stopped_ts") if isinstance(stop, Mapping) else None
    steps = cut_steps(run.ts, run.latency, run.ok, plan, stopped_ts=stopped)
    t0 = float(run.ts.min())
    out = {}
    for k, step in enumerate(steps):
        _, measured, end = step_window(plan, t0, k)
        out[int(step["users"])] = ((run.ts >= measured) & (run.ts < end), float(step["rps"]))
    return out


def _capacity_numbers(run: RunSamples) -> dict[str, Any]:
    """max_rps_within_slo / knee of the run: its summary's, else recomputed from its samples."""
    block = (run.summary or {}).get("capacity")
    if not isinstance(block, Mapping):
        slos = (run.manifest.get("settings") or {}).get("slos")
        found = analyse_capacity(run.ts, run.latency, run.ok, run.manifest, slos)
        block = found[0] if found else {}
    return {k: block.get(k) for k in ("max_rps_within_slo", "knee_rps", "knee_users")}


def _change(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not a:
        return None
    return round(b / a - 1.0, 6)


def _step_line(users: int, block: Mapping[str, Any]) -> str:
    parts = []
    for key in ("p50", "p99"):
        d = block.get(f"{key}_delta_ms")
        if d is not None:
            parts.append(f"{key} {d:+.1f} ms")
    if block.get("error_rate_delta") is not None:
        parts.append(f"errors {100 * block['error_rate_delta']:+.2f} pp")
    if block.get("judgement_unconfirmed"):
        agree = block["tail_persistence"]["agree"]
        parts.append(f"p99 shift in {agree} of {TAIL_PARTS} spans only: transient, not counted")
    return f"step {users} users: {block['judgement']} ({', '.join(parts) or 'no data'})"


def _combine(judgements: Sequence[str]) -> str:
    if "worse" in judgements:
        return "worse"
    if "better" in judgements:
        return "better"
    return "same" if "same" in judgements else "inconclusive"


def _capacity_part(a: RunSamples, b: RunSamples) -> tuple[dict[str, Any], list[str], str]:
    """(capacity block, reasons, judgement) of two capacity runs."""
    steps_a, steps_b = _step_masks(a), _step_masks(b)
    steps, lines, judgements = [], [], []
    for users in sorted(set(steps_a) & set(steps_b)):
        block = compare_masks(a, steps_a[users][0], b, steps_b[users][0], f"{users} users")
        block["rps"] = {"baseline": steps_a[users][1], "current": steps_b[users][1]}
        steps.append({"users": users, "judgement": block["judgement"], "comparison": block})
        judgements.append(block["judgement"])
        lines.append(_step_line(users, block))
    reasons = [line for line in lines if not line.split(": ", 1)[1].startswith("same")]
    plan_b = _plan(b)
    reach = plan_b.max_users if plan_b else 0
    missing = sorted(u for u in set(steps_a) - set(steps_b) if max(steps_b, default=0) < u <= reach)
    if missing:
        judgements.append("worse")
        reasons.append(
            f"steps of {missing} users completed in the baseline, not in the current run"
        )
    num_a, num_b = _capacity_numbers(a), _capacity_numbers(b)
    change = _change(num_a["max_rps_within_slo"], num_b["max_rps_within_slo"])
    if num_a["max_rps_within_slo"] is not None and num_b["max_rps_within_slo"] is None:
        judgements.append("worse")
        reasons.append("max_rps_within_slo: none in the current run")
    elif change is not None and abs(change) > MIN_CAPACITY_CHANGE:
        judgements.append("worse" if change < 0 else "better")
        reasons.append(f"max_rps_within_slo {100 * change:+.1f}%")
    tested = [j for j in judgements if j != "inconclusive"]
    block = {
        "steps": steps,
        "lines": lines,
        "only_in_baseline": sorted(set(steps_a) - set(steps_b)),
        "only_in_current": sorted(set(steps_b) - set(steps_a)),
        "baseline": num_a,
        "current": num_b,
        "max_rps_within_slo_change": change,
        "knee_rps_change": _change(num_a["knee_rps"], num_b["knee_rps"]),
    }
    return block, reasons, _combine(tested) if tested else "inconclusive"


def compare_runs(run_a: Path | str, run_b: Path | str) -> dict[str, Any]:
    """The comparison of RUN_B (current) against RUN_A (baseline); see the module docstring."""
    a, b = read_run(run_a, "RUN_A"), read_run(run_b, "RUN_B")
    whole = compare_masks(a, np.ones(a.ts.size, bool), b, np.ones(b.ts.size, bool), "all")
    versions = {}
    for label in sorted(set(a.version) & set(b.version)):
        versions[label] = compare_masks(a, a.version == label, b, b.version == label, label)
    capacity = None
    reasons: list[str] = []
    if a.kind == b.kind == "capacity" and _plan(a) and _plan(b):
        capacity, reasons, judgement = _capacity_part(a, b)
    else:
        per_version = [v["judgement"] for v in versions.values()]
        judgement = _combine(per_version) if per_version else whole["judgement"]
        for label, v in versions.items():
            if v["judgement"] in ("worse", "better"):
                reasons.append(_step_line(0, v).replace("step 0 users", f"version {label}"))
        if not versions:
            reasons.append("no version label in both runs: the whole runs were compared")
    return {
        "schema": COMPARISON_SCHEMA,
        "baseline": a.describe(),
        "current": b.describe(),
        "judgement": judgement,
        "reasons": reasons,
        "whole_run": whole,
        "versions": versions,
        "only_in_baseline": sorted(set(a.version) - set(b.version)),
        "only_in_current": sorted(set(b.version) - set(a.version)),
        "capacity": capacity,
    }


def judgement_line(result: Mapping[str, Any]) -> str:
    """``compare A -> B: worse (step 13 users: worse (p99 +45.2 ms); ...)``."""
    why = "; ".join(result["reasons"])
    head = f"compare {result['baseline']['run_id']} -> {result['current']['run_id']}: "
    return head + result["judgement"] + (f" ({why})" if why else "")


# -- rendering ----------------------------------------------------------------------------------

_ROW_HEAD = ["", "requests A / B", "errors A / B", "p50 ms A / B", "p99 ms A / B",
             "latency p", "error p", "judgement"]  # fmt: skip


def _row(name: str, c: Mapping[str, Any]) -> list[str]:
    def pair(key: str) -> str:
        return f"{fmt(c[key]['baseline'])} / {fmt(c[key]['current'])}"

    p_lat, p_err = fmt(c["latency_p_value"], "p"), fmt(c["error_p_value"], "p")
    return [name, pair("requests"), pair("errors"), pair("p50_ms"), pair("p99_ms"),
            p_lat, p_err, c["judgement"]]  # fmt: skip


def _rows(result: Mapping[str, Any]) -> list[list[str]]:
    rows = [_row("whole run", result["whole_run"])]
    rows += [_row(f"version {k}", v) for k, v in result["versions"].items()]
    for step in (result.get("capacity") or {}).get("steps", []):
        rows.append(_row(f"step {step['users']} users", step["comparison"]))
    return rows


def _capacity_pairs(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    cap = result.get("capacity")
    if not cap:
        return []
    a, b = cap["baseline"], cap["current"]
    return [
        ("max rps within SLO", f"{fmt(a['max_rps_within_slo'])} → {fmt(b['max_rps_within_slo'])}"
         f" ({fmt(cap['max_rps_within_slo_change'], 'pct')})"),
        ("knee rps (users)", f"{fmt(a['knee_rps'])} ({fmt(a['knee_users'])}) → "
         f"{fmt(b['knee_rps'])} ({fmt(b['knee_users'])})"),
        ("steps only in baseline", fmt(", ".join(map(str, cap["only_in_baseline"])) or None)),
        ("steps only in current", fmt(", ".join(map(str, cap["only_in_current"])) or None)),
    ]  # fmt: skip


NOTE = (
    "A = baseline, B = current. Mann–Whitney U on the latencies of successful responses, "
    "Fisher's exact test on errors; a difference counts when p < 0.01 and it is material "
    "(p50 by > 5 ms and 10 %, p99 by > 20 ms and 25 %, error rate by > 0.1 pp)."
)


def render_markdown(result: Mapping[str, Any]) -> str:
    """The comparison as a Markdown section (CI comments)."""
    a, b = result["baseline"], result["current"]
    lines = [
        f"## proton-probe compare: **{result['judgement']}** — `{b['run_id']}` against "
        f"baseline `{a['run_id']}`",
        "",
        *(f"- {r}" for r in result["reasons"]),
        "",
        *_md_table(_ROW_HEAD, _rows(result)),
    ]
    if result.get("capacity"):
        lines += ["", *_md_table(["capacity", "A → B"], _capacity_pairs(result))]
    lines += ["", NOTE]
    return "\n".join(lines) + "\n"


def render_html(result: Mapping[str, Any]) -> str:
    """The comparison as a self-contained HTML page (no external resource)."""
    esc = html.escape
    a, b = result["baseline"], result["current"]
    j = result["judgement"]
    badge = {"worse": "fail", "better": "pass", "same": "pass"}.get(j, "inconclusive")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>compare {esc(b['run_id'])} vs {esc(a['run_id'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Compare <span class='badge {badge}'>{esc(j)}</span></h1>",
        f"<p class='muted'>B {esc(b['run_id'])} ({esc(str(b['started_at']))}) against baseline "
        f"A {esc(a['run_id'])} ({esc(str(a['started_at']))})</p>",
    ]
    if result["reasons"]:
        parts.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in result["reasons"]) + "</ul>")
    parts.append(_table(_ROW_HEAD, _rows(result)))
    if result.get("capacity"):
        parts += ["<h2>Capacity</h2>", _dl(_capacity_pairs(result))]
    parts += [f"<p class='muted'>{esc(NOTE)}</p>", "</body></html>"]
    return "\n".join(parts)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_comparison(result: Mapping[str, Any], run_b: Path | str) -> Path:
    """Write ``compare-<A id>.json`` / ``.md`` / ``.html`` into RUN_B; the JSON's path."""
    stem = f"compare-{result['baseline']['run_id']}"
    out = Path(run_b)
    write_json_atomic(out / f"{stem}.json", result)
    _write_text_atomic(out / f"{stem}.md", render_markdown(result))
    _write_text_atomic(out / f"{stem}.html", render_html(result))
    return out / f"{stem}.json"
