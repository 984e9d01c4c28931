"""The rollout driver: a watched Workload, and the replacement the tool asks for itself.

``resolve_target`` turns a workload id (and the artifact to replace it with) into what the
senders need (the invoke URL from the workload's ``endpoint``, version labels from the
artifacts) and what the manifest records. ``RolloutDriver`` runs beside the senders: it
starts the rollout watcher, asks for the replacement at the time it is given (marker event
``replacement requested`` first), and says when an observation may end: once the
replacement is over (completed, errored, canceled) plus ``tail_s``. The run's duration stays
the hard cap; the caller enforces it.

At its end the driver asks the platform for its own count of every proton it saw
(``GET /workloads/{id}/stats?protonId=…&startTime=…&endTime=…`` over the driver's window:
from its start, before the first request, to its stop, after the last answer) and records
each answer as a ``platform stats`` marker event (``proton_id``, ``detail.version``,
``detail.start_ts``/``end_ts``, ``detail.metrics`` or ``detail.error``), so the report's
reconciliation is made from the run directory alone.

A platform that fails *during* the observation never loses the recorded samples: the
driver keeps the error (``failure``) and ends the observation early; the caller writes the
report and then exits 3 with the message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from probes.errors import ProbesError
from probes.records import EventLog
from probes.watch import DEFAULT_INTERVAL_S, Watcher
from probes.workload import Retry, WorkloadClient

#: Default seconds observed after the replacement ended.
DEFAULT_TAIL_S = 5.0
#: Seconds of baseline traffic recorded before the replacement is requested (capped by
#: ``lead_in_s``), so the report has a "before" phase to compare against.
LEAD_IN_S = 2.0
#: After a failure to start the replacement, keep observing this long, then stop.
FAILURE_TAIL_S = 1.0
#: The marker of the platform's own per-proton counts, fetched at the end.
PLATFORM_STATS = "platform stats"


def iso_z(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with microseconds (``…T12:00:00.123456Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def lead_in_s(duration_s: float) -> float:
    """When an observation asks for its replacement: ``LEAD_IN_S`` after the start, but no
    later than a tenth of the run (with its 5 s grace), so a short run still sees the switch."""
    return min(LEAD_IN_S, (duration_s + 5.0) / 10)


@dataclass(frozen=True)
class PlatformTarget:
    """A workload resolved from the control plane."""

    api: str  # masked API base
    workload_id: str
    invoke_url: str
    labels: dict[str, str]  # artifact id -> version label
    active_artifact_id: str | None
    replace_with: str | None = None

    @property
    def baseline(self) -> str | None:
        return self.labels.get(self.active_artifact_id or "")

    @property
    def candidate(self) -> str | None:
        return self.labels.get(self.replace_with or "")

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``platform`` block (no secrets: the API base is masked)."""
        return {
            "api": self.api,
            "workload_id": self.workload_id,
            "replace_with": self.replace_with,
            "labels": dict(self.labels),
            "baseline": self.baseline,
            "candidate": self.candidate,
        }


def resolve_target(
    client: WorkloadClient, workload_id: str, replace_with: str | None = None
) -> PlatformTarget:
    """Look the workload (and the replacement artifact) up; TargetError when unusable."""
    workload = client.get_workload(workload_id)
    artifact_ids = {p.artifact_id for p in client.list_protons(workload_id) if p.artifact_id}
    if workload.artifact_id:
        artifact_ids.add(workload.artifact_id)
    if replace_with:
        artifact_ids.add(replace_with)
    return PlatformTarget(
        api=client.masked_base,
        workload_id=workload_id,
        invoke_url=client.invoke_url(workload),
        labels=client.labels(artifact_ids),
        active_artifact_id=workload.artifact_id,
        replace_with=replace_with,
    )


def poll_client(client: WorkloadClient, timeout: float = 2.0) -> WorkloadClient:
    """A client for the watcher: short timeout, one quick retry (the next poll is the
    real retry), so a slow control plane never stalls the timeline for long."""
    return WorkloadClient(
        client.base,
        token_env=client.token_env,
        timeout=timeout,
        retry=Retry(attempts=2, base_s=0.1, budget_s=1.0),
    )


@dataclass
class RolloutDriver:
    """Watcher + replacement request, run beside the probe in one background thread."""

    client: WorkloadClient
    target: PlatformTarget
    events: EventLog
    warmup_minutes: int = 0
    keep_old_minutes: int = 0
    tail_s: float = DEFAULT_TAIL_S
    #: Epoch seconds at which to request the replacement (None: only watch).
    request_at: float | None = None
    interval: float = DEFAULT_INTERVAL_S
    clock: Callable[[], float] = time.time
    #: Set when the observation may end (replacement over + tail, or a failure).
    finished: threading.Event = field(default_factory=threading.Event)
    #: Why the platform could not be used mid-run (the caller exits 3 after reporting).
    failure: ProbesError | None = None
    watcher: Watcher | None = None
    #: Fetch the platform's per-proton counts at the end (``PLATFORM_STATS`` markers).
    fetch_stats: bool = True
    #: When the driver started: the start of the platform counts' window.
    started_ts: float | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self, deadline: float) -> RolloutDriver:
        """Start the watcher now (it polls until ``deadline``); request the replacement at
        ``request_at``."""
        self.started_ts = self.clock()
        self.watcher = Watcher(
            poll_client(self.client),
            self.target.workload_id,
            self.events,
            interval=self.interval,
            labels=self.target.labels,
            clock=self.clock,
        ).start(deadline)
        self._thread = threading.Thread(target=self._run, name="rollout-driver", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.watcher is not None
        request_at = self.request_at if self.target.replace_with else None
        if request_at is not None and not self._stop.wait(max(0.0, request_at - self.clock())):
            self._request()
        if self.failure is not None:
            self._stop.wait(FAILURE_TAIL_S)
            self.finished.set()
            return
        while not self._stop.is_set() and not self.watcher.ended.wait(0.1):
            pass
        if self.watcher.ended.is_set() and not self._stop.wait(self.tail_s):
            self.finished.set()

    def _request(self) -> None:
        assert self.watcher is not None
        artifact_id = self.target.replace_with or ""
        self.watcher.mark(
            "replacement requested", artifact_id=artifact_id, version=self.target.candidate
        )
        since = self.clock()
        self.watcher.expect_replacement(since)
        try:
            rep = self.client.start_replacement(
                self.target.workload_id,
                artifact_id,
                warmup_minutes=self.warmup_minutes,
                keep_old_minutes=self.keep_old_minutes,
            )
        except ProbesError as exc:
            self.failure = exc
            self.watcher.mark("replacement refused", error=str(exc))
            return
        self.watcher.expect_replacement(since, rep.id)

    def status_line(self) -> str:
        """The platform's side of the live status line."""
        return self.watcher.timeline.status_line() if self.watcher else ""

    @property
    def outcome(self) -> str | None:
        return self.watcher.outcome if self.watcher else None

    def stop(self) -> None:
        """Stop the driver and the watcher (which polls once more and writes its end)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.watcher is not None:
            self.watcher.stop()
            if self.fetch_stats and not self.watcher.error_streak:
                self.record_stats()
            self.watcher.client.close()

    def record_stats(self) -> list[dict[str, Any]]:
        """The platform's counts of every proton seen, from ``started_ts`` to now, written as
        ``PLATFORM_STATS`` markers (a refused or failed fetch: ``detail.error``)."""
        assert self.watcher is not None
        start = self.started_ts if self.started_ts is not None else self.clock()
        end = self.clock()
        protons = self.watcher.timeline.state.protons
        written = []
        for proton_id, proton in protons.items():
            detail: dict[str, Any] = {"version": proton.version, "start_ts": start, "end_ts": end}
            try:
                detail["metrics"] = self.watcher.client.stats(
                    self.target.workload_id,
                    proton_id=proton_id,
                    startTime=iso_z(start),
                    endTime=iso_z(end),
                )
            except ProbesError as exc:
                detail["error"] = str(exc)
            written.append(
                self.events.write(
                    "marker", PLATFORM_STATS, ts=end, proton_id=proton_id, detail=detail
                )
            )
        return written
