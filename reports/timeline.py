"""Timeline attribution: which version served a response that did not say, where that is certain.

Some apps reveal no version. When the rollout watcher recorded the control plane's
lifecycle, a response can still be attributed: while exactly one proton was routed, it
served everything. That holds before a switch (the active proton) and after it, once the
switch, the weighted shift and the old proton's drain are over (the new active proton). It
does not hold in between, so responses there stay ``unknown``.

Certainty margins, because the watcher sees the control plane only every ``poll_s``:

* a switch window runs from ``switchedAt`` (or, when the platform's time is not known,
  from the last event the watcher wrote before it saw the switch) to the first event that
  shows the promotion over (``finalizing``/``completed``), widened by ``poll_s`` each side;
* a request is attributed only if it started and ended outside every window: sent at
  least its own latency after a window closed, or ended before one opened;
* a change of the active proton seen without any replacement record opens a window too;
* nothing is attributed after the watcher's last look (marker ``watch stopped``).

Pure: ``attribute(frame, events)`` returns a new frame and never touches the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np
import pandas as pd

from probes.lifecycle import RolloutState, fold

UNKNOWN = "unknown"
TIMELINE = "timeline"
DEFAULT_POLL_S = 0.5
#: Replacement statuses that prove traffic has (started to) move to the candidate.
SWITCHED = frozenset({"promoting", "finalizing", "completed"})
#: Statuses that prove the move (shift and drain included) is over.
SETTLED = frozenset({"finalizing", "completed"})

Window = tuple[float, float]


@dataclass(frozen=True)
class Segment:
    """A span of time during which exactly one version was routed."""

    start: float
    end: float
    version: str


def poll_interval(events: Iterable[Mapping[str, Any]]) -> float:
    """The watcher's poll interval, from its ``watch started`` marker (default 0.5 s)."""
    for event in events:
        if event.get("kind") == "marker" and event.get("status") == "watch started":
            value = (event.get("detail") or {}).get("poll_s")
            if isinstance(value, int | float) and value > 0:
                return float(value)
    return DEFAULT_POLL_S


def _replacement_windows(events: Sequence[Mapping[str, Any]]) -> list[Window]:
    """One window per replacement that reached the switch."""
    windows = []
    ids = {e.get("replacement_id") for e in events if e.get("kind") == "replacement"}
    for rid in sorted(i for i in ids if i is not None):
        own = [
            e for e in events if e.get("kind") == "replacement" and e.get("replacement_id") == rid
        ]
        first_switch = next((e for e in own if e["status"] in SWITCHED), None)
        if first_switch is None:
            continue  # never switched (errored, canceled, still staged): one version throughout
        switched = [(e.get("detail") or {}).get("switched_ts") for e in own]
        switched_ts = next((s for s in switched if isinstance(s, int | float)), None)
        if switched_ts is not None:
            start = min(float(switched_ts), float(first_switch["ts"]))
        else:  # the switch happened after the watcher's previous event, at the latest
            # (Locust's own markers, such as its ``load started``, say nothing of the switch)
            switch_ts = first_switch["ts"]
            before = [e["ts"] for e in events if e["ts"] < switch_ts and e.get("role") != "locust"]
            start = float(max(before)) if before else -math.inf
        settled = next((e for e in own if e["status"] in SETTLED), None)
        end = float(settled["ts"]) if settled is not None else math.inf
        if switched_ts is not None:
            end = max(end, float(switched_ts))
        windows.append((start, end))
    return windows


def _active(state: RolloutState) -> set[str]:
    """The versions of the protons whose role is ``active`` in ``state``."""
    return {p.version or UNKNOWN for p in state.protons.values() if p.role == "active"}


def _active_versions(events: Sequence[Mapping[str, Any]], until: float) -> set[str]:
    """The versions of the protons with role ``active`` as last seen at or before ``until``."""
    return _active(fold(e for e in events if e["ts"] <= until))


def _active_change_windows(events: Sequence[Mapping[str, Any]]) -> list[Window]:
    """A window around every change of the active version the watcher saw: the change
    happened after the poll before (its last event) and by the poll that saw it."""
    windows: list[Window] = []
    state = RolloutState()
    previous: set[str] = set()
    last_ts = -math.inf
    for ts, group in groupby(events, key=lambda e: float(e["ts"])):
        for event in group:
            state.add(event)
        current = _active(state)
        if previous and current and current != previous:
            windows.append((last_ts, ts))
        previous = current or previous
        last_ts = ts
    return windows


def switch_windows(events: Sequence[Mapping[str, Any]], poll_s: float) -> list[Window]:
    """Merged, widened windows during which more than one version may have been routed."""
    from_records = _replacement_windows(events)
    # A role change inside a replacement's window is that replacement's switch, already
    # bounded more tightly (by switchedAt) than the watcher's polls can bound it.
    from_roles = [
        w
        for w in _active_change_windows(events)
        if not any(s <= w[1] <= e for s, e in from_records)
    ]
    raw = from_records + from_roles
    widened = sorted((s - poll_s, e + poll_s) for s, e in raw)
    merged: list[Window] = []
    for start, end in widened:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def routed_segments(events: Sequence[Mapping[str, Any]], poll_s: float) -> list[Segment]:
    """The spans outside every switch window, each with the one version routed then."""
    events = sorted(events, key=lambda e: e["ts"])
    if not any(e.get("kind") == "proton" for e in events):
        return []
    windows = switch_windows(events, poll_s)
    stop = next(
        (
            float(e["ts"])
            for e in reversed(events)
            if e.get("kind") == "marker" and e.get("status") == "watch stopped"
        ),
        math.inf,
    )
    last_ts = float(events[-1]["ts"])
    edges = [-math.inf] + [x for w in windows for x in w] + [stop]
    segments = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end <= start:
            continue
        # The active proton as the watcher settled on it just before the segment closes.
        versions = _active_versions(events, min(end, last_ts))
        if len(versions) == 1 and UNKNOWN not in versions:
            segments.append(Segment(start, end, next(iter(versions))))
    return segments


def attribute(
    frame: pd.DataFrame, events: Sequence[Mapping[str, Any]], *, poll_s: float | None = None
) -> pd.DataFrame:
    """``frame`` with ``unknown`` versions filled from the platform timeline where certain.

    Only responses that arrived (``status`` > 0) are attributed; their ``tag_source``
    becomes ``timeline``. Every other row is returned unchanged.
    """
    if frame.empty or not events:
        return frame
    events = sorted(events, key=lambda e: e["ts"])
    segments = routed_segments(events, poll_interval(events) if poll_s is None else poll_s)
    if not segments:
        return frame
    ts = frame["ts"].to_numpy(dtype=float)
    lat = frame["latency_ms"].to_numpy(dtype=float) / 1000.0
    candidates = (frame["version"].astype(object) == UNKNOWN).to_numpy() & (
        frame["status"].to_numpy() > 0
    )
    if not candidates.any():
        return frame
    version = frame["version"].astype(object).to_numpy(copy=True)
    tag = frame["tag_source"].astype(object).to_numpy(copy=True)
    for seg in segments:
        inside = candidates & (ts >= seg.start + lat) & (ts + lat <= seg.end)
        version[inside] = seg.version
        tag[inside] = TIMELINE
    out = frame.copy()
    out["version"] = _like(frame["version"], version)
    out["tag_source"] = _like(frame["tag_source"], tag)
    return out


def _like(column: pd.Series, values: np.ndarray) -> Any:
    """Values in the dtype of the original column (categoricals stay categorical)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return pd.Categorical(values)
    return values


def attribute_codes(
    ts: np.ndarray,
    latency_ms: np.ndarray,
    status: np.ndarray,
    codes: np.ndarray,
    labels: list[str],
    events: Sequence[Mapping[str, Any]],
    *,
    poll_s: float | None = None,
) -> tuple[np.ndarray, list[str]]:
    """``attribute`` on version codes (-1: null) into ``labels``: the (codes, labels) of the
    version column ``attribute`` would return, as ``read_samples`` categoricals (relabelled,
    labels sorted and only those present, whenever any row could be attributed)."""
    if ts.size == 0 or not events:
        return codes, labels
    events = sorted(events, key=lambda e: e["ts"])
    segments = routed_segments(events, poll_interval(events) if poll_s is None else poll_s)
    if not segments or UNKNOWN not in labels:
        return codes, labels
    candidates = (codes == labels.index(UNKNOWN)) & (status > 0)
    if not candidates.any():
        return codes, labels
    # Only the untagged rows can change: the comparisons run on them alone (the same
    # arithmetic, element by element, as on the whole columns).
    rows = np.flatnonzero(candidates)
    at, lat = ts[rows], latency_ms[rows] / 1000.0
    fits = len(labels) + len(segments) <= np.iinfo(codes.dtype).max
    work = codes.astype(codes.dtype if fits else np.int32)  # a copy
    names = list(labels)
    for seg in segments:
        if seg.version not in names:
            names.append(seg.version)
        inside = (at >= seg.start + lat) & (at + lat <= seg.end)
        work[rows[inside]] = names.index(seg.version)
    present = np.flatnonzero(np.bincount(work[work >= 0], minlength=len(names)))
    new_labels = sorted(names[i] for i in present)
    dtype = codes.dtype if len(new_labels) <= np.iinfo(codes.dtype).max else np.int32
    lut = np.full(len(names) + 1, -1, dtype=dtype)
    for i in present:
        lut[i] = new_labels.index(names[i])
    return lut[work], new_labels
