"""One api target's control plane: ``PlatformWatch``.

``resolve()`` looks the workload up (retrying every ``API_RETRY_S`` while the control plane is
down, until the service stops) and starts a ``probes.watch.Watcher`` in a thread of its own
(blocking httpx); its events come back to the loop through ``_EventRouter`` and are handed to
``on_event``. It remembers the platform's current state (the protons, the workload, the watch
marker, the latest replacement events), which a new rollout run starts from (``snapshot``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from probes.errors import ProbesError
from probes.records import EventLog, make_event
from probes.serve.config import TargetConfig
from probes.serve.context import ServeContext
from probes.settings import RequestSpec

log = logging.getLogger(__name__)

API_RETRY_S = 5.0
#: Replacement events remembered (a new capture starts with those of its replacement).
REPLACEMENT_EVENTS = 32


class _EventRouter(EventLog):
    """The watcher's event log: events go to the loop (``sink``) instead of a file.

    The watcher runs in its own thread; its events are handed over with
    ``call_soon_threadsafe``. After the loop closed they are dropped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[dict[str, Any]], None]):
        self._loop = loop
        self._sink = sink

    def write(
        self,
        kind: str,
        status: str,
        *,
        ts: float | None = None,
        replacement_id: str | None = None,
        proton_id: str | None = None,
        role: str | None = None,
        detail: Any = None,
    ) -> dict[str, Any]:
        event = make_event(
            kind, status, ts=ts, replacement_id=replacement_id, proton_id=proton_id,
            role=role, detail=detail,
        )  # fmt: skip
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._sink, event)
        return event

    def close(self) -> None:
        return None


class PlatformWatch:
    """The control plane of one api target (see the module docstring)."""

    def __init__(
        self, ctx: ServeContext, cfg: TargetConfig, on_event: Callable[[dict[str, Any]], None]
    ) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.name = cfg.name
        self.on_event = on_event
        self.platform: Any = None  # probes.rollout.PlatformTarget once resolved
        self.watcher: Any = None
        self.last_error: str | None = None
        self._watch_thread: threading.Thread | None = None
        self._watch_stop = threading.Event()
        # The platform's current state, written into a capture when it opens.
        self._protons: dict[str, dict[str, Any]] = {}
        self._workload: dict[str, Any] | None = None
        self._watch_marker: dict[str, Any] | None = None
        self._replacement_events: deque[dict[str, Any]] = deque(maxlen=REPLACEMENT_EVENTS)

    async def resolve(self) -> RequestSpec | None:
        """The target's request once its workload is found (None: the service stopped first);
        the watcher runs from then on."""
        loop = asyncio.get_running_loop()
        while not self.ctx.stopping.is_set():
            try:
                self.platform = await loop.run_in_executor(self.ctx.io, self._lookup)
            except ProbesError as exc:
                self.last_error = str(exc)
                log.warning("target %s: control plane not usable yet: %s", self.name, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ctx.stopping.wait(), API_RETRY_S)
                continue
            self.last_error = None
            spec = self.cfg.request_for(self.platform.invoke_url)
            self._start_watcher(loop)
            return spec
        return None

    def _lookup(self) -> Any:
        from probes.rollout import resolve_target
        from probes.workload import WorkloadClient

        assert self.cfg.api is not None and self.cfg.workload is not None
        with WorkloadClient(self.cfg.api, token_env=self.cfg.token_env) as client:
            return resolve_target(client, self.cfg.workload)

    def _start_watcher(self, loop: asyncio.AbstractEventLoop) -> None:
        from probes.rollout import poll_client
        from probes.watch import DEFAULT_INTERVAL_S, Watcher
        from probes.workload import WorkloadClient

        assert self.cfg.api is not None
        client = poll_client(WorkloadClient(self.cfg.api, token_env=self.cfg.token_env))
        self.watcher = Watcher(
            client,
            self.platform.workload_id,
            _EventRouter(loop, self._event),
            interval=self.ctx.watch_interval or DEFAULT_INTERVAL_S,
            labels=self.platform.labels,
        )
        self._watch_thread = threading.Thread(
            target=self._watch, name=f"watch-{self.name}", daemon=True
        )
        self._watch_thread.start()

    def _watch(self) -> None:
        watcher = self.watcher
        watcher.mark("watch started", poll_s=watcher.interval, workload_id=watcher.workload_id)
        while not self._watch_stop.is_set():
            try:
                watcher.run(deadline=math.inf)
                return  # run returns once stopped
            except Exception as exc:  # never let one bad answer end the watch
                log.warning("target %s: watcher error: %s", self.name, exc)
                self._watch_stop.wait(1.0)

    def stop(self) -> None:
        """Blocking: stop the watcher thread (from an executor)."""
        if self.watcher is None:
            return
        self._watch_stop.set()
        self.watcher.stop(final_poll=False)
        if self._watch_thread is not None:
            self._watch_thread.join(timeout=10)
        self.watcher.client.close()

    def _event(self, event: dict[str, Any]) -> None:
        """On the loop: remember the state, then hand the event on."""
        self._remember(event)
        self.on_event(event)

    def _remember(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "proton" and event.get("proton_id"):
            if event.get("status") == "removed":
                self._protons.pop(event["proton_id"], None)
            else:
                self._protons[event["proton_id"]] = event
        elif kind == "workload":
            self._workload = event
        elif kind == "marker" and event.get("status") == "watch started":
            self._watch_marker = event
        elif kind == "replacement":
            self._replacement_events.append(event)

    def snapshot(self, rid: str | None) -> list[dict[str, Any]]:
        """The platform as known now, oldest first: what a new capture starts from."""
        out = [e for e in (self._watch_marker, self._workload) if e is not None]
        protons = sorted(self._protons.values(), key=lambda e: e.get("role") != "active")
        out += protons
        if rid is not None:
            out += [e for e in self._replacement_events if e.get("replacement_id") == rid]
        return out

    def switched_ts(self, rid: str | None) -> float | None:
        """When the platform reported replacement ``rid``'s switch, epoch seconds (None: not
        yet, or no replacement): the sequential decision's no-evidence rule starts there."""
        if rid is None:
            return None
        from reports.rollout import platform_block

        events = [e for e in self._replacement_events if e.get("replacement_id") == rid]
        block = platform_block(events, 0.0)
        return None if block is None else block["switched_at_s"]

    def replacement_status(self, rid: str | None) -> str | None:
        """The latest status the platform reported for replacement ``rid``."""
        for event in reversed(self._replacement_events):
            if event.get("replacement_id") == rid:
                return str(event.get("status"))
        return None

    def manifest_block(
        self, replacement_id: str | None, outcome: str | None = None
    ) -> dict[str, Any]:
        """A rollout run's ``platform`` manifest block (with the watcher's latest labels)."""
        labels = dict(self.watcher.labels) if self.watcher is not None else {}
        block = dict(replace(self.platform, labels=labels or self.platform.labels).manifest())
        block["replacement_id"] = replacement_id
        if outcome is not None:
            block["outcome"] = outcome
        return block

    def stopped_marker(self) -> dict[str, Any] | None:
        """The ``watch stopped`` marker's detail for a closing capture (None: no watcher)."""
        if self.watcher is None:
            return None
        return {
            "polls": self.watcher.polls,
            "failed_polls": self.watcher.errors,
            "note": "the capture ended; the service keeps watching",
        }
