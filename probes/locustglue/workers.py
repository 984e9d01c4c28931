"""The master's account of its Locust workers: which connected, how many sample rows each
sent, its first and last row's time, and which were lost mid-run.

Locust-free (plain values in, plain values out), so it is tested without a master; the
wiring feeds it Locust's ``worker_connect`` events, each batch of rows with the id of the
worker that sent it, and a look at ``runner.clients`` every ``WATCH_INTERVAL_S``.

A worker is *lost* when it leaves before the master asked it to: its heartbeat went missing
(Locust's ``missing`` state, after ``HEARTBEAT_LIVENESS`` seconds of silence) or it quit on
its own (killed with SIGTERM/SIGINT, it sends Locust's ``quit``). The run goes on with the
others; the loss is recorded once, as a ``worker lost`` marker event and in ``locust.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONNECTED",
    "LOAD_STARTED",
    "LOST",
    "LOST_MISSING",
    "LOST_QUIT",
    "RATE_T0",
    "WATCH_INTERVAL_S",
    "WorkerAccount",
    "WorkerTally",
    "worker_host",
]

#: Marker statuses written to ``events.jsonl`` (detail: ``{id, host[, reason]}``).
CONNECTED = "worker connected"
LOST = "worker lost"
#: Marker of a master's test start (detail: ``{workers}``), once its workers are there.
LOAD_STARTED = "load started"
#: Marker of an open-model rate plan's clock (detail: ``{t0}``), set by the master.
RATE_T0 = "rate t0"
#: Why a worker was lost: its heartbeat stopped, or it quit before the master asked.
LOST_MISSING = "missing"
LOST_QUIT = "quit"
#: How often the master looks at its workers' states.
WATCH_INTERVAL_S = 0.5


def worker_host(client_id: str) -> str:
    """The host a Locust worker runs on: its id is ``<hostname>_<uuid hex>``."""
    host, sep, _ = client_id.rpartition("_")
    return host if sep and host else client_id


@dataclass
class WorkerAccount:
    """One worker's part in a run."""

    id: str
    host: str
    rows: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    #: ``missing`` or ``quit`` when it was lost mid-run, else None.
    lost: str | None = None
    lost_ts: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "rows": self.rows,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "lost": self.lost,
            "lost_ts": self.lost_ts,
        }


class WorkerTally:
    """Every worker seen by one master, in order of arrival.

    ``on_event(status, detail)`` is called once per connection and once per loss.
    """

    def __init__(self, on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.workers: dict[str, WorkerAccount] = {}
        self.on_event = on_event
        #: Set when the master itself ends the run: workers leaving then are not lost.
        self.quitting = False

    def account(self, client_id: str) -> WorkerAccount:
        found = self.workers.get(client_id)
        if found is None:
            found = self.workers[client_id] = WorkerAccount(client_id, worker_host(client_id))
        return found

    def connected(self, client_id: str) -> None:
        known = client_id in self.workers
        account = self.account(client_id)
        if not known:
            self._emit(CONNECTED, {"id": account.id, "host": account.host})

    def add_rows(self, client_id: str | None, rows: Iterable[Any]) -> None:
        """Count a batch of rows (``ts`` first in each) sent by ``client_id``."""
        if not client_id:
            return
        count, low, high = 0, math.inf, -math.inf
        for row in rows:
            count += 1
            ts = row[0]
            if ts < low:
                low = ts
            if ts > high:
                high = ts
        if not count:
            return
        account = self.account(client_id)
        account.rows += count
        account.first_ts = low if account.first_ts is None else min(account.first_ts, low)
        account.last_ts = high if account.last_ts is None else max(account.last_ts, high)

    def check(self, states: Mapping[str, str], now: float) -> list[str]:
        """Look at the workers Locust still knows (``id -> state``): any known worker that is
        gone or ``missing`` while the master is not quitting is lost. The ids lost now."""
        if self.quitting:
            return []
        lost = []
        for account in self.workers.values():
            if account.lost is not None:
                continue
            state = states.get(account.id)
            if state is None or state == LOST_MISSING:
                account.lost = LOST_QUIT if state is None else LOST_MISSING
                account.lost_ts = now
                lost.append(account.id)
                self._emit(LOST, {"id": account.id, "host": account.host, "reason": account.lost})
        return lost

    def as_list(self) -> list[dict[str, Any]]:
        return [account.as_dict() for account in self.workers.values()]

    def _emit(self, status: str, detail: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(status, detail)
