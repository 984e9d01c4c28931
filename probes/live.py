"""The live per-version view of the newest samples (no Locust, no clock).

``version_window`` turns the newest samples into what a live view shows — the Locust
"Versions" tab, the service's targets — per version the share of traffic, request rate,
error rate and p50/p99 over the last ``window_s`` seconds. ``RecentSamples`` is the bounded
store kept between arrivals and views. The control plane's side of the view is
``probes.lifecycle`` (one fold of the events).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from probes.records import Sample

__all__ = ["DEFAULT_WINDOW_S", "RecentSamples", "Row", "SampleRow", "table_rows", "version_window"]

#: One row of the window: (ts, version, latency_ms, error class or None).
Row = tuple[float, str, float, str | None]
#: A sample as the glue passes it around: a ``Sample`` or a plain tuple/list in its order.
SampleRow = Sequence[Any]
_TS, _LATENCY, _ERROR, _VERSION = (
    Sample._fields.index(f) for f in ("ts", "latency_ms", "error", "version")
)

DEFAULT_WINDOW_S = 10.0


def version_window(
    rows: Iterable[Row],
    end_ts: float,
    window_s: float = DEFAULT_WINDOW_S,
    first_ts: float | None = None,
) -> dict[str, Any]:
    """Per-version traffic over ``(end_ts - window_s, end_ts]``.

    ``first_ts`` (the first sample of the test) shortens the span rates are computed over
    while the test is younger than the window, so the first seconds do not read low.

    Returns ``{"end_ts", "window_s", "requests", "versions": [{version, requests, share,
    rps, errors, error_rate, p50_ms, p99_ms}, ...]}``, versions by requests, most first.
    Percentiles are exact over the raw latencies in the window (linear interpolation).
    """
    start = end_ts - window_s
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for ts, version, latency_ms, error in rows:
        if start < ts <= end_ts:
            latencies.setdefault(version, []).append(latency_ms)
            if error is not None:
                errors[version] = errors.get(version, 0) + 1
    total = sum(len(v) for v in latencies.values())
    span = window_s if first_ts is None else min(window_s, end_ts - first_ts)
    span = max(span, 1.0)  # one second at least: a rate over a few ms means nothing
    versions: list[dict[str, Any]] = []
    for version, values in latencies.items():
        n = len(values)
        p50, p99 = np.percentile(np.asarray(values, dtype=float), [50, 99])
        err = errors.get(version, 0)
        versions.append(
            {
                "version": version,
                "requests": n,
                "share": n / total,
                "rps": n / span,
                "errors": err,
                "error_rate": err / n,
                "p50_ms": float(p50),
                "p99_ms": float(p99),
            }
        )
    versions.sort(key=lambda v: (-v["requests"], v["version"]))
    return {"end_ts": end_ts, "window_s": window_s, "requests": total, "versions": versions}


def table_rows(
    window: Mapping[str, Any], rollout: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Rows for the Locust web UI table: numbers rounded for reading, role from the rollout."""
    roles = (rollout or {}).get("roles", {})
    rows = [
        {
            "version": v["version"],
            "role": roles.get(v["version"], ""),
            "share": f"{100 * v['share']:.1f}%",
            "rps": round(v["rps"], 1),
            "errors": f"{100 * v['error_rate']:.2f}%",
            "p50": round(v["p50_ms"], 1),
            "p99": round(v["p99_ms"], 1),
        }
        for v in window["versions"]
    ]
    if rollout and rollout.get("status"):
        # The rollout state rides in the same table: one line, marked as such.
        rows.append(
            {
                "version": "(rollout)",
                "role": str(rollout["status"]),
                "share": "",
                "rps": "",
                "errors": "",
                "p50": "",
                "p99": "",
            }
        )
    return rows


class RecentSamples:
    """The samples of the last ``keep_s`` seconds (by sample time), for the live view.

    Bounded by time, not by count: rows older than the newest row minus ``keep_s`` are
    dropped as new rows arrive. Batches from workers arrive a few seconds late and out of
    order between workers, so ``keep_s`` is the window plus slack.
    """

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, slack_s: float = 5.0) -> None:
        self.window_s = window_s
        self.keep_s = window_s + slack_s
        self.newest_ts = 0.0
        self.first_ts: float | None = None
        self._rows: deque[SampleRow] = deque()

    def __len__(self) -> int:
        return len(self._rows)

    def add_many(self, samples: Sequence[SampleRow]) -> None:
        """Keep references to the rows (no copy: they are on their way to disk anyway)."""
        if not samples:
            return
        rows = self._rows
        rows.extend(samples)
        newest = max(self.newest_ts, max(s[_TS] for s in samples))
        self.newest_ts = newest
        if self.first_ts is None:
            self.first_ts = min(s[_TS] for s in samples)
        horizon = newest - self.keep_s
        while rows and rows[0][_TS] < horizon:
            rows.popleft()

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The window ending at the newest sample (or ``now`` if given)."""
        end = self.newest_ts if now is None else now
        rows = [(s[_TS], s[_VERSION], s[_LATENCY], s[_ERROR]) for s in self._rows]
        return version_window(rows, end, self.window_s, self.first_ts)
