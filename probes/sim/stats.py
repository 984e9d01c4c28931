"""Request statistics per proton: what the gateway saw, as ``GET …/stats`` reports it.

The gateway records one row per request it routed (epoch time, status, latency); the
control plane asks for the documented ``RequestMetrics`` of one proton over a period.
Promote resets a proton's statistics (a new origin, no rows).

Semantics the documentation leaves open, settled here (``probes/sim/__init__`` lists them):
the period without ``startTime`` starts at the proton's origin (start or last reset) and
ends now; ``requestsPerMinute`` is the period's requests divided by its length in minutes,
at least one minute, rounded; ``responseTime`` is the requested quantile of the latencies
in whole milliseconds, 0 without requests.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from probes.sim import wire
from probes.sim.models import iso

MAX_ROWS = 2_000_000  # per proton, about 200 MB at most


@dataclass
class ProtonStats:
    """One proton's requests: totals, and the last ``MAX_ROWS`` (epoch ts, status, ms)."""

    origin: float = field(default_factory=time.time)
    total: int = 0
    server_errors: int = 0
    user_errors: int = 0
    last_at: float | None = None
    rows: deque[tuple[float, int, float]] = field(default_factory=lambda: deque(maxlen=MAX_ROWS))

    def add(self, ts: float, status: int, latency_ms: float) -> None:
        self.total += 1
        if status >= 500 or status == 0:
            self.server_errors += 1
        elif status >= 400:
            self.user_errors += 1
        self.last_at = ts
        self.rows.append((ts, status, latency_ms))


@dataclass(frozen=True)
class Query:
    """The documented parameters of ``GET …/stats``."""

    start: float | None = None
    end: float | None = None
    quantile: float = 0.5
    slow_ms: float = 2000.0


class Stats:
    """Every proton's :class:`ProtonStats`, by proton id."""

    def __init__(self) -> None:
        self._by_proton: dict[str, ProtonStats] = {}

    def open(self, proton_id: str) -> None:
        """Start (or restart, on promote) the statistics of a proton."""
        self._by_proton[proton_id] = ProtonStats()

    def record(self, proton_id: str, ts: float, status: int, latency_ms: float) -> None:
        """One request the gateway routed (status 0: no answer, counted as a server error)."""
        self._by_proton.setdefault(proton_id, ProtonStats()).add(ts, status, latency_ms)

    def request_counts(self) -> dict[str, int]:
        """Requests routed to each proton, all time."""
        return {pid: s.total for pid, s in self._by_proton.items()}

    def report(self, proton_id: str, q: Query, concurrent: int) -> wire.ProtonRequestStats:
        """The ``ProtonRequestStats`` of one proton over ``q``'s period (see module doc)."""
        s = self._by_proton.get(proton_id) or ProtonStats()
        t0 = q.start if q.start is not None else s.origin
        t1 = q.end if q.end is not None else time.time()
        rows = [row for row in s.rows if t0 <= row[0] and (q.end is None or row[0] < q.end)]
        total = len(rows)
        server = sum(1 for _, st, _ in rows if st >= 500 or st == 0)
        user = sum(1 for _, st, _ in rows if 400 <= st < 500)
        lat = sorted(ms for _, _, ms in rows)
        response_ms = round(lat[min(len(lat) - 1, int(q.quantile * len(lat)))]) if lat else 0
        minutes = max(1.0, (t1 - t0) / 60.0)
        metrics: wire.RequestMetrics = {
            "totalRequests": total,
            "serverErrors": server,
            "userErrors": user,
            "slowRequests": sum(1 for ms in lat if ms > q.slow_ms),
            "responseTime": response_ms,
            "requestsPerMinute": round(total / minutes),
            "concurrentRequests": concurrent,
            "serverErrorRate": server / total if total else 0.0,
            "userErrorRate": user / total if total else 0.0,
            "totalErrorRate": (server + user) / total if total else 0.0,
        }
        return {"period": {"start": iso(t0), "end": iso(t1)}, "metrics": metrics}

    def request_stats(self, proton_id: str, concurrent: int) -> wire.RequestStats:
        """The ``requestStats`` a workload list inlines with ``serviceStats=true``."""
        m = self.report(proton_id, Query(), concurrent)["metrics"]
        s = self._by_proton.get(proton_id)
        return {
            "totalRequests": m["totalRequests"],
            "errorRate": m["totalErrorRate"],
            "responseTime": m["responseTime"],
            "concurrentRequests": m["concurrentRequests"],
            "lastRequestAt": iso(s.last_at) if s is not None else None,
        }


__all__ = ["MAX_ROWS", "ProtonStats", "Query", "Stats"]
