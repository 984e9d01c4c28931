"""What callers saw beside what the platform says it served, per proton: pure, no I/O.

The platform's side is the ``platform stats`` markers the rollout driver writes at a run's
end (``probes.rollout``: ``GET …/stats?protonId=`` over the driver's window). The callers'
side is the run's samples sent in the same window, by the version label of the proton.

Per proton: ``platform_requests`` (``totalRequests``), ``platform_errors`` (``serverErrors``
+ ``userErrors``), ``caller_requests``/``caller_errors``, ``difference`` (platform minus
callers) and ``difference_pct`` (of the platform's count; null when it counted none),
``agrees`` (within ``TOLERANCE``), and beyond it the probable ``cause`` (``explained``: the
cause accounts for the whole difference):

- the platform counted more: **answers the client never got** — requests the proton served
  (or was cut serving) whose answer did not reach the caller (a timeout, a reset, a request
  abandoned at the stop); callers record those with no version, so they count for no proton
  (``unattributed.no_answer``, by error class);
- callers counted more: **the platform's counting window** — requests outside its
  ``startTime..endTime``, statistics reset by a promote, or a version label shared by more
  than one proton.

Requests **answered by the gateway before any proton** (a 401, a 503 with no proton to
route to: no version) are counted by callers only, in no proton's count
(``unattributed.gateway``, by status); they explain the ``total`` row's difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PLATFORM_STATS = "platform stats"
#: Relative difference within which the two counts agree.
TOLERANCE = 0.01


def platform_counts(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``platform stats`` markers, one per proton (the last one wins)."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("kind") == "marker" and event.get("status") == PLATFORM_STATS:
            detail = event.get("detail") or {}
            pid = str(event.get("proton_id") or detail.get("proton_id") or "?")
            found[pid] = {"proton_id": pid, **detail}
    return list(found.values())


def _int(metrics: Mapping[str, Any], key: str) -> int:
    value = metrics.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _pct(diff: int, base: int) -> float | None:
    return None if base == 0 else round(100.0 * diff / base, 3)


def _agrees(diff: int, platform: int, callers: int) -> bool:
    return abs(diff) <= TOLERANCE * max(platform, callers)


def _cause(diff: int, never_got: Mapping[str, int]) -> str:
    if diff > 0:
        total = sum(never_got.values())
        detail = ", ".join(f"{n} {cls}" for cls, n in sorted(never_got.items())) or "none seen"
        why = f"answers the client never got ({detail})"
        if total < diff:
            why += f"; {diff - total} more: other callers or the platform's counting window"
        return why
    return (
        "the platform's counting window (requests outside startTime..endTime, statistics"
        " reset by a promote, or a label shared by protons)"
    )


def reconcile(
    events: Sequence[Mapping[str, Any]],
    *,
    t0: float,
    ts: np.ndarray,
    ok: np.ndarray,
    status: np.ndarray,
    version: np.ndarray,
    labels: Sequence[str],
    error: np.ndarray,
    error_labels: Sequence[str],
    interrupted: int,
) -> dict[str, Any] | None:
    """The summary's ``reconciliation`` block, or None without platform counts.

    ``ts`` are epoch send times; ``error`` codes into ``error_labels`` per row (any code for
    a success); ``interrupted`` rows were left out of the samples but may have reached a
    proton (they count as answers never got).
    """
    fetched = platform_counts(events)
    if not fetched:
        return None
    starts = [f["start_ts"] for f in fetched if isinstance(f.get("start_ts"), int | float)]
    ends = [f["end_ts"] for f in fetched if isinstance(f.get("end_ts"), int | float)]
    lo, hi = (min(starts), max(ends)) if starts and ends else (-np.inf, np.inf)
    inside = (ts >= lo) & (ts <= hi)
    unknown = labels.index("unknown") if "unknown" in labels else -1
    lost = inside & (status == 0) & (version == unknown) & ~ok
    per_class = np.bincount(error[lost], minlength=len(error_labels))
    never_got = {error_labels[int(i)]: int(per_class[i]) for i in np.flatnonzero(per_class)}
    if interrupted:
        never_got["interrupted"] = never_got.get("interrupted", 0) + int(interrupted)
    gateway_rows = inside & (version == unknown) & (status > 0)
    codes, counts = np.unique(status[gateway_rows], return_counts=True)
    gateway = {str(int(c)): int(n) for c, n in zip(codes, counts, strict=True)}
    protons, failures = [], []
    plat_total = call_total = 0
    for item in fetched:
        if "metrics" not in item:
            failures.append({"proton_id": item["proton_id"], "error": item.get("error")})
            continue
        metrics = item["metrics"] or {}
        label = item.get("version")
        code = labels.index(label) if label in labels else None
        mine = inside & (version == code) if code is not None else np.zeros(ts.size, bool)
        callers = int(np.count_nonzero(mine))
        caller_errors = callers - int(np.count_nonzero(mine & ok))
        platform = _int(metrics, "totalRequests")
        perrors = _int(metrics, "serverErrors") + _int(metrics, "userErrors")
        diff = platform - callers
        agrees = _agrees(diff, platform, callers)
        plat_total += platform
        call_total += callers
        protons.append(
            {
                "proton_id": item["proton_id"],
                "version": label,
                "platform_requests": platform,
                "platform_errors": perrors,
                "caller_requests": callers,
                "caller_errors": caller_errors,
                "difference": diff,
                "difference_pct": _pct(diff, platform),
                "error_difference": perrors - caller_errors,
                "agrees": agrees,
                "explained": agrees or 0 < diff <= sum(never_got.values()),
                "cause": None if agrees else _cause(diff, never_got),
            }
        )
    all_callers = int(np.count_nonzero(inside)) + int(interrupted)
    total_diff = plat_total - all_callers
    return {
        "window_s": [round(lo - t0, 6), round(hi - t0, 6)] if starts and ends else None,
        "tolerance": TOLERANCE,
        "protons": protons,
        "total": {
            "platform_requests": plat_total,
            "caller_requests": all_callers,
            "difference": total_diff,
            "difference_pct": _pct(total_diff, plat_total),
            "cause": None
            if _agrees(total_diff, plat_total, all_callers)
            else (
                f"requests answered by the gateway before any proton ({_fmt(gateway)})"
                if total_diff < 0 and gateway
                else _cause(total_diff, {})
            ),
        },
        "unattributed": {"no_answer": never_got, "gateway": gateway},
        "failed_fetches": failures,
        "agrees": all(p["agrees"] for p in protons) and not failures,
    }


def _fmt(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} × {code}" for code, n in sorted(counts.items()))
