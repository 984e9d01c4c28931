"""From a sample frame (+ events, manifest) to the summary: pure, vectorised, no I/O.

The frame is normalised once into numpy arrays (``Columns``); every exact latency block comes
from one histogram pass over the rows' (phase, mode, version) cells (``reports.cells``), every
other aggregate is a ``bincount`` or a mask taken slice by slice, so tens of millions of rows
cost seconds and no run-long temporaries.

Choices worth knowing:

- times are seconds from the run's start (``manifest.started_ts``; the earliest sample if that
  is missing or later); the run ends at ``manifest.ended_ts`` or the last response;
- ``latency_ms`` blocks are over **successful** responses (``error`` null): a refused
  connection answers in microseconds and would make a failing version look fast; failures are
  counted by ``error_rate``. ``latency_corrected_ms`` (an addition) is the probe's latency
  corrected for coordinated omission, ``(ts - intended_ts) * 1000 + latency_ms``;
- a version's ``throughput_rps`` is its requests over the time it was seen answering;
- rows of requests the probe never sent (``client_saturated``: its in-flight bound was full)
  are left out of every count and reported as ``not_sent`` (an addition); so are rows of
  requests abandoned in flight when a stopped run's drain ran out (``interrupted``: their
  outcome is unknown), reported as ``interrupted`` (an addition);
- a run whose manifest was never finished (no ``ended_ts``: its recorder was killed) is
  ``complete: false`` with an ``incomplete_reason``, and its verdict gets a failing
  ``run_complete`` check: a gate must not pass a run that never ended. A run finished as
  interrupted (SIGTERM, or marked so by the service at restart) has an end: it is complete;
- ``skipped_shards`` lists sample shards left out as unreadable (``{file, reason}``);
- ``connections`` (per connection mode × version and × phase, pins, per-connection ages at
  failure) and ``disruption`` (intervals with no successful answer, run-wide and per mode)
  are additions defined in ``reports.connections``; ``reconciliation`` (the platform's own
  per-proton counts beside the callers', null without them) in ``reports.reconciliation``.
  The README lists their fields; old runs without ``conn_mode`` read as ``reused``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from reports import rollout as ro
from reports.arrays import Coded as ArrayCoded
from reports.arrays import Samples
from reports.cells import Cells, exact_block, slices
from reports.connections import (
    connections_block,
    disruption,
    mode_buckets,
    positions,
    role_table,
)
from reports.reconciliation import platform_counts, reconcile
from reports.rows import INTERRUPTED_ERROR, UNSENT_ERROR, run_complete_check
from reports.stats import MWU_MAX_PER_SIDE, Side, compare, rate
from reports.streams import StreamRows, from_values, stream_block
from reports.timeline import attribute, attribute_codes
from reports.verdict import verdict

SCHEMA = "proton-probe/summary/1"
#: Log-spaced latency histogram used by the figures only (summary numbers are exact).
HIST_LO_MS, HIST_DECADES, HIST_PER_DECADE = 1e-3, 9, 80
PLOT_BINS = 240


def _codes(series: pd.Series | None, n: int, fill: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes and labels of a string column; nulls (or a missing column) become ``fill``."""
    if series is None:
        return np.zeros(n, dtype=np.int32), [fill]
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy().astype(np.int32)
        labels = [str(c) for c in series.cat.categories]
    else:
        raw, uniques = pd.factorize(series, use_na_sentinel=True)
        codes, labels = raw.astype(np.int32), [str(u) for u in uniques]
    if n and codes.min() < 0:
        if fill not in labels:
            labels.append(fill)
        codes[codes < 0] = labels.index(fill)
    return codes, labels


@dataclass
class Columns:
    """The frame as plain arrays, sorted by send time; ``rel`` is seconds from ``t0``."""

    t0: float
    end_s: float
    rel: np.ndarray
    latency: np.ndarray
    ok: np.ndarray
    status: np.ndarray
    version: np.ndarray
    labels: list[str]
    #: Worker and source codes: a row's stream (``stream``) is the pair.
    worker: np.ndarray
    source: np.ndarray
    n_sources: int
    corrected: np.ndarray  # probe rows only, successful responses
    #: Connection mode codes into ``mode_labels`` (a missing column: all ``reused``).
    mode: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    mode_labels: list[str] = field(default_factory=lambda: ["reused"])
    #: Connection codes into ``conn_labels``, -1 where the row has no connection identity.
    conn: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    conn_labels: list[str] = field(default_factory=list)
    #: Error class codes into ``error_labels`` (successes: the code of ``""``).
    error: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    error_labels: list[str] = field(default_factory=lambda: [""])
    #: The rows that streamed (``reports.streams``), None when none did.
    streams: StreamRows | None = None

    def stream(self, rows: np.ndarray) -> np.ndarray:
        """The (worker, source) stream code of the rows in the mask ``rows``."""
        n_workers = int(self.worker.max()) + 1 if self.worker.size else 1
        dtype = np.int16 if n_workers * self.n_sources < 2**15 else np.int64
        return self.worker[rows].astype(dtype) * dtype(self.n_sources) + self.source[rows]


def _start_end(
    ts: np.ndarray, latency: np.ndarray, manifest: Mapping[str, Any]
) -> tuple[float, float]:
    """(t0, end) in epoch seconds: the manifest's start/end, widened to cover every sample."""
    started, ended = manifest.get("started_ts"), manifest.get("ended_ts")
    t0 = float(ts[0]) if ts.size else 0.0
    if isinstance(started, int | float) and math.isfinite(started):
        t0 = float(started)
    if ts.size and ts[0] < t0:
        t0 = float(ts[0])  # clock skew between workers: never negative times
    last = t0
    for k, part in enumerate(slices(ts.size)):  # no run-long temporaries
        ends = ts[part] + np.nan_to_num(latency[part]) / 1000.0
        last = float(ends.max()) if k == 0 else max(last, float(ends.max()))
    end = float(ended) if isinstance(ended, int | float) and math.isfinite(ended) else last
    if ts.size:
        end = max(end, float(ts[-1]))
    return t0, max(end, t0)


def columns(frame: pd.DataFrame, manifest: Mapping[str, Any]) -> Columns:
    """Normalise a sample frame (read_samples dtypes or plain objects) into ``Columns``."""
    n = len(frame)
    ts = frame["ts"].to_numpy(dtype=np.float64)
    order = None
    if n > 1 and np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")
        ts = ts[order]

    def col(name: str) -> pd.Series | None:
        if name not in frame.columns:
            return None
        s = frame[name]
        return s if order is None else s.iloc[order]

    latency = col("latency_ms")
    lat = np.zeros(n) if latency is None else latency.to_numpy(dtype=np.float64)
    error = col("error")
    ok = np.ones(n, dtype=bool) if error is None else error.isna().to_numpy()
    status_s = col("status")
    status = np.zeros(n, np.int16) if status_s is None else status_s.to_numpy()
    intended = col("intended_ts")
    cols = assemble(
        manifest, ts, lat, ok, status,
        version=_codes(col("version"), n, "unknown"),
        source=_codes(col("source"), n, "?"),
        worker=_codes(col("worker"), n, "?"),
        intended=None if intended is None else intended.to_numpy(dtype=np.float64),
        mode=_codes(col("conn_mode"), n, "reused"),
        conn=_codes(col("conn"), n, ""),
        error=_codes(error, n, ""),
    )  # fmt: skip
    tokens = col("tokens")
    if tokens is not None:
        ttft, itl = col("ttft_ms"), col("itl_ms")
        nan = np.full(n, np.nan)
        cols.streams = from_values(
            nan if ttft is None else ttft.to_numpy(dtype=np.float64, na_value=np.nan),
            tokens.to_numpy(dtype=np.float64, na_value=np.nan),
            nan if itl is None else itl.to_numpy(dtype=np.float64, na_value=np.nan),
        )
    return cols


Coded = tuple[np.ndarray, list[str]]


def assemble(
    manifest: Mapping[str, Any],
    ts: np.ndarray,
    lat: np.ndarray,
    ok: np.ndarray,
    status: np.ndarray,
    *,
    version: Coded,
    source: Coded,
    worker: Coded,
    intended: np.ndarray | None,
    mode: Coded,
    conn: Coded,
    error: Coded,
    own_ts: bool = False,
    corrected: np.ndarray | None = None,
) -> Columns:
    """``Columns`` from sorted numpy columns and (codes, labels) of the string columns, nulls
    already filled (``_codes``; ``conn`` may keep -1 for nulls): shared by the frame path and
    ``reports.arrays``. With ``own_ts`` the times become ``rel`` in place (the caller hands
    ``ts`` over). ``corrected``: the CO-corrected latencies, when the caller has them
    already (else computed from ``intended``)."""
    version_codes, labels = version
    source_codes, src_labels = source
    t0, end = _start_end(ts, lat, manifest)
    if corrected is None:
        corrected = np.empty(0)
    if intended is not None and "probe" in src_labels:
        probe = ok & (source_codes == src_labels.index("probe"))
        it = intended[probe]
        corrected = (ts[probe] - np.where(np.isfinite(it), it, ts[probe])) * 1000.0 + lat[probe]
    conn_codes, conn_labels = conn
    if "" in conn_labels:  # no identity: -1, never a connection of its own
        conn_codes = np.where(conn_codes == conn_labels.index(""), -1, conn_codes).astype(np.int32)
    if own_ts:
        ts -= t0
    rel = ts if own_ts else ts - t0
    return Columns(
        t0, end - t0, rel, lat, ok, status, version_codes, labels, worker[0], source_codes,
        len(src_labels), corrected,
        mode[0], mode[1], conn_codes, conn_labels, error[0], error[1],
    )  # fmt: skip


@dataclass
class Buckets:
    """Per-bucket, per-version request and error counts (rows: buckets, columns: labels)."""

    bucket_s: float
    requests: np.ndarray
    errors: np.ndarray


def bucketize(cols: Columns, bucket_s: float) -> Buckets:
    """Vectorised split per time bucket: one ``bincount`` over ``bucket * n_versions + code``
    (slice by slice, summed)."""
    nv = len(cols.labels)
    top = int(np.floor(np.max(cols.rel) / bucket_s)) + 1 if cols.rel.size else 1
    nb = int(max(math.ceil(cols.end_s / bucket_s), top, 1))
    req = np.zeros(nb * nv, dtype=np.int64)
    err = np.zeros(nb * nv, dtype=np.int64)
    for part in slices(cols.rel.size):
        key = np.floor(cols.rel[part] / bucket_s).astype(np.int64) * nv + cols.version[part]
        req += np.bincount(key, minlength=nb * nv)
        err += np.bincount(key[~cols.ok[part]], minlength=nb * nv)
    return Buckets(bucket_s, req.reshape(nb, nv), err.reshape(nb, nv))


@dataclass
class LatencyHist:
    """Log-spaced latency histogram per (plot bin, version) of successful responses."""

    bin_s: float
    edges_ms: np.ndarray
    counts: np.ndarray  # [plot bins, versions, latency bins]


def latency_hist(cols: Columns, bucket_s: float) -> LatencyHist:
    """Counts for the latency figures (percentiles over time, distributions)."""
    nv = len(cols.labels)
    bin_s = max(cols.end_s / PLOT_BINS, bucket_s)
    nl = HIST_DECADES * HIST_PER_DECADE
    edges = HIST_LO_MS * 10 ** (np.arange(nl + 1) / HIST_PER_DECADE)
    npb = int(min(PLOT_BINS, max(1, math.ceil(cols.end_s / bin_s))))
    flat = np.zeros(npb * nv * nl, dtype=np.int64)
    for part in slices(cols.rel.size):
        ok = cols.ok[part]
        lat = cols.latency[part][ok]
        with np.errstate(divide="ignore", invalid="ignore"):
            li = np.floor(np.log10(np.maximum(lat, HIST_LO_MS) / HIST_LO_MS) * HIST_PER_DECADE)
        li = np.clip(np.nan_to_num(li), 0, nl - 1).astype(np.int64)
        pi = np.clip((cols.rel[part][ok] / bin_s).astype(np.int64), 0, npb - 1)
        key = (pi * nv + cols.version[part][ok]) * nl + li
        flat += np.bincount(key, minlength=npb * nv * nl)
    return LatencyHist(bin_s, edges, flat.reshape(npb, nv, nl))


@dataclass
class Analysis:
    """Everything a report needs: the summary plus the aggregates the figures are drawn from."""

    summary: dict[str, Any]
    labels: list[str]
    buckets: Buckets
    hist: LatencyHist | None = None
    notes: list[str] = field(default_factory=list)
    #: Requests per (connection mode, bucket, version), and the modes' labels.
    mode_requests: np.ndarray | None = None
    mode_labels: list[str] = field(default_factory=list)
    #: The streamed rows' send times (s from the start), version codes and TTFT (ms; NaN
    #: without a first token), for the TTFT figures; None without streams.
    ttft_points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    #: The sequential decision's looks: (seconds from the start, guardrail rows), for a figure.
    sequential_history: list[tuple[float, list[dict[str, Any]]]] = field(default_factory=list)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def _counts(series: pd.Series | None) -> dict[str, int]:
    if series is None:
        return {}
    counts = series.value_counts(dropna=True)
    return {str(k): int(v) for k, v in counts.items() if v > 0}


def _status_counts(status: np.ndarray) -> dict[str, int]:
    if status.size == 0:
        return {}
    counts = np.zeros(1000, dtype=np.int64)
    for part in slices(status.size):
        counts += np.bincount(np.clip(status[part].astype(np.int64), 0, 999), minlength=1000)
    return {str(code): int(n) for code, n in enumerate(counts) if n}


def _phase_codes(
    rel: np.ndarray, fc: float | None, lb: float | None
) -> tuple[np.ndarray | None, int]:
    """(codes, count) of the phases of ``rollout.phase_bounds`` per row, as ``_phase_masks``
    splits them (same comparisons on send times); None and 1 without a switch."""
    if fc is None:
        return None, 1
    codes = np.full(rel.size, 2, dtype=np.int8)
    if lb is not None and lb >= fc:  # else an atomic switch: empty mixed phase at fc
        codes[~(rel > lb)] = 1
    codes[rel < fc] = 0
    return codes, 3


def _cells(cols: Columns, fc: float | None, lb: float | None) -> Cells:
    """The rows' cells by (phase, connection mode, version): every block of the summary."""
    phase, n_phases = _phase_codes(cols.rel, fc, lb)
    parts = [
        (phase, n_phases),
        (cols.mode if cols.mode.size else None, len(cols.mode_labels)),
        (cols.version, len(cols.labels)),
    ]
    return Cells(cols.latency, cols.ok, parts)


def _first_last(cols: Columns) -> tuple[np.ndarray, np.ndarray]:
    """First and last send time per version code (NaN when never seen)."""
    nv = len(cols.labels)
    first = np.full(nv, np.nan)
    last = np.full(nv, np.nan)
    if not cols.rel.size:
        return first, last
    if nv > 64 or np.isnan(cols.rel[-1]):  # many versions, or NaN times: groupby's min/max
        grouped = pd.Series(cols.rel).groupby(cols.version).agg(["min", "max"])
        first[grouped.index.to_numpy()] = grouped["min"].to_numpy()
        last[grouped.index.to_numpy()] = grouped["max"].to_numpy()
        return first, last
    # Times are sorted: a version's first and last rows hold its min and max.
    n = cols.rel.size
    for code in range(nv):
        rows = cols.version == code
        i = int(rows.argmax())
        if rows[i]:
            first[code] = cols.rel[i]
            last[code] = cols.rel[n - 1 - int(rows[::-1].argmax())]
    return first, last


def _versions(
    cols: Columns,
    cells: Cells,
    roles: tuple[str | None, str | None],
    first: np.ndarray,
    last: np.ndarray,
) -> dict[str, dict[str, Any]]:
    total = cols.rel.size
    req = cells.requests_by(2, None, None, None)
    out: dict[str, dict[str, Any]] = {}
    for code in np.argsort(first, kind="stable"):
        if req[code] == 0:
            continue
        label = cols.labels[code]
        block = cells.stats(None, None, int(code))
        span = last[code] - first[code]
        out[label] = {
            "role": ro.role_of(label, *roles),
            "requests": block["requests"],
            "errors": block["errors"],
            "error_rate": block["error_rate"],
            "share": rate(block["requests"], total),
            "first_seen_s": _r(first[code]),
            "last_seen_s": _r(last[code]),
            "throughput_rps": _r(block["requests"] / span, 3) if span > 0 else None,
            "latency_ms": block["latency_ms"],
            "stream": _stream(cols, code=int(code)),
        }
    return out


def _stream(
    cols: Columns, *, code: int | None = None, phase: tuple[np.ndarray | None, int] | None = None
) -> dict[str, Any] | None:
    """The ``stream`` block of the run, of one version ``code``, or of the phase ``(codes, k)``
    (``_phase_codes`` of the streamed rows)."""
    rows = cols.streams
    if rows is None:
        return None
    keep = None
    if code is not None:
        keep = cols.version[rows.idx] == code
    elif phase is not None and phase[0] is not None:
        keep = phase[0] == phase[1]
    return stream_block(rows, keep, cols.latency, cols.error, cols.error_labels)


def _phases(
    cols: Columns, cells: Cells, fc: float | None, lb: float | None
) -> list[dict[str, Any]]:
    phases = []
    streamed = None if cols.streams is None else _phase_codes(cols.rel[cols.streams.idx], fc, lb)
    for k, (name, start, end) in enumerate(ro.phase_bounds(0.0, cols.end_s, fc, lb)):
        block = cells.stats(k, None, None)
        n = block["requests"]
        counts = cells.requests_by(2, k, None, None)
        share = {cols.labels[i]: counts[i] / n for i in np.flatnonzero(counts)} if n else {}
        phase = {"name": name, "start_s": _r(start), "end_s": _r(end), **block, "share": share}
        phase["stream"] = None if streamed is None else _stream(cols, phase=(streamed[0], k))
        phases.append(phase)
    return phases


def _role_code(labels: list[str], label: str | None) -> int | None:
    return labels.index(label) if label is not None and label in labels else None


def _rollout(
    cols: Columns,
    buckets: Buckets,
    events: Sequence[Mapping[str, Any]],
    roles: tuple[str | None, str | None],
    switch: tuple[float | None, float | None],
    gap: float | None,
    flips: int | None,
) -> dict[str, Any] | None:
    baseline, candidate = roles
    bc, cc = _role_code(cols.labels, baseline), _role_code(cols.labels, candidate)
    platform = ro.platform_block(events, cols.t0)
    requested = ro.requested_at_s(events, cols.t0)
    fc, lb = switch
    if fc is None and platform is None and requested is None:
        return None
    zeros = np.zeros(buckets.requests.shape[0], dtype=np.int64)
    base_b = buckets.requests[:, bc] if bc is not None else zeros
    cand_b = buckets.requests[:, cc] if cc is not None else zeros
    statuses = platform["statuses"] if platform else []
    pwin = (statuses[0]["at_s"], statuses[-1]["at_s"]) if statuses else None
    window = ro.switch_window(fc, lb, buckets.bucket_s, pwin)
    errs = n_win = None
    if window is not None:
        mask = (cols.rel >= window[0]) & (cols.rel <= window[1])
        n_win = int(np.count_nonzero(mask))
        errs = int(n_win - np.count_nonzero(cols.ok[mask]))
    return {
        "detected": fc is not None,
        "from_version": baseline,
        "to_version": candidate,
        "outcome": ro.outcome(platform, fc is not None),
        "requested_at_s": requested,
        "first_candidate_s": _r(fc),
        "last_baseline_s": _r(lb),
        "half_switch_s": _r(ro.half_switch_s(base_b, cand_b, buckets.bucket_s)),
        "cutover_s": _r(max(0.0, lb - fc)) if fc is not None and lb is not None else None,
        "mixed_window_s": _r(ro.mixed_window_s(base_b, cand_b, buckets.bucket_s))
        if fc is not None
        else None,
        "flips": flips,
        "errors_during_switch": errs,
        "error_rate_during_switch": rate(errs or 0, n_win) if n_win is not None else None,
        "switch_window_s": None if window is None else [_r(window[0]), _r(window[1])],
        "longest_gap_s": gap,
        "platform": platform,
    }


def _flips(cols: Columns, roles: tuple[str | None, str | None], fc: float | None) -> int | None:
    """``rollout.count_flips`` of the baseline and candidate answers (None without both)."""
    bc, cc = _role_code(cols.labels, roles[0]), _role_code(cols.labels, roles[1])
    if bc is None or cc is None or fc is None:
        return None
    n_workers = int(cols.worker.max()) + 1 if cols.worker.size else 1

    def parts() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for part in slices(cols.rel.size):  # slice by slice: no run-long masks
            version = cols.version[part]
            both = (version == bc) | (version == cc)
            stream = cols.worker[part][both].astype(np.int64) * cols.n_sources
            yield stream + cols.source[part][both], version[both] == cc

    return ro.count_flips_in(parts(), n_workers * cols.n_sources)


def _comparison(
    cols: Columns, versions: Mapping[str, Any], roles: tuple[str | None, str | None]
) -> dict[str, Any] | None:
    baseline, candidate = roles
    if baseline is None or candidate is None:
        return None
    if baseline not in versions or candidate not in versions:
        return None
    sides = []
    lats = []
    sizes = []
    for label in (baseline, candidate):
        block = versions[label]
        code = cols.labels.index(label)
        rows = (cols.version == code) & cols.ok
        n = int(np.count_nonzero(rows))
        # The test's stride subsample (stats.stride_subsample) picked without a copy of
        # every latency of the version.
        step = math.ceil(n / MWU_MAX_PER_SIDE) if n > MWU_MAX_PER_SIDE else 1
        lats.append(
            cols.latency[positions(rows, np.arange(0, n, step))] if step > 1 else cols.latency[rows]
        )
        sizes.append(n)
        sides.append(
            Side(
                block["requests"],
                block["errors"],
                block["latency_ms"]["p50"],
                block["latency_ms"]["p99"],
                n,
            )
        )
    return compare(baseline, candidate, sides[0], sides[1], lats[0], lats[1], (sizes[0], sizes[1]))


#: Rows of the baseline and candidate the sequential replay reads at most (a stride beyond).
SEQUENTIAL_MAX_ROWS = 1_000_000


def _dense_ttft(cols: Columns) -> np.ndarray | None:
    """Every row's TTFT in ms (NaN where the answer did not stream), or None without streams:
    the sequential decision's ``ttft_p50_ratio`` guardrail reads it row by row."""
    streams = cols.streams
    if streams is None or not len(streams):
        return None
    dense = np.full(cols.rel.size, np.nan)
    dense[streams.idx] = streams.ttft
    return dense


def _sequential(
    summary: dict[str, Any],
    cols: Columns,
    roles: tuple[str | None, str | None],
    slos: Sequence[str] | None,
) -> list[tuple[float, list[dict[str, Any]]]]:
    """``comparison.sequential`` (``reports.sequential``): the guardrails' first decision,
    replayed over the samples in send order, and its looks (for the figure). A candidate the
    control plane named that never answered gets a comparison of its own when the platform
    reported the switch (no evidence)."""
    from reports import sequential as seq

    comparison = summary.get("comparison")
    baseline, candidate = roles
    platform = (summary.get("rollout") or {}).get("platform") or {}
    switched = platform.get("switched_at_s")
    history: list[tuple[float, list[dict[str, Any]]]] = []
    if baseline is None or candidate is None or baseline not in cols.labels:
        return history
    if comparison is None:
        late = None if switched is None else switched + seq.NO_EVIDENCE_GRACE_S
        after = 0 if late is None else int(np.count_nonzero(cols.rel > late))
        if candidate in cols.labels or after < seq.NO_EVIDENCE_REQUESTS:
            return history
        comparison = summary["comparison"] = _unseen_candidate(baseline, candidate)
    codes = [cols.labels.index(baseline)]
    codes += [cols.labels.index(candidate)] if candidate in cols.labels else []
    rows = np.flatnonzero(np.isin(cols.version, codes))
    # A bound on the replay's memory (~80 B a row): beyond SEQUENTIAL_MAX_ROWS, a time-ordered
    # 1-in-k stride, which keeps the sequences valid (fewer samples: wider bounds, later
    # decisions); the decision of a big run is normally reached long before its end.
    step = math.ceil(rows.size / SEQUENTIAL_MAX_ROWS) if rows.size > SEQUENTIAL_MAX_ROWS else 1
    rows = rows[::step]
    code = (cols.version[rows] != codes[0]).astype(np.int8)
    ttft = _dense_ttft(cols)
    block = seq.decide(
        cols.rel[rows], code, cols.latency[rows], cols.ok[rows],
        ttft=None if ttft is None else ttft[rows], start=0.0, end=cols.end_s,
        switched_at_s=switched, settings=seq.settings_from_slos(slos), history=history,
    )  # fmt: skip
    block["stride"] = step
    comparison["sequential"] = block
    return history


def _unseen_candidate(baseline: str, candidate: str) -> dict[str, Any]:
    """A comparison block for a candidate that never answered: nothing fixed-horizon to say."""
    return {
        "baseline": baseline, "candidate": candidate, "p50_delta_ms": None,
        "p99_delta_ms": None, "latency_p_value": None, "error_rate_delta": None,
        "error_p_value": None, "judgement": "inconclusive",
    }  # fmt: skip


def attribute_timeline(frame: pd.DataFrame, events: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Let the platform timeline name the version of untagged samples, when it can."""
    if not events or "version" not in frame.columns:
        return frame
    return attribute(frame, list(events))


def _switch_times(
    cols: Columns, roles: tuple[str | None, str | None], first: np.ndarray, last: np.ndarray
) -> tuple[float | None, float | None]:
    """(first candidate, last baseline) send times, unrounded: phase masks compare raw times
    (a bound rounded up would put the first candidate row into "before")."""
    bc, cc = _role_code(cols.labels, roles[0]), _role_code(cols.labels, roles[1])
    fc = None if cc is None or np.isnan(first[cc]) else float(first[cc])
    lb = None if bc is None or np.isnan(last[bc]) else float(last[bc])
    return fc, lb


def _run_block(cols: Columns, cells: Cells, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The run-wide fields of the summary, from ``schema`` to ``latency_ms``."""
    total = cells.stats(None, None, None)
    n, error_rate = total["requests"], total["error_rate"]
    return {
        "schema": SCHEMA,
        "run_id": manifest.get("run_id"),
        "kind": manifest.get("kind"),
        "target": manifest.get("target"),
        "started_at": _iso(cols.t0),
        "ended_at": _iso(cols.t0 + cols.end_s),
        "duration_s": _r(cols.end_s),
        "requests": n,
        "ok": n - total["errors"],
        "errors": total["errors"],
        "error_rate": error_rate,
        "availability": None if error_rate is None else 1.0 - error_rate,
        "throughput_rps": _r(n / cols.end_s, 3) if cols.end_s > 0 else None,
        "latency_ms": total["latency_ms"],
    }


def _split_class(frame: pd.DataFrame, error: str) -> tuple[pd.DataFrame, int]:
    if "error" not in frame.columns or not len(frame):
        return frame, 0
    rows = (frame["error"] == error).to_numpy(dtype=bool, na_value=False)
    count = int(rows.sum())
    if not count:
        return frame, 0
    return frame.loc[~rows].reset_index(drop=True), count


def split_unsent(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows of requests that were sent, and how many were not (``client_saturated``).

    Such a row says the *client* could not keep up with its own schedule; counting it as a
    request the target failed would blame the target for the prober's limits.
    """
    return _split_class(frame, UNSENT_ERROR)


def split_interrupted(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows of requests with an outcome, and how many were abandoned (``interrupted``):
    the run stopped before they were answered, so they are neither a success nor a failure
    of the target."""
    return _split_class(frame, INTERRUPTED_ERROR)


def completeness(manifest: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(complete, why not): a run is complete once its manifest records an end."""
    ended = manifest.get("ended_ts")
    if isinstance(ended, int | float) and math.isfinite(ended):
        return True, None
    return False, (
        "the run never finished: manifest.json has no end time (its recorder was killed or"
        " is still running); the samples cover only the time until its last flush"
    )


def analyse(
    frame: pd.DataFrame,
    events: Sequence[Mapping[str, Any]],
    manifest: Mapping[str, Any],
    *,
    slos: Sequence[str] | None,
    bucket_s: float,
    figures: bool = False,
    skipped_shards: Sequence[Mapping[str, str]] = (),
) -> Analysis:
    """The summary of a run and the aggregates its figures are drawn from.

    ``skipped_shards``: shards the reader left out as unreadable, reported as they are.
    """
    _check_bucket(bucket_s)
    frame, not_sent = split_unsent(frame)
    frame, interrupted = split_interrupted(frame)
    frame = attribute_timeline(frame, events)
    cols = columns(frame, manifest)
    counts = (
        _counts(frame["error"] if "error" in frame.columns else None),
        _counts(frame["source"] if "source" in frame.columns else None),
    )
    return analyse_columns(
        cols, events, manifest, counts=counts, lost=(not_sent, interrupted), slos=slos,
        bucket_s=bucket_s, figures=figures, skipped_shards=skipped_shards,
    )  # fmt: skip


def _check_bucket(bucket_s: float) -> None:
    if not bucket_s or bucket_s <= 0:
        raise ValueError(f"bucket_s must be a positive number of seconds, got {bucket_s!r}")


def analyse_samples(
    samples: Samples,
    events: Sequence[Mapping[str, Any]],
    manifest: Mapping[str, Any],
    *,
    slos: Sequence[str] | None,
    bucket_s: float,
    figures: bool = False,
    skipped_shards: Sequence[Mapping[str, str]] = (),
) -> Analysis:
    """``analyse`` on the numpy columns of ``reports.arrays.read_arrays`` (the report's fast
    path; the rows not sent or interrupted already left out and counted in ``samples.lost``):
    the same attribution and aggregates, without a pandas frame of rows. ``samples`` is
    handed over: its ``ts`` becomes ``Columns.rel`` in place (no second copy of the times),
    and its string columns are dropped once ``Columns`` has its own filled codes."""
    _check_bucket(bucket_s)
    strings = samples.strings
    version = strings["version"]
    v_codes, v_labels = version.codes, version.labels
    if events:
        v_codes, v_labels = attribute_codes(
            samples.ts, samples.latency, samples.status, v_codes, v_labels, list(events)
        )
    cols = assemble(
        manifest, samples.ts, samples.latency, strings["error"].codes < 0, samples.status,
        version=ArrayCoded(v_codes, v_labels).filled("unknown"),
        source=strings["source"].filled("?"),
        worker=strings["worker"].filled("?"),
        intended=None,
        mode=strings["conn_mode"].filled("reused"),
        conn=(strings["conn"].codes, strings["conn"].labels),  # nulls stay -1
        error=strings["error"].filled(""),
        own_ts=True,
        corrected=samples.corrected,
    )  # fmt: skip
    cols.streams = samples.streams
    counts = (strings["error"].count(), strings["source"].count())
    # The codes as read (nulls -1, before attribution) are copies of what ``cols`` holds now.
    samples.strings = {}
    del strings, version, v_codes
    return analyse_columns(
        cols, events, manifest, counts=counts, lost=samples.lost, slos=slos,
        bucket_s=bucket_s, figures=figures, skipped_shards=skipped_shards,
    )  # fmt: skip


def analyse_columns(
    cols: Columns,
    events: Sequence[Mapping[str, Any]],
    manifest: Mapping[str, Any],
    *,
    counts: tuple[dict[str, int], dict[str, int]],
    lost: tuple[int, int],
    slos: Sequence[str] | None,
    bucket_s: float,
    figures: bool,
    skipped_shards: Sequence[Mapping[str, str]],
) -> Analysis:
    """The part of ``analyse`` after the rows are columns: ``counts`` are the error classes
    and sources of the rows kept, ``lost`` the (not sent, interrupted) rows left out."""
    # Aggregates that need no other result run in a second thread beside the rest (numpy
    # releases the GIL in each slice's work: on two cores they overlap).
    # In order of need: flips, connections and disruption are read by the summary, the
    # rest only by the figures and at the end. The passes that build run-long arrays (the
    # longest gap's arrivals, the cells' keys) stay on this thread, one after the other.
    with ThreadPoolExecutor(1, thread_name_prefix="report-side") as side:
        buckets = bucketize(cols, bucket_s)
        not_sent, interrupted = lost
        first, last = _first_last(cols)
        order = [cols.labels[c] for c in np.argsort(first, kind="stable") if not np.isnan(first[c])]
        baseline, candidate, how = ro.resolve_roles(order, events)
        roles = (baseline, candidate)
        fc, lb = _switch_times(cols, roles, first, last)
        ref = _switch_ref(events, cols.t0, fc)
        flips_found = side.submit(_flips, cols, roles, fc)
        table_found = side.submit(
            role_table, cols.rel, cols.ok, cols.version, cols.labels, cols.conn, cols.mode,
            roles, ref[0],
        )  # fmt: skip
        broken_found = side.submit(disruption, cols.rel, cols.ok, cols.end_s)
        status_found = side.submit(_status_counts, cols.status)
        hist_found = side.submit(latency_hist, cols, bucket_s) if figures else None
        per_mode_found = side.submit(
            mode_buckets, cols.rel, cols.version, len(cols.labels), cols.mode,
            len(cols.mode_labels), buckets.requests.shape[0], bucket_s,
        )  # fmt: skip
        gap = _r(_longest_gap(cols))
        cells = _cells(cols, fc, lb)
        versions = _versions(cols, cells, roles, first, last)
        summary = _run_block(cols, cells, manifest)
        summary.update(
            versions=versions,
            rollout=_rollout(cols, buckets, events, roles, (fc, lb), gap, flips_found.result()),
            phases=_phases(cols, cells, fc, lb),
            comparison=_comparison(cols, versions, roles),
            verdict=None,
            capacity=None,
            # additions to the contract
            status_counts=status_found.result(),
            error_classes=counts[0],
            sources=counts[1],
            latency_corrected_ms=exact_block(cols.corrected) if cols.corrected.size else None,
            stream=_stream(cols),
            not_sent=not_sent,
            interrupted=interrupted,
            longest_gap_s=gap,
            bucket_s=bucket_s,
            roles_from=how,
            slos=list(slos or []),
        )
        complete, reason = completeness(manifest)
        summary.update(
            complete=complete,
            incomplete_reason=reason,
            skipped_shards=[dict(item) for item in skipped_shards],
        )
        _connections(
            summary, cols, cells, events, roles, (fc, lb), ref, interrupted,
            (table_found, broken_found),
        )  # fmt: skip
        history = _sequential(summary, cols, roles, slos)
        summary["verdict"] = verdict(summary, slos)
        if manifest.get("kind") == "capacity":
            _capacity(summary, cols, manifest, slos)
        if reason is not None:  # after the capacity verdict too, which replaces the block
            block = summary["verdict"]
            block["checks"] = [*block["checks"], run_complete_check(reason)]
            block["result"] = "fail"
        hist = hist_found.result() if hist_found is not None else None
        per_mode = per_mode_found.result()
    points = None
    if cols.streams is not None:
        idx = cols.streams.idx
        points = (cols.rel[idx], cols.version[idx], cols.streams.ttft)
    return Analysis(
        summary, cols.labels, buckets, hist, mode_requests=per_mode,
        mode_labels=cols.mode_labels, ttft_points=points,
        sequential_history=history,
    )  # fmt: skip


def _longest_gap(cols: Columns) -> float | None:
    """``rollout.longest_gap_s`` of the successful responses' arrival times (send time plus
    latency), built slice by slice into one array sorted in place."""
    arrivals = np.empty(int(np.count_nonzero(cols.ok)))
    filled = 0
    for part in slices(cols.rel.size):
        ok = cols.ok[part]
        values = cols.rel[part][ok] + cols.latency[part][ok] / 1000.0
        arrivals[filled : filled + values.size] = values
        filled += values.size
    return ro.longest_gap_s(arrivals, overwrite=True)


def _connections(
    summary: dict[str, Any],
    cols: Columns,
    cells: Cells,
    events: Sequence[Mapping[str, Any]],
    roles: tuple[str | None, str | None],
    switch: tuple[float | None, float | None],
    ref: tuple[float | None, str | None],
    interrupted: int,
    side: tuple[Future[pd.DataFrame], Future[dict[str, Any]]],
) -> None:
    """The additions of connection modes: ``connections``, ``disruption``, ``reconciliation``;
    ``ref``: the switch reference (``_switch_ref``); ``side``: the connections'
    ``role_table`` and the run's ``disruption``, computed beside."""
    fc, lb = switch
    phases = [b[0] for b in ro.phase_bounds(0.0, cols.end_s, fc, lb)]
    summary["connections"] = connections_block(
        rel=cols.rel, cells=cells, ok=cols.ok, version=cols.version, labels=cols.labels,
        mode=cols.mode, mode_labels=cols.mode_labels, conn=cols.conn,
        conn_labels=cols.conn_labels, roles=roles, switch=ref, phases=phases,
        end_s=cols.end_s, table=side[0],
    )  # fmt: skip
    block = side[1].result()
    by_mode = summary["connections"]["by_mode"]
    block["by_mode"] = {
        m: {k: v for k, v in b["disruption"].items() if k != "intervals"}
        for m, b in by_mode.items()
    }
    summary["disruption"] = block
    # None without the platform's counts: the epoch times (a run-long array) only if needed.
    summary["reconciliation"] = reconcile(
        events, t0=cols.t0, ts=cols.rel + cols.t0, ok=cols.ok, status=cols.status,
        version=cols.version, labels=cols.labels, error=cols.error,
        error_labels=cols.error_labels, interrupted=interrupted,
    ) if platform_counts(events) else None  # fmt: skip


def _switch_ref(
    events: Sequence[Mapping[str, Any]], t0: float, fc: float | None
) -> tuple[float | None, str | None]:
    """The connections' switch reference: the platform's ``switchedAt``, else the first
    candidate answer (``reports.connections``)."""
    platform = ro.platform_block(events, t0) or {}
    if platform.get("switched_at_s") is not None:
        return float(platform["switched_at_s"]), "switchedAt"
    if fc is not None:
        return fc, "first_candidate"
    return None, None


def _capacity(
    summary: dict[str, Any], cols: Columns, manifest: Mapping[str, Any], slos: Sequence[str] | None
) -> None:
    """A capacity run: the ``capacity`` block, and its verdict (per step; reports.capacity)."""
    from reports.capacity import analyse_capacity

    found = analyse_capacity(cols.rel + cols.t0, cols.latency, cols.ok, manifest, slos)
    if found is not None:
        summary["capacity"], summary["verdict"] = found


def build_summary(
    frame: pd.DataFrame,
    events: Sequence[Mapping[str, Any]],
    manifest: Mapping[str, Any],
    *,
    slos: Sequence[str] | None,
    bucket_s: float,
) -> dict[str, Any]:
    """The summary.json dict of a run (schema ``proton-probe/summary/1``); pure, no I/O."""
    return analyse(frame, events, manifest, slos=slos, bucket_s=bucket_s).summary
