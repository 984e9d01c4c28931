"""Each target's recent past in time buckets, so live charts open with history, not empty.

``History.add`` is fed every canary row (the service's sample fan-out, on the event loop);
``buckets`` answers ``GET /api/v1/targets/{name}/history?minutes=N`` and ``current`` the
version that answered most over the last ``CURRENT_S`` seconds (the "now" that follows a
completed switch within seconds, where the 60 s window of rates still holds the old version).

A row belongs to the bucket of its *answer* time (send time plus latency): rows reach us in
that order, so a bucket is complete once a row of a later bucket arrived, and late rows need
no bookkeeping. Three tiers bound the memory of a long-running service: 5 s buckets for the
last hour, 60 s for 6 hours, 300 s for 24 hours (a window uses the finest tier that covers
it). Raw latencies are kept only while a bucket is open; a closed bucket keeps its counts and
percentiles (exact over its own rows) in one flat tuple of a few hundred bytes. Streamed
answers add their time to first token (``ttft_p50_ms`` per bucket and per version).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

#: (bucket seconds, buckets kept, the longest window in minutes it answers)
TIERS = ((5.0, 720, 60), (60.0, 360, 360), (300.0, 288, 1440))  # 1 h, 6 h, 24 h
FINE_S = TIERS[0][0]
MAX_MINUTES = 1440
DEFAULT_MINUTES = 15
CURRENT_S = 5.0


@dataclass
class _Open:
    """A bucket still receiving rows."""

    start: float
    requests: int = 0
    errors: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=dict)
    ttft: dict[str, list[float]] = field(default_factory=dict)

    def add(self, version: str, ok: bool, latency_ms: float, ttft_ms: float | None) -> None:
        self.requests += 1
        self.versions[version] += 1
        if ok:
            self.latency.setdefault(version, []).append(latency_ms)
            if ttft_ms is not None:
                self.ttft.setdefault(version, []).append(ttft_ms)
        else:
            self.errors += 1

    def closed(self) -> tuple[Any, ...]:
        """One flat tuple (a few hundred bytes: a day of buckets per target stays small):
        ``(t, requests, errors, p50, p99, ttft p50, version, n, p99, ttft p50, ...)``."""
        every = sorted(x for values in self.latency.values() for x in values)
        first = sorted(x for values in self.ttft.values() for x in values)
        out: list[Any] = [self.start, self.requests, self.errors, _pct(every, 50), _pct(every, 99)]
        out.append(_pct(first, 50))
        for version, n in sorted(self.versions.items()):
            out += (version, n, _pct(sorted(self.latency.get(version, ())), 99))
            out.append(_pct(sorted(self.ttft.get(version, ())), 50))
        return tuple(out)


def _pct(ordered: list[float], q: float) -> float | None:
    """numpy's default (linear) percentile of a sorted list, in plain Python: a bucket holds
    few rows, and numpy's call overhead (~20 us) would dominate the per-row cost."""
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class _Tier:
    """Buckets of one width: the open one and up to ``keep`` closed ones."""

    def __init__(self, width: float, keep: int) -> None:
        self.width = width
        self.closed: deque[tuple[Any, ...]] = deque(maxlen=keep)
        self.open: _Open | None = None

    def add(
        self, at: float, version: str, ok: bool, latency_ms: float, ttft_ms: float | None
    ) -> None:
        start = math.floor(at / self.width) * self.width
        current = self.open
        if current is None or start > current.start:
            if current is not None:
                self.closed.append(current.closed())
            current = self.open = _Open(start)
        # a row answered in an earlier bucket than the open one (a clock step): counted here
        current.add(version, ok, latency_ms, ttft_ms)

    def since(self, t0: float) -> list[tuple[Any, ...]]:
        out = [b for b in self.closed if b[0] + self.width > t0]
        if self.open is not None and self.open.start + self.width > t0:
            out.append(self.open.closed())
        return out


def _item(bucket: tuple[Any, ...]) -> dict[str, Any]:
    t, requests, errors, p50, p99, ttft = bucket[:6]
    rows = [bucket[i : i + 4] for i in range(6, len(bucket), 4)]
    return {
        "t": t,
        "requests": requests,
        "errors": errors,
        "p50_ms": p50,
        "p99_ms": p99,
        "versions": {v: n / requests for v, n, _, _ in rows} if requests else {},
        "p99_by_version": {v: q for v, _, q, _ in rows if q is not None},
        # streamed answers only (null / absent for a target that does not stream)
        "ttft_p50_ms": ttft,
        "ttft_p50_by_version": {v: f for v, _, _, f in rows if f is not None},
    }


class _Target:
    def __init__(self) -> None:
        self.tiers = [_Tier(width, keep) for width, keep, _ in TIERS]
        self.recent: deque[tuple[float, str]] = deque()


class History:
    """Every target's buckets (call from one thread: the service's event loop)."""

    def __init__(self) -> None:
        self._targets: dict[str, _Target] = {}

    def add(
        self,
        target: str,
        ts: float,
        version: str,
        ok: bool,
        latency_ms: float,
        ttft_ms: float | None = None,
    ) -> None:
        """One row: sent at ``ts`` (epoch s), answered ``latency_ms`` later (its first token
        ``ttft_ms`` after sending, for a streamed answer)."""
        at = ts + max(0.0, latency_ms) / 1000.0
        state = self._targets.get(target)
        if state is None:
            state = self._targets[target] = _Target()
        for tier in state.tiers:
            tier.add(at, version, ok, latency_ms, ttft_ms)
        recent = state.recent
        recent.append((at, version))
        while recent and recent[0][0] < at - CURRENT_S:
            recent.popleft()

    def buckets(self, target: str, minutes: int, now: float) -> dict[str, Any]:
        """The history answer: ``{target, minutes, bucket_s, buckets}``, oldest first."""
        state = self._targets.get(target)
        k = next(i for i, (_, _, longest) in enumerate(TIERS) if minutes <= longest or i == 2)
        items: list[dict[str, Any]] = []
        if state is not None:
            items = [_item(b) for b in state.tiers[k].since(now - 60.0 * minutes)]
        return {"target": target, "minutes": minutes, "bucket_s": TIERS[k][0], "buckets": items}

    def current(self, target: str, now: float) -> str | None:
        """The version that answered most over the last ``CURRENT_S`` seconds (a known
        version before ``unknown``); None when nothing answered in that time."""
        state = self._targets.get(target)
        if state is None:
            return None
        counts = Counter(v for at, v in state.recent if at >= now - CURRENT_S)
        known = {v: n for v, n in counts.items() if v != "unknown"} or counts
        if not known:
            return None
        return max(sorted(known), key=lambda v: known[v])


def parse_minutes(text: str | None) -> int:
    """``minutes`` of a history query (1..1440, default 15); ValueError naming it."""
    if text is None or text == "":
        return DEFAULT_MINUTES
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"minutes: {text!r} is not a whole number (1..{MAX_MINUTES})") from None
    if not 1 <= value <= MAX_MINUTES:
        raise ValueError(f"minutes: {value} is out of range (1..{MAX_MINUTES})")
    return value
