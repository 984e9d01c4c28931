"""Which Locust workers took part in a run (``summary.json`` ``workers``).

A Locust master accounts for every worker it saw (``probes.locustglue.workers``) and writes
that account into ``locust.json``, which the recording copies into the manifest's ``locust``
block. Here it becomes ``workers: [{id, host, rows, first_s, last_s, lost}]``: ``rows`` the
sample rows the worker sent, ``first_s``/``last_s`` its first and last row in seconds from the
run's start, ``lost`` ``"missing"`` (heartbeat stopped) or ``"quit"`` (left before the master
asked) when it was lost mid-run, else null. Runs without a Locust master have no ``workers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["workers_block"]


def _seconds(ts: Any, t0: float) -> float | None:
    return round(float(ts) - t0, 3) if isinstance(ts, int | float) else None


def workers_block(manifest: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The summary's ``workers`` from the manifest's ``locust.workers``; None without."""
    locust = manifest.get("locust")
    workers = locust.get("workers") if isinstance(locust, Mapping) else None
    if not isinstance(workers, list):
        return None
    t0 = float(manifest.get("started_ts") or 0.0)
    block = []
    for worker in workers:
        if not isinstance(worker, Mapping):
            continue
        block.append(
            {
                "id": str(worker.get("id")),
                "host": str(worker.get("host")),
                "rows": int(worker.get("rows") or 0),
                "first_s": _seconds(worker.get("first_ts"), t0),
                "last_s": _seconds(worker.get("last_ts"), t0),
                "lost": worker.get("lost"),
            }
        )
    return block
