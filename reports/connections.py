"""What callers on kept-alive and on new connections saw: pure, vectorised, no I/O.

Inputs are plain arrays in send order (``rel`` seconds from the run's start, ``ok``, version
codes, connection-mode codes, connection codes with -1 for "no identity"). Definitions:

- **connection mode** — the sample's ``conn_mode`` (``reused``: a keep-alive pool, ``new``:
  a connection per request); runs recorded before the column existed, and Locust runs,
  read as ``reused``;
- **switch reference** — the platform's ``switchedAt`` when the control plane was watched,
  else the first candidate answer;
- **pin** — of one connection: how long after the switch reference it still reached the
  baseline (the send time of its last baseline answer minus the reference; positive only).
  A **pinned caller** is a connection with a positive pin; ``longest_pin_s`` is the largest;
- **age at failure** — of one connection: the send time of its first failed request minus
  the send time of its first request (a connection that failed on its first request has age
  0; a failed connect has no identity and no age);
- **disruption** (as OpenShift's disruption tests count it: time in which callers got no
  successful answer) — a run of consecutive failed requests, in send order, is one interval,
  from the first failure's send time to the send time of the next successful request (the
  run's end when none followed): its length is the time no request sent succeeded, to the
  probe's resolution (one interval between requests). ``count``, ``total_s`` (the SLO key
  ``disruption_s``), ``longest_s``, and the intervals (the first ``MAX_INTERVALS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pandas as pd

from reports.cells import CHUNK, Cells, slices
from reports.stats import rate

#: Intervals and connections listed in full in the summary (counts cover them all).
MAX_INTERVALS = 100
MAX_CONNECTIONS = 200


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def positions(mask: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The row indices of the ``ranks``-th (0-based, ascending) True values of ``mask``:
    ``np.flatnonzero(mask)[ranks]`` without an index of every True row."""
    out = np.empty(ranks.size, dtype=np.int64)
    if not ranks.size:
        return out
    bounds = range(0, mask.size, CHUNK)
    before = np.cumsum([0] + [int(np.count_nonzero(mask[k : k + CHUNK])) for k in bounds])
    chunk_of = np.searchsorted(before, ranks, side="right") - 1
    for c in np.unique(chunk_of):
        at = chunk_of == c
        start = int(c) * CHUNK
        rows = np.flatnonzero(mask[start : start + CHUNK])
        out[at] = rows[ranks[at] - before[c]] + start
    return out


def disruption(
    rel: np.ndarray, ok: np.ndarray, end_s: float, mask: np.ndarray | None = None
) -> dict[str, Any]:
    """The disruption intervals of rows sorted by send time (module docstring), of the rows
    in ``mask`` when given (without gathering their times)."""
    rel = np.asarray(rel, dtype=np.float64)
    fail = ~np.asarray(ok if mask is None else ok[mask], dtype=bool)
    n = fail.size
    empty: dict[str, Any] = {"count": 0, "total_s": 0.0, "longest_s": 0.0, "intervals": []}
    if n == 0:
        return {**empty, "total_s": None, "longest_s": None}
    if not fail.any():
        return empty
    starts = np.flatnonzero(fail & np.concatenate([[True], ~fail[:-1]]))
    # The first success after each run of failures: the successes that follow a failure,
    # and n ("no success followed") when the last run lasts to the end.
    end_idx = np.flatnonzero(~fail & np.concatenate([[False], fail[:-1]]))
    closed = end_idx.size
    if mask is None:
        start_s, end_s_rows = rel[starts], rel[end_idx]
        last = float(rel[-1])
    else:
        start_s = rel[positions(mask, starts)]
        end_s_rows = rel[positions(mask, end_idx)]
        last = float(rel[positions(mask, np.array([n - 1]))[0]])
    if closed < starts.size:
        end_idx = np.append(end_idx, n)
        end_s_rows = np.append(end_s_rows, max(end_s, last))
    ends = end_s_rows
    durations = np.maximum(ends - start_s, 0.0)
    failures = end_idx - starts
    intervals = [
        {
            "start_s": _r(s),
            "end_s": _r(e),
            "duration_s": _r(d),
            "failures": int(f),
        }
        for s, e, d, f in zip(
            start_s[:MAX_INTERVALS], ends[:MAX_INTERVALS], durations, failures, strict=False
        )
    ]
    return {
        "count": int(starts.size),
        "total_s": _r(durations.sum()),
        "longest_s": _r(durations.max()),
        "intervals": intervals,
    }


def _per_version(cells: Cells, labels: Sequence[str], mode: int) -> dict[str, dict[str, Any]]:
    """Each version's block among one mode's rows, with its share of them."""
    counts = cells.requests_by(2, None, mode, None)
    total = int(counts.sum())
    out = {}
    for code in np.flatnonzero(counts):
        block = cells.stats(None, mode, int(code))
        out[labels[int(code)]] = {**block, "share": rate(block["requests"], total)}
    return out


def connection_table(
    rel: np.ndarray,
    ok: np.ndarray,
    conn: np.ndarray,
    mode: np.ndarray,
    is_baseline: np.ndarray,
    is_candidate: np.ndarray,
    switch_s: float | None,
) -> pd.DataFrame:
    """One row per connection with an identity: first_s, last_s, requests, errors, mode (a
    code), pin_s (NaN when not pinned), failed_age_s (NaN when it never failed), both (it
    reached the baseline and the candidate), in order of first appearance. Rows are in send
    order, so a connection's first and last rows hold its min and max time. Aggregated slice
    by slice with ``ufunc.at`` into arrays of one entry per connection (a run of ``new``
    connections has as many connections as requests), no frame of rows."""
    columns = [
        "first_s", "last_s", "requests", "errors", "mode", "both", "pin_s", "failed_age_s",
    ]  # fmt: skip
    k = int(conn.max()) + 1 if conn.size else 0
    if k <= 0:
        return pd.DataFrame(columns=columns)
    first_row = np.full(k, np.iinfo(np.int64).max)
    last_row = np.full(k, -1, dtype=np.int64)
    requests = np.zeros(k, dtype=np.int64)
    errors = np.zeros(k, dtype=np.int64)
    base = np.zeros(k, dtype=np.uint8)
    cand = np.zeros(k, dtype=np.uint8)
    pin = np.full(k, -np.inf)
    failed = np.full(k, np.inf)
    for part in slices(conn.size):
        start = part.start
        has = conn[part] >= 0
        if not has.any():
            continue
        codes = conn[part][has]
        rows = np.flatnonzero(has) + start
        at = rel[part][has]
        np.minimum.at(first_row, codes, rows)
        np.maximum.at(last_row, codes, rows)
        np.add.at(requests, codes, 1)
        fail = ~ok[part][has]
        np.add.at(errors, codes[fail], 1)
        np.minimum.at(failed, codes[fail], at[fail])
        on_base = is_baseline[part][has]
        np.maximum.at(base, codes[on_base], 1)
        np.maximum.at(cand, codes[is_candidate[part][has]], 1)
        if switch_s is not None:
            late = on_base & (at > switch_s)
            np.maximum.at(pin, codes[late], at[late])
    present = np.flatnonzero(requests)
    order = present[np.argsort(first_row[present], kind="stable")]
    first_s = rel[first_row[order]]
    table = pd.DataFrame(
        {
            "first_s": first_s,
            "last_s": rel[last_row[order]],
            "requests": requests[order],
            "errors": errors[order],
            "mode": mode[first_row[order]],
            "both": (base[order] & cand[order]).astype(bool),
            "pin_s": np.where(np.isfinite(pin[order]), pin[order] - (switch_s or 0.0), np.nan),
            "failed_age_s": np.where(np.isfinite(failed[order]), failed[order] - first_s, np.nan),
        },
        index=pd.Index(order.astype(conn.dtype), name="conn"),
    )
    return table


def role_table(
    rel: np.ndarray,
    ok: np.ndarray,
    version: np.ndarray,
    labels: list[str],
    conn: np.ndarray,
    mode: np.ndarray,
    roles: tuple[str | None, str | None],
    switch_s: float | None,
) -> pd.DataFrame:
    """``connection_table`` with the baseline and candidate of ``roles``."""
    none = np.zeros(rel.size, dtype=bool)
    is_base = version == labels.index(roles[0]) if roles[0] in labels else none
    is_cand = version == labels.index(roles[1]) if roles[1] in labels else none
    return connection_table(rel, ok, conn, mode, is_base, is_cand, switch_s)


def _mode_block(table: pd.DataFrame, code: int) -> tuple[int, int, float | None, int]:
    """(connections, pinned, longest pin, saw both) of one mode's connections."""
    own = table[table["mode"] == code]
    pinned = own["pin_s"].dropna()
    longest = _r(pinned.max()) if len(pinned) else None
    return len(own), len(pinned), longest, int(own["both"].astype(bool).sum())


def _listed(
    table: pd.DataFrame,
    mode_labels: Sequence[str],
    conn_labels: Sequence[str],
    labels: list[str],
    conn: np.ndarray,
    version: np.ndarray,
) -> list[dict[str, Any]]:
    """The pinned and failed connections, longest pin first, at most MAX_CONNECTIONS, each
    with the versions it reached in the order it first reached them."""
    chosen = table[table["pin_s"].notna() | table["failed_age_s"].notna()]
    chosen = chosen.sort_values(["pin_s", "failed_age_s"], ascending=[False, True])
    chosen = chosen.head(MAX_CONNECTIONS)
    seen_by = _versions_reached(chosen.index.to_numpy(), conn, version, len(labels))
    rows = []
    for (conn_code, row), reached in zip(chosen.iterrows(), seen_by, strict=True):
        seen = [labels[v] for v in reached]
        rows.append(
            {
                "conn": conn_labels[int(conn_code)],  # type: ignore[call-overload]
                "mode": mode_labels[int(row["mode"])],
                "first_s": _r(row["first_s"]),
                "last_s": _r(row["last_s"]),
                "requests": int(row["requests"]),
                "errors": int(row["errors"]),
                "versions": seen,
                "pinned_s": None if pd.isna(row["pin_s"]) else _r(row["pin_s"]),
                "failed_age_s": None if pd.isna(row["failed_age_s"]) else _r(row["failed_age_s"]),
            }
        )
    return rows


def _versions_reached(
    chosen: np.ndarray, conn: np.ndarray, version: np.ndarray, nv: int
) -> list[list[int]]:
    """For each connection code of ``chosen``, the version codes its rows reached, in the
    order it first reached them: slice by slice, through each (connection, version) pair's
    first row, without a mask or a frame of every row."""
    slot = np.full(int(max(conn.max(initial=-1), chosen.max(initial=-1))) + 2, -1, np.int64)
    slot[chosen] = np.arange(chosen.size)  # conn -1 (no identity) reads the last entry: -1
    first = np.full(chosen.size * nv, -1, dtype=np.int64)
    for part in slices(conn.size):
        which = slot[conn[part]]
        mine = which >= 0
        if not mine.any():
            continue
        key = which[mine] * nv + version[part][mine]
        new = np.flatnonzero((np.bincount(key, minlength=first.size) > 0) & (first < 0))
        if new.size:
            rows = np.flatnonzero(mine) + part.start
            for pair in new:
                first[pair] = rows[int(np.argmax(key == pair))]
    out = []
    for j in range(chosen.size):
        firsts = first[j * nv : (j + 1) * nv]
        reached = np.flatnonzero(firsts >= 0)
        out.append([int(v) for v in reached[np.argsort(firsts[reached], kind="stable")]])
    return out


def connections_block(
    *,
    rel: np.ndarray,
    cells: Cells,
    ok: np.ndarray,
    version: np.ndarray,
    labels: list[str],
    mode: np.ndarray,
    mode_labels: list[str],
    conn: np.ndarray,
    conn_labels: list[str],
    roles: tuple[str | None, str | None],
    switch: tuple[float | None, str | None],
    phases: Sequence[str],
    end_s: float,
    table: pd.DataFrame | Future[pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """The summary's ``connections`` block (see the module docstring and README).

    ``cells``: the rows' ``reports.cells.Cells`` by (phase, mode, version), the phases
    named by ``phases`` in order; every latency block and share is read off them.
    ``table``: ``role_table`` of the same rows when the caller has it (or will: a future),
    else computed here."""
    switch_s, switch_from = switch
    modes = np.flatnonzero(cells.requests_by(1, None, None, None))
    broken = {int(code): disruption(rel, ok, end_s, mode == code) for code in modes}
    if table is None:
        table = role_table(rel, ok, version, labels, conn, mode, roles, switch_s)
    elif not isinstance(table, pd.DataFrame):
        table = table.result()
    by_mode: dict[str, Any] = {}
    for code in modes:
        name = mode_labels[code]
        count, pinned, longest, saw_both = _mode_block(table, int(code))
        phase_blocks = []
        for k, phase in enumerate(phases):
            block = cells.stats(k, int(code), None)
            counts = cells.requests_by(2, k, int(code), None)
            n = block["requests"]
            share = {labels[i]: counts[i] / n for i in np.flatnonzero(counts)} if n else {}
            phase_blocks.append({"name": phase, **block, "share": share})
        by_mode[name] = {
            **cells.stats(None, int(code), None),
            "versions": _per_version(cells, labels, int(code)),
            "phases": phase_blocks,
            "connections": count,
            "pinned": pinned,
            "longest_pin_s": longest,
            "saw_both": saw_both,
            "disruption": broken[int(code)],
        }
    pins = table["pin_s"].dropna()
    longest_conn = conn_labels[int(pins.idxmax())] if len(pins) else None  # type: ignore[call-overload]
    return {
        "modes": sorted(by_mode),
        "switch_ref": switch_from,
        "switch_ref_s": _r(switch_s),
        "by_mode": by_mode,
        "identified": len(table),
        "pinned_callers": len(pins),
        "longest_pin_s": _r(pins.max()) if len(pins) else None,
        "longest_pin_conn": longest_conn,
        "failed_connections": int(table["failed_age_s"].notna().sum()),
        "per_connection": _listed(table, mode_labels, conn_labels, labels, conn, version),
    }


def mode_buckets(
    rel: np.ndarray,
    version: np.ndarray,
    nv: int,
    mode: np.ndarray,
    nm: int,
    nb: int,
    bucket_s: float,
) -> np.ndarray:
    """Requests per (mode, bucket, version): the per-mode share figure's data."""
    counts = np.zeros(nm * nb * nv, dtype=np.int64)
    for part in slices(rel.size):  # slice by slice: no run-long temporaries
        idx = np.clip(np.floor(rel[part] / bucket_s).astype(np.int64), 0, max(nb - 1, 0))
        key = (mode[part].astype(np.int64) * nb + idx) * nv + version[part]
        counts += np.bincount(key, minlength=nm * nb * nv)
    return counts.reshape(nm, nb, nv)
