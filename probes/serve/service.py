"""The service: one asyncio loop probing every target, capturing rollouts, running schedules.

Per target (``TargetWorker``):

- a **continuous canary**: ``probes.canary.run_probe`` at ``canary_rate`` in this loop, each
  target with its own client, timeout and in-flight bound, so a slow or dead target never
  stalls another (nothing awaits another target). Its rows are cut into rolling runs of
  ``segment_s`` (kind ``canary``, trigger ``continuous``); segment ends are spread over the
  period by the target's name so that hundreds of targets do not report at the same instant;
- for api targets a ``probes.watch.Watcher`` in a thread (blocking httpx), whose events come
  back to the loop through ``_EventRouter``;
- the **capture policy** (``probes.serve.capture``) fed with those events, the canary's
  versions and the clock. On open: a run of kind ``rollout`` (trigger ``auto``; its
  directory and manifest are made in the blocking pool while its rows and events wait in
  memory), the probe raised to ``capture_rate`` (the new probe starts before the old one
  drains, so there is no gap), the platform's current state and every later event written to
  its events.jsonl. On close: reported with the rollout block and verdict, indexed (a
  ``fail`` is pinned by the index);
- a **live window** of the last 60 s for ``target_status`` and ``/metrics`` shares, and the
  samples of the open and the last rollouts for the verdict endpoint, in memory.

Rows seen during a capture go to both the canary segment and the capture: the canary record
stays continuous, and the rollout run is complete on its own.

Scheduled and API-started runs go through ``probes.serve.runner`` in threads, each with its
own stop event. Report-making, shard flushing and index writes never run on the loop.

Lifecycle: ``start`` marks runs a crash left open as ``interrupted`` (and reports runs that
were closed but never reported), resolves api targets and starts every canary; ``stop``
stops scheduling, stops runs (and with them Locust children), closes every open run (flush,
report, index) and waits a bounded time for the reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from probes.canary import DEFAULT_MAX_IN_FLIGHT, ProbeSettings, run_probe
from probes.errors import ConfigError, ProbesError
from probes.records import (
    MANIFEST_FILE,
    EventLog,
    Sample,
    ShardWriter,
    make_event,
    read_manifest,
    recover_journals,
)
from probes.run import REPORT_HTML_FILE, Run, iso, read_summary
from probes.serve import capture as cap
from probes.serve import healing
from probes.serve import schedule as sch
from probes.serve.config import KINDS, ScheduleConfig, ServeConfig, TargetConfig
from probes.serve.flagger import CanaryTies
from probes.serve.lock import RunsDirLock
from probes.serve.runner import Job, JobResult, RecordingRunner, Runner, validate_args
from probes.serve.served import ServedVersions
from probes.settings import RequestSpec

log = logging.getLogger("probes.serve")

WINDOW_S = 60.0
#: A capture starts with the canary rows of this many seconds before it opened.
PREROLL_S = 30.0
#: A run_probe's nominal length; it is restarted when it ends (in practice: on a rate change).
PROBE_SPAN_S = 1e7
#: After a stop, a probe waits this long for requests in flight.
DRAIN_S = 2.0
#: Closed rollouts per target whose samples stay in memory for the verdict endpoint.
RECENT_ROLLOUTS = 5
#: The verdict of an open capture is recomputed at most this often.
VERDICT_CACHE_S = 0.5
#: On stop, reports still unmade after this long are made at the next start instead.
SHUTDOWN_REPORT_S = 20.0
#: On stop, how long closing the open runs (flush, manifest) may take in all: a slow disk
#: beyond it leaves runs for the next start to close as interrupted.
SHUTDOWN_CLOSE_S = 30.0
#: Bound on waiting for scheduled runs to stop (their own stop events end them sooner).
SHUTDOWN_JOBS_S = 20.0
#: How long the notifier may take to send what is queued at shutdown.
SHUTDOWN_NOTIFY_S = 3.0
#: Seconds between updates of an open capture's verdict metric.
VERDICT_METRIC_S = 5
#: Most runs a trend reads (newest).
TREND_RUNS = 200
TICK_S = 1.0
#: Canary segments' rows are written to a shard this often, by one flusher for all targets
#: (a shard per target per second would be thousands of tiny files and a thread each).
CANARY_FLUSH_S = 10.0
RETENTION_EVERY_S = 3600.0
API_RETRY_S = 5.0
#: Triggers of runs the service makes: only those are recovered after a crash.
SERVICE_TRIGGERS = frozenset({"continuous", "auto", "schedule", "api"})
SCHEDULER_LOG = "scheduler.jsonl"
BUCKET_S = 1.0


def _stamp(ts: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts))


def fresh_run_id(runs_dir: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``… when a run directory already has that name."""
    rid, n = base, 1
    while (runs_dir / rid).exists():
        n += 1
        rid = f"{base}-{n}"
    return rid


def segment_end(start: float, segment_s: float, name: str) -> float:
    """When a canary segment begun at ``start`` ends: the next boundary of the target's own
    phase (``k * segment_s + offset(name)``), at least a tenth of a segment away."""
    offset = zlib.crc32(name.encode()) % max(1, int(segment_s))
    end = (math.floor((start - offset) / segment_s) + 1) * segment_s + offset
    return end + segment_s if end - start < segment_s / 10 else end


def max_in_flight(rate: float, timeout: float) -> int:
    """Per-target in-flight bound: every request of one timeout at ``rate``, at least 4."""
    return min(DEFAULT_MAX_IN_FLIGHT, max(4, math.ceil(rate * timeout) + 1))


# --------------------------------------------------------------------------- samples


class SampleBuffer:
    """A rollout's samples in memory (version, latency, ok), for the verdict endpoint."""

    def __init__(self) -> None:
        self.versions: list[str] = []
        self.latency: list[float] = []
        self.ok: list[bool] = []
        self.seen: set[str] = set()

    def add(self, sample: Sample) -> None:
        self.seen.add(sample.version)
        self.versions.append(sample.version)
        self.latency.append(sample.latency_ms)
        self.ok.append(sample.error is None)

    def __len__(self) -> int:
        return len(self.ok)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.asarray(self.versions, dtype=object),
            np.asarray(self.latency, dtype=float),
            np.asarray(self.ok, dtype=bool),
        )


@dataclass
class Rollout:
    """A closed capture kept in memory (or loaded back from its run dir)."""

    run_id: str
    baseline: str | None
    candidate: str | None
    versions: np.ndarray
    latency: np.ndarray
    ok: np.ndarray
    started_ts: float
    ended_ts: float
    outcome: str | None
    seen: set[str] = field(default_factory=set)
    #: Its verdict as judged once it closed (its samples never change after).
    verdict: str | None = None

    def __post_init__(self) -> None:
        self.seen = set(self.seen) | {str(v) for v in set(self.versions.tolist())}

    def labels(self) -> set[str]:
        return {v for v in (self.baseline, self.candidate) if v}


@dataclass
class OpenRun:
    """A run the service is writing: its directory and sample writer."""

    run: Run
    writer: ShardWriter
    ends_ts: float = math.inf

    @property
    def run_id(self) -> str:
        return self.run.run_id


class _DeferredEvents:
    """A capture's event log while its run directory is being made off the loop: events
    wait here, in order, and are written once the directory exists (``attach``)."""

    def __init__(self) -> None:
        self.log: EventLog | None = None
        self.waiting: list[dict[str, Any]] = []

    def put(self, event: Mapping[str, Any]) -> None:
        if self.log is not None:
            _write_event(self.log, event)
        else:
            self.waiting.append(dict(event))

    def write(self, kind: str, status: str, **fields: Any) -> None:
        self.put(make_event(kind, status, **fields))

    def attach(self, log_: EventLog) -> None:
        self.log = log_
        for event in self.waiting:
            _write_event(log_, event)
        self.waiting.clear()


@dataclass
class OpenCapture:
    """An open rollout capture. Its run directory is made off the loop (``Run.create``
    fsyncs, and a slow disk must not stall every target's requests): until ``attach`` the
    rows and events wait here, and ``ready`` is set once they are in the run."""

    run_id: str
    started_ts: float
    reason: str
    ready: asyncio.Future[None]
    run: Run | None = None
    writer: ShardWriter | None = None
    samples: SampleBuffer = field(default_factory=SampleBuffer)
    events: _DeferredEvents = field(default_factory=_DeferredEvents)
    #: What the policy knows of the rollout, kept here so it outlives the policy's close.
    replacement_id: str | None = None
    baseline: str | None = None
    candidate: str | None = None
    outcome: str | None = None
    #: Rows refused while its directory could not be made (memory bound reached).
    dropped: int = 0
    _rows: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        if self.writer is not None:
            self.writer.add(sample)
        elif len(self._rows) < healing.MAX_HELD_ROWS:  # its directory is not there yet
            self._rows.append(sample)
        else:
            self.dropped += 1
        self.samples.add(sample)

    def attach(self, run: Run, writer: ShardWriter) -> None:
        """On the loop: the run exists; what waited goes into it, in order."""
        writer.add_many(self._rows)
        self._rows.clear()
        self.events.attach(run.events)
        self.run, self.writer = run, writer
        if not self.ready.done():
            self.ready.set_result(None)

    def fail(self, exc: BaseException) -> None:
        self._rows.clear()
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # retrieved: whoever waits logs it, nobody else must

    async def opened(self) -> OpenRun:
        """The run and writer once made (raises what making them raised)."""
        await asyncio.shield(self.ready)
        assert self.run is not None and self.writer is not None
        return OpenRun(run=self.run, writer=self.writer)

    def sync(self, state: cap.CaptureState) -> None:
        if state.open:
            self.replacement_id = state.replacement_id or self.replacement_id
            self.baseline = state.baseline or self.baseline
            self.candidate = state.candidate or self.candidate
            self.outcome = state.outcome


# --------------------------------------------------------------------------- events in


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


def _write_event(log_: EventLog, event: Mapping[str, Any], ts: float | None = None) -> None:
    fields = {k: v for k, v in event.items() if k not in ("kind", "status", "ts")}
    log_.write(str(event["kind"]), str(event["status"]), ts=ts or event["ts"], **fields)


# --------------------------------------------------------------------------- per target


class TargetWorker:
    """Everything the service does for one target (see the module docstring)."""

    def __init__(self, service: Service, cfg: TargetConfig) -> None:
        self.service = service
        self.cfg = cfg
        self.name = cfg.name
        self.policy = cap.CapturePolicy(
            api=cfg.is_api, settle_s=cfg.settle_s, tail_s=cfg.capture_tail_s
        )
        self.state = cap.CaptureState()
        self.spec: RequestSpec | None = None if cfg.is_api else cfg.request
        self.platform: Any = None  # probes.rollout.PlatformTarget once resolved
        self.watcher: Any = None
        self._watch_thread: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self.segment: OpenRun | None = None
        #: The segment roll under way (``_roll_segment``), if any.
        self._rolling: asyncio.Task[None] | None = None
        self.capture: OpenCapture | None = None
        self.window: deque[tuple[float, str, bool, float]] = deque()
        self.recent: deque[Rollout] = deque(maxlen=RECENT_ROLLOUTS)
        self.started = False
        self.last_error: str | None = None
        self._rate_changed = asyncio.Event()
        self._probe_stop: asyncio.Event | None = None
        self._probes: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        # The platform's current state, written into a capture when it opens.
        self._protons: dict[str, dict[str, Any]] = {}
        self._workload: dict[str, Any] | None = None
        self._watch_marker: dict[str, Any] | None = None
        self._replacement_events: deque[dict[str, Any]] = deque(maxlen=32)
        self._verdict_cache: tuple[tuple[Any, ...], dict[str, Any], float] | None = None
        #: Full rows of the last ``PREROLL_S``: a new capture starts with them (its before).
        self.preroll: deque[Sample] = deque()
        #: What its recording fails at now, and the rows held while no segment takes them.
        self.health = healing.RecordingHealth()
        self.held: healing.HeldRows[Sample] = healing.HeldRows()
        self._dropped_told = 0

    # -- start / stop ------------------------------------------------------------------

    async def start(self, phase: float = 0.0) -> None:
        """Resolve an api target (retrying while the control plane is down), then probe.

        ``phase`` (a fraction of the canary's interval) offsets this target's schedule from
        the others': targets started together would otherwise all be due at the same
        instants, and the last of each burst would be sent late by the ones before it."""
        if self.cfg.is_api:
            await self._resolve()
            if self.service.stopping:
                return
        try:
            first = await asyncio.get_running_loop().run_in_executor(
                self.service.blocking, self._create_segment, time.time()
            )
        except Exception as exc:  # a full disk at start: probe anyway, retry the segment
            self.recording_failed("canary segment", exc)
        else:
            self._adopt_segment(first)
        delay = phase / self.cfg.canary_rate if self.cfg.canary_rate > 0 else 0.0
        self._loop_task = asyncio.create_task(self._probe_loop(delay), name=f"canary-{self.name}")
        self.started = True

    async def _resolve(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.service.stopping:
            try:
                self.platform = await loop.run_in_executor(self.service.blocking, self._lookup)
            except ProbesError as exc:
                self.last_error = str(exc)
                log.warning("target %s: control plane not usable yet: %s", self.name, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.service.stop_event.wait(), API_RETRY_S)
                continue
            self.last_error = None
            self.spec = self.cfg.request_for(self.platform.invoke_url)
            self._start_watcher(loop)
            return

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
            _EventRouter(loop, self.on_platform_event),
            interval=self.service.watch_interval or DEFAULT_INTERVAL_S,
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

    def stop_watcher(self) -> None:
        """Blocking: stop the watcher thread (from an executor)."""
        if self.watcher is None:
            return
        self._watch_stop.set()
        self.watcher.stop(final_poll=False)
        if self._watch_thread is not None:
            self._watch_thread.join(timeout=10)
        self.watcher.client.close()

    async def stop_probes(self) -> None:
        """Stop the probe loop and wait for the probes' drains."""
        self._rate_changed.set()
        if self._probe_stop is not None:
            self._probe_stop.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._probes:
            await asyncio.gather(*self._probes, return_exceptions=True)
        if self._rolling is not None:  # a segment roll under way ends before close_all
            await asyncio.gather(self._rolling, return_exceptions=True)

    # -- the probe -----------------------------------------------------------------------

    def rate(self) -> float:
        return self.cfg.capture_rate if self.capture is not None else self.cfg.canary_rate

    async def _probe_loop(self, delay: float = 0.0) -> None:
        """One run_probe at the current rate; on a rate change the next one starts first,
        then the old one stops and drains (its answers are still recorded)."""
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rate_changed.wait(), delay)
        while not self.service.stopping:
            rate, spec = self.rate(), self.spec
            self._rate_changed.clear()
            if rate > 0 and spec is not None:
                stop = asyncio.Event()
                settings = ProbeSettings(
                    rate=rate,
                    duration=PROBE_SPAN_S,
                    max_in_flight=max_in_flight(rate, spec.timeout),
                    drain_s=DRAIN_S,
                )
                task = asyncio.create_task(
                    run_probe(spec, settings, None, stop=stop, on_sample=self.on_sample)
                )
                self._probes.add(task)
                task.add_done_callback(self._probe_done)
                old, self._probe_stop = self._probe_stop, stop
                if old is not None:
                    old.set()
                waiter = asyncio.create_task(self._rate_changed.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            else:
                if self._probe_stop is not None:
                    self._probe_stop.set()
                await self._rate_changed.wait()

    def _probe_done(self, task: asyncio.Task[Any]) -> None:
        self._probes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.last_error = f"probe failed: {task.exception()!r}"
            log.error("target %s: %s", self.name, self.last_error)

    def on_sample(self, sample: Sample) -> None:
        """Every canary row (on the loop): window, runs, metrics, capture policy."""
        ok = sample.error is None
        window = self.window
        window.append((sample.ts, sample.version, ok, sample.latency_ms))
        horizon = sample.ts - WINDOW_S
        while window and window[0][0] < horizon:
            window.popleft()
        preroll = self.preroll
        preroll.append(sample)
        while preroll and preroll[0].ts < sample.ts - PREROLL_S:
            preroll.popleft()
        if self.segment is not None:
            self.segment.writer.add(sample)
        elif self.cfg.canary_rate > 0:  # no segment could be made yet: held, bounded
            self.held.add(sample)
        if self.capture is not None:
            self.capture.add(sample)
        metrics = self.service.metrics
        if metrics is not None:
            outcome = "ok" if ok else str(sample.error)
            metrics.request(self.name, sample.version, "probe", outcome, sample.latency_ms / 1000)
            if ok:
                metrics.last_success(self.name, sample.ts + sample.latency_ms / 1000)
        self.state, changes = cap.on_sample(self.policy, self.state, sample.version, sample.ts)
        if changes:
            self._apply(changes, sample.ts)
        elif self.capture is not None:
            self.capture.sync(self.state)

    # -- the platform --------------------------------------------------------------------

    def on_platform_event(self, event: dict[str, Any]) -> None:
        """A watcher event (on the loop): remember the state, record it, feed the policy."""
        self._remember(event)
        self.state, changes = cap.on_event(self.policy, self.state, event)
        if changes:
            self._apply(changes, float(event["ts"]))
        elif self.capture is not None:
            self.capture.sync(self.state)
            self.capture.events.put(event)

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

    def _snapshot(self, rid: str | None) -> list[dict[str, Any]]:
        """The platform as known now, oldest first: what a new capture starts from."""
        out = [e for e in (self._watch_marker, self._workload) if e is not None]
        protons = sorted(self._protons.values(), key=lambda e: e.get("role") != "active")
        out += protons
        if rid is not None:
            out += [e for e in self._replacement_events if e.get("replacement_id") == rid]
        return out

    # -- captures -------------------------------------------------------------------------

    def _apply(self, changes: list[cap.Change], ts: float) -> None:
        for change in changes:
            if change.kind == "close" and self.capture is not None:
                self._close_capture(change.reason, change.outcome)
            elif change.kind == "open" and self.capture is None:
                self._open_capture(change.reason, ts)
        if self.capture is not None:
            self.capture.sync(self.state)

    def _open_capture(self, reason: str, ts: float) -> None:
        """Open a capture now (rows and events go to it from here on); its run directory is
        made in the blocking pool (``_make_capture_run``) and attached when it exists."""
        svc, spec = self.service, self.spec
        if spec is None:
            return
        now = time.time()
        before = list(self.preroll)
        if not self.cfg.is_api:  # a rollback's run starts with its baseline alone (issue 21)
            before = before[cap.preroll_start([r.version for r in before], self.state.baseline) :]
        start = min([now, ts, *(row.ts for row in before[:1])])
        rid = fresh_run_id(svc.runs_dir, f"{self.name}-rollout-{_stamp(now)}")
        loop = asyncio.get_running_loop()
        capture = OpenCapture(
            run_id=rid, started_ts=start, reason=reason, ready=loop.create_future()
        )
        capture.sync(self.state)
        self.capture = capture
        for row in before:
            capture.add(row)
        for event in self._snapshot(self.state.replacement_id):
            capture.events.put({**event, "ts": max(float(event["ts"]), start)})
        capture.events.write("marker", "capture opened", ts=now, detail={"reason": reason})
        fields: dict[str, Any] = {"target_name": self.name, "capture": {"reason": reason}}
        if self.platform is not None:
            fields["platform"] = self._platform_block(capture)
        make = functools.partial(
            _make_capture_run,
            svc.runs_dir,
            rid,
            target=spec.describe(),
            settings=self._settings(spec, self.cfg.capture_rate, reason=reason),
            started_at=start,
            fields=fields,
        )
        task = loop.create_task(self._attach_capture(capture, make), name=f"open-{rid}")
        svc.opening.add(task)
        task.add_done_callback(svc.opening.discard)
        self._verdict_cache = None
        log.info("target %s: capture %s opened: %s", self.name, rid, reason)
        svc.notify(
            "rollout_opened", self.name, rid, reason=reason, from_version=capture.baseline,
            to_version=capture.candidate, at=iso(now),
        )  # fmt: skip
        if svc.metrics is not None:
            svc.metrics.rollout(self.name, True)
            svc.metrics.verdict(self.name, "pending")
            svc.metrics.keep_versions(self.name, self._kept_versions())
        self._rate_changed.set()

    async def _attach_capture(
        self, capture: OpenCapture, make: Callable[[], tuple[Run, ShardWriter]]
    ) -> None:
        """Make the capture's run directory; a full or broken disk is retried with backoff
        (its rows wait in memory, bounded) until it works or the service stops."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                run, writer = await loop.run_in_executor(self.service.blocking, make)
                break
            except Exception as exc:
                log.error("target %s: could not open capture %s: %s", self.name,
                          capture.run_id, exc)  # fmt: skip
                self.recording_failed("rollout capture", exc)
                if self.service.stopping:  # left for nobody: the capture is lost, and said so
                    self.health.dropped += len(capture._rows)
                    capture.fail(exc)
                    if self.capture is capture:
                        self.capture = None
                        self._rate_changed.set()
                    return
                delay = healing.retry_delay(self.health.steps["rollout capture"].failures)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.service.stop_event.wait(), delay)
        self.recording_works("rollout capture")
        capture.attach(run, writer)
        if self.service.index is not None:
            self.service.index.put_run_dir(run.path)

    def _platform_block(self, capture: OpenCapture, outcome: str | None = None) -> dict[str, Any]:
        labels = dict(self.watcher.labels) if self.watcher is not None else {}
        block = dict(replace(self.platform, labels=labels or self.platform.labels).manifest())
        block["replacement_id"] = capture.replacement_id
        if outcome is not None:
            block["outcome"] = outcome
        return block

    def _close_capture(
        self, reason: str, outcome: str | None, interrupted: str | None = None
    ) -> None:
        capture, svc = self.capture, self.service
        assert capture is not None
        self.capture = None
        self._rate_changed.set()
        now = time.time()
        baseline, candidate = self._roles(capture)
        if self.watcher is not None:
            capture.events.write(
                "marker", "watch stopped", ts=now,
                detail={"polls": self.watcher.polls, "failed_polls": self.watcher.errors,
                        "note": "the capture ended; the service keeps watching"},
            )  # fmt: skip
        capture.events.write("marker", "capture closed", ts=now, detail={"reason": reason})
        fields: dict[str, Any] = {
            "capture": {
                "reason": capture.reason, "closed": reason, "outcome": outcome,
                # the policy's roles: a change made while the service was down has no
                # baseline sample, so the report alone could not name it (issue 21)
                "from_version": baseline, "to_version": candidate,
            }
        }  # fmt: skip
        if self.platform is not None:
            fields["platform"] = self._platform_block(capture, outcome)
        versions, latency, ok = capture.samples.arrays()
        rollout = Rollout(
            capture.run_id, baseline, candidate, versions, latency, ok, capture.started_ts, now,
            outcome,
        )  # fmt: skip
        self.recent.appendleft(rollout)
        self._verdict_cache = None
        log.info(
            "target %s: capture %s closed (%s): %s", self.name, capture.run_id, outcome, reason
        )
        if svc.metrics is not None:
            svc.metrics.rollout(self.name, False)
            svc.metrics.rollout_done(self.name, outcome or "incomplete")
            svc.metrics.verdict(self.name, self.verdict(None, None)["verdict"])
            svc.metrics.keep_versions(self.name, self._kept_versions())
        judged = self.verdict(None, None)
        details = {
            "outcome": outcome, "verdict": judged["verdict"], "reason": judged.get("reason"),
            "baseline": baseline, "candidate": candidate, "at": iso(now),
        }  # fmt: skip
        svc.notify("rollout_closed", self.name, capture.run_id, **details)
        if judged["verdict"] == "fail":
            svc.notify("verdict_fail", self.name, capture.run_id, **details)
        svc.finalize(capture, interrupted=interrupted, target=self.name, **fields)

    def _roles(self, capture: OpenCapture) -> tuple[str | None, str | None]:
        """(baseline, candidate) of a capture: the policy's, else the order callers saw."""
        baseline, candidate = capture.baseline, capture.candidate
        if baseline is None or candidate is None:
            seen = [v for v in dict.fromkeys(capture.samples.versions) if v != "unknown"]
            baseline = baseline or (seen[0] if seen else None)
            others = [v for v in seen if v != baseline]
            candidate = candidate or (others[0] if others else None)
        return baseline, candidate

    def _kept_versions(self) -> list[str]:
        keep: set[str] = set()
        if self.capture is not None:
            keep |= {v for v in self._roles(self.capture) if v}
        for rollout in self.recent:
            keep |= rollout.labels()
        return sorted(keep)

    def request_capture(self, reason: str) -> str | None:
        self.state, changes = cap.on_request(self.policy, self.state, reason, time.time())
        self._apply(changes, time.time())
        return self.capture.run_id if self.capture is not None else None

    # -- segments and time ----------------------------------------------------------------

    def _settings(self, spec: RequestSpec, rate: float, **extra: Any) -> dict[str, Any]:
        return {
            "slos": list(self.cfg.slos),
            "bucket_s": BUCKET_S,
            "rate": rate,
            "canary_rate": self.cfg.canary_rate,
            "capture_rate": self.cfg.capture_rate,
            "capture_tail_s": self.cfg.capture_tail_s,
            "settle_s": self.cfg.settle_s,
            "segment_s": self.service.config.serve.segment_s,
            "max_in_flight": max_in_flight(rate, spec.timeout),
            "transport": "aiohttp",
            "request": spec.describe(),
            **extra,
        }

    def _create_segment(self, now: float) -> OpenRun | None:
        """Blocking (off the loop): claim the canary segment's run directory and write its
        manifest, which fsyncs: a slow disk delays this target's next segment, never the
        loop that sends every target's requests."""
        spec, svc = self.spec, self.service
        if spec is None or self.cfg.canary_rate <= 0:
            return None
        rid = fresh_run_id(svc.runs_dir, f"{self.name}-canary-{_stamp(now)}")
        run = Run.create(
            svc.runs_dir,
            rid,
            "canary",
            target=spec.describe(),
            settings=self._settings(spec, self.cfg.canary_rate),
            trigger="continuous",
            started_at=now,
        )
        run.update(target_name=self.name)
        end = segment_end(now, svc.config.serve.segment_s, self.name)
        # flushed by Service._flusher; bounded while flushes fail (a full disk)
        writer = run.shard_writer("probe", background=False, max_pending=healing.MAX_HELD_ROWS)
        return OpenRun(run=run, writer=writer, ends_ts=end)

    def _adopt_segment(self, segment: OpenRun | None) -> None:
        """On the loop: ``segment`` (made by ``_create_segment``) takes this target's rows."""
        svc = self.service
        if segment is None:
            return
        if svc.stopping:  # made while the service stopped: closed at once, not left open
            svc.finalize(segment, figures=False)
            return
        self.segment = segment
        held = self.held.take()
        if held:  # rows of a time no segment could be made (a full disk): in order, first
            segment.writer.add_many(sorted(held, key=lambda row: row.ts))
        if svc.index is not None:
            svc.index.put_run_dir(segment.run.path)

    async def _roll_segment(self, now: float) -> None:
        """The segment's end: the next one is made off the loop; until it is there, rows go
        on into the old one (its end is when it is closed), so none is lost or unowned."""
        loop = asyncio.get_running_loop()
        try:
            fresh = await loop.run_in_executor(self.service.blocking, self._create_segment, now)
        except Exception as exc:  # a full or broken disk: this target's problem alone
            log.error("target %s: could not open the next canary segment: %s", self.name, exc)
            self.recording_failed("canary segment", exc)
            # the rows go on into the old segment (or wait in memory) until a retry works
            if self.segment is not None:
                self.segment.ends_ts = self.health.steps["canary segment"].retry_at
            return
        finally:
            self._rolling = None
        self.recording_works("canary segment")
        old, self.segment = self.segment, None
        self._adopt_segment(fresh)
        if old is not None:
            self.service.finalize(old, figures=False, target=self.name)

    def tick(self, now: float) -> None:
        """Once a second: roll the segment, let the capture policy see the time, shares."""
        if self._rolling is None and (
            (self.segment is not None and now >= self.segment.ends_ts)
            or (
                self.segment is None
                and self.spec is not None
                and self.cfg.canary_rate > 0
                and "canary segment" in self.health.steps
                and self.health.due("canary segment", now)
            )
        ):
            self._rolling = asyncio.create_task(self._roll_segment(now), name=f"roll-{self.name}")
        self._count_dropped()
        self.state, changes = cap.on_tick(self.policy, self.state, now)
        if changes:
            self._apply(changes, now)
        elif self.capture is not None:
            self.capture.sync(self.state)
        metrics = self.service.metrics
        if metrics is not None and self.window:
            metrics.shares(self.name, self.shares(now))
        if metrics is not None and self.capture is not None and int(now) % VERDICT_METRIC_S == 0:
            # the open capture's verdict, as the endpoint answers it (judged from raw samples)
            metrics.verdict(self.name, self.verdict(None, None)["verdict"])

    def close_all(self, interrupted: str) -> None:
        """Close the open runs (on stop): the capture interrupted, the segment cut short."""
        if self.capture is not None:
            outcome = self.capture.outcome
            self._close_capture(f"service stopped ({interrupted})", outcome, interrupted)
        if self.segment is not None:
            old, self.segment = self.segment, None
            self.service.finalize(old, figures=False, target=self.name)
        if len(self.held):  # nothing could take them before the stop
            self.health.dropped += len(self.held.take())
            self._count_dropped()

    # -- recording health ---------------------------------------------------------------

    def recording_failed(self, step: str, exc: BaseException) -> None:
        """A step of this target's recording failed: counted, shown, notified once."""
        first = self.health.failed(step, exc, time.time())
        svc = self.service
        if svc.metrics is not None:
            svc.metrics.recording_error(self.name)
            svc.metrics.recording(self.name, False)
        if first:
            log.error("target %s: recording stopped: %s failed: %s", self.name, step, exc)
            svc.notify(
                "recording_failed", self.name, None, step=step,
                reason=healing.describe(exc), at=iso(time.time()),
            )  # fmt: skip

    def recording_works(self, step: str) -> None:
        """A step that had failed works again; the end of the outage is said once."""
        if step not in self.health.steps:
            return
        recovered = self.health.works(step)
        if recovered:
            svc = self.service
            self._count_dropped()
            log.info("target %s: recording works again", self.name)
            if svc.metrics is not None:
                svc.metrics.recording(self.name, True)
            svc.notify(
                "recording_recovered", self.name, None, at=iso(time.time()),
                rows_dropped=self.rows_dropped(),
            )  # fmt: skip

    def rows_dropped(self) -> int:
        """Rows this target lost to a refusing disk (memory bounds reached), in all."""
        segment = self.segment.writer.dropped if self.segment is not None else 0
        capture = self.capture.dropped if self.capture is not None else 0
        return self.health.dropped + self.held.dropped + segment + capture

    def _count_dropped(self) -> None:
        total = self.rows_dropped()
        if total > self._dropped_told and self.service.metrics is not None:
            self.service.metrics.rows_dropped(self.name, total - self._dropped_told)
        self._dropped_told = max(self._dropped_told, total)

    # -- views ----------------------------------------------------------------------------

    def _live(self, now: float) -> list[tuple[float, str, bool, float]]:
        return [row for row in self.window if row[0] >= now - WINDOW_S]

    def shares(self, now: float) -> dict[str, float]:
        rows = self._live(now)
        counts: dict[str, int] = {}
        for _, version, _, _ in rows:
            counts[version] = counts.get(version, 0) + 1
        total = len(rows)
        return {v: n / total for v, n in counts.items()} if total else {}

    def status(self) -> dict[str, Any]:
        """The CONTRACT ``/api/v1/targets`` item (without ``recent_runs``)."""
        now = time.time()
        rows = self._live(now)
        shares = self.shares(now)
        known = {v: s for v, s in shares.items() if v != "unknown"}
        current = max(known or shares, key=lambda v: (known or shares)[v]) if shares else None
        ok_lat = np.asarray([r[3] for r in rows if r[2]], dtype=float)
        errors = sum(1 for r in rows if not r[2])
        state = "idle"
        if self.service.running_on(self.name):
            state = "running"
        if self.capture is not None:
            state = "capturing"
        return {
            "name": self.name,
            "url": self.cfg.describe_url(),
            "state": state,
            "current_version": current,
            "versions": shares,
            "window_s": WINDOW_S,
            "requests": len(rows),
            "error_rate": errors / len(rows) if rows else None,
            "p50_ms": float(np.percentile(ok_lat, 50)) if ok_lat.size else None,
            "p99_ms": float(np.percentile(ok_lat, 99)) if ok_lat.size else None,
            "rollout": self._rollout_view(),
            "verdict": self._latest_verdict(),
            **self._health_view(),
        }

    def _latest_verdict(self) -> str | None:
        """The latest rollout's verdict (CONTRACT: targets' ``verdict``): the open capture's
        (cached ``VERDICT_CACHE_S``), else the last closed one's, judged once; None: none."""
        if self.capture is not None:
            return str(self.verdict(None, None)["verdict"])
        if not self.recent:
            return None
        last = self.recent[0]
        if last.verdict is None:
            last.verdict = str(self.verdict(None, None, run_id=last.run_id)["verdict"])
        return last.verdict

    def _health_view(self) -> dict[str, Any]:
        """``health`` and ``problems`` (CONTRACT: the service's door)."""
        problems = self.health.problems()
        others = [self.last_error] if self.last_error else []
        dropped = self.rows_dropped()
        if dropped:
            others.append(f"{dropped} samples lost: the disk refused them and memory was full")
        return {
            "health": healing.health_of(self.health.ok, others),
            "problems": problems + others,
        }

    def _rollout_view(self) -> dict[str, Any] | None:

        if self.capture is not None:
            baseline, candidate = self._roles(self.capture)
            status = self.capture.outcome or self._replacement_status() or "capturing"
            return {
                "run_id": self.capture.run_id,
                "from_version": baseline,
                "to_version": candidate,
                "started_at": iso(self.capture.started_ts),
                "status": status,
            }
        if self.recent:
            last = self.recent[0]
            return {
                "run_id": last.run_id,
                "from_version": last.baseline,
                "to_version": last.candidate,
                "started_at": iso(last.started_ts),
                "status": last.outcome or "incomplete",
            }
        return None

    def _replacement_status(self) -> str | None:
        rid = self.capture.replacement_id if self.capture is not None else None
        for event in reversed(self._replacement_events):
            if event.get("replacement_id") == rid:
                return str(event.get("status"))
        return None

    def knows_rollout(self, run_id: str) -> bool:
        """Whether ``run_id`` is the open capture or one of the recent rollouts."""
        if self.capture is not None and self.capture.run_id == run_id:
            return True
        return any(r.run_id == run_id for r in self.recent)

    def verdict_of(self, run_id: str | None) -> dict[str, Any] | None:
        """The verdict body of rollout ``run_id`` (open or recent), else of the open capture;
        None when neither is there (a Flagger gate: nothing to judge)."""
        if run_id is not None and self.knows_rollout(run_id):
            return self.verdict(None, None, run_id=run_id)
        if self.capture is not None:
            return self.verdict(None, None, run_id=self.capture.run_id)
        return None

    def verdict(
        self, candidate: str | None, baseline: str | None, run_id: str | None = None
    ) -> dict[str, Any]:
        """The verdict body of the open capture, else of the latest rollout that has the
        asked-for versions (``candidate``/``baseline`` None: any); ``run_id``: that one."""
        from probes.serve.verdict import no_rollout_body, verdict_body

        now = time.time()
        source = self._verdict_source(candidate, baseline, run_id)
        if source is None:
            return dict(no_rollout_body(self.name, now))
        run_id, base, cand, size, arrays = source
        key = (run_id, base, cand, size)
        cached = self._verdict_cache
        if cached is not None and cached[0] == key and now - cached[2] < VERDICT_CACHE_S:
            return cached[1]
        versions, latency, ok = arrays()
        body = verdict_body(
            target=self.name,
            run_id=run_id,
            baseline=base,
            candidate=cand,
            versions=versions,
            latency_ms=latency,
            ok=ok,
            slos=self.cfg.slos,
            updated_at=now,
        )
        self._verdict_cache = (key, body, now)
        return body

    def _verdict_source(
        self, candidate: str | None, baseline: str | None, run_id: str | None = None
    ) -> Any:
        """(run id, baseline, candidate, samples, arrays()) of the rollout to judge, or None."""
        asked = [v for v in (candidate, baseline) if v is not None]
        if self.capture is not None and run_id in (None, self.capture.run_id):
            buffer = self.capture.samples
            roles = cap.judged_roles(candidate, baseline, *self._roles(self.capture))
            if roles is not None and all(v in buffer.seen for v in asked):
                return (self.capture.run_id, *roles, len(buffer), buffer.arrays)
        for r in self.recent:
            if run_id is not None and r.run_id != run_id:
                continue
            roles = cap.judged_roles(candidate, baseline, r.baseline, r.candidate)
            if roles is not None and all(v in r.seen for v in asked):
                return (r.run_id, *roles, len(r.ok), lambda r=r: (r.versions, r.latency, r.ok))
        return None


# --------------------------------------------------------------------------- scheduled runs


@dataclass
class JobHandle:
    job: Job
    stop: threading.Event
    thread: threading.Thread
    done: asyncio.Event
    result: JobResult | None = None


class _Existing:
    """``run_id in existing``: whether a run directory of that name exists."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir

    def __contains__(self, run_id: object) -> bool:
        return isinstance(run_id, str) and (self.runs_dir / run_id).exists()


# --------------------------------------------------------------------------- the service


class Service:
    """The ``probes serve`` process minus its HTTP routes (``probes.serve.http`` serves it:
    this class implements its ``ServiceView``)."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        index: Any = None,
        metrics: Any = None,
        runner: Runner | None = None,
        watch_interval: float | None = None,
    ) -> None:
        self.config = config
        self.auth_token = config.auth_token
        self.runs_dir = config.serve.runs_dir
        self.index = index
        self.metrics = metrics
        self.runner: Runner = runner or RecordingRunner()
        self.watch_interval = watch_interval
        self.stop_event = asyncio.Event()
        self.stopping = False
        self.workers: dict[str, TargetWorker] = {}
        self.jobs: dict[str, JobHandle] = {}
        self.schedule_states: dict[str, sch.ScheduleState] = {}
        self.schedule_log: deque[dict[str, Any]] = deque(maxlen=200)
        self.blocking: Executor = ThreadPoolExecutor(8, thread_name_prefix="serve-io")
        self.reports: Executor = ThreadPoolExecutor(1, thread_name_prefix="serve-report")
        self._pending: set[asyncio.Future[Any]] = set()
        #: Runs being closed (shards flushed, manifest ended): awaited in full on stop.
        self._closing: set[asyncio.Future[Any]] = set()
        #: Captures whose run directories are being made (``TargetWorker._open_capture``).
        self.opening: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._ready = False
        self.stop_reason = "stopped"
        self._http: Any = None
        self.bound_port: int | None = None
        self.recovered: list[str] = []
        self.notifier: Any = None
        #: (series name, run id) of every regression already notified (threads share it).
        self._regressions_told: set[tuple[str, str]] = set()
        self._regressions_lock = threading.Lock()
        #: One service per runs_dir (issue 21): taken in ``start``, freed at the end of ``stop``.
        self.runs_dir_lock = RunsDirLock(self.runs_dir)
        #: Each target's settled serving version, kept across restarts (issue 21).
        self.served = ServedVersions(self.runs_dir)
        #: Flagger canary checksums -> the capture of that revision (issue 21).
        self.canary_ties = CanaryTies()

    # -- ServiceView ----------------------------------------------------------------------

    def ready(self) -> bool:
        """Started, not stopping, and no target's recording stopped (issue 21)."""
        return self._ready and not self.stopping and all(w.health.ok for w in self.workers.values())

    def target_names(self) -> list[str]:
        return [t.name for t in self.config.targets]

    def target_status(self, name: str) -> dict[str, Any]:
        return self.workers[name].status()

    def verdict(self, target: str, candidate: str | None, baseline: str | None) -> dict[str, Any]:
        worker = self.workers.get(target)
        if worker is None:
            from probes.serve.verdict import no_rollout_body

            return dict(no_rollout_body(target, time.time()))
        return worker.verdict(candidate, baseline)

    def flagger_target(self, namespace: str, name: str) -> str | None:
        ref = f"{namespace}/{name}"
        return next((t.name for t in self.config.targets if ref in t.flagger), None)

    def open_capture(self, target: str, reason: str, checksum: str | None = None) -> str | None:
        """Open a capture on ``target`` unless one is open; with a Flagger ``checksum``, tie
        it to the capture (one already tied to that revision is kept, open or closed)."""
        if self.stopping:  # a run opened now would never be closed
            return None
        worker = self.workers.get(target)
        if worker is None:
            return None
        tied = self.canary_ties.run_id(target, checksum)
        if tied is not None and worker.knows_rollout(tied):
            return tied
        run_id = worker.request_capture(reason)
        if checksum and run_id is not None:
            self.canary_ties.tie(target, checksum, run_id)
        return run_id

    def flagger_verdict(self, target: str, checksum: str | None) -> dict[str, Any] | None:
        """The verdict body a Flagger gate judges: the capture tied to ``checksum``, else
        the open capture; None when there is nothing to judge."""
        worker = self.workers.get(target)
        if worker is None:
            return None
        return worker.verdict_of(self.canary_ties.run_id(target, checksum))

    def start_run(
        self, target: str, kind: str, duration_s: float | None, args: Mapping[str, Any]
    ) -> str:
        """Start a run now (``POST /api/v1/targets/{name}/runs``); its run id."""
        if self.stopping:
            from probes.serve.http import Conflict

            raise Conflict("the service is stopping")
        cfg = self.config.target(target)  # KeyError -> 404
        if kind not in KINDS:
            raise ConfigError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        duration = 60.0 if duration_s is None else duration_s
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not (math.isfinite(duration) and duration > 0)
        ):
            raise ConfigError(f"duration_s: {duration_s!r} must be a number of seconds > 0")
        if not isinstance(args, Mapping):
            raise ConfigError("args: expected an object of the verb's flags")
        validate_args(kind, args, duration_s=float(duration), slos=cfg.slos, place="args")
        busy = self._conflict(target, kind)
        if busy is not None:
            from probes.serve.http import Conflict

            raise Conflict(busy)
        base = f"{target}-{kind}-{_stamp(time.time())}"
        rid = fresh_run_id(self.runs_dir, base)
        job = Job(rid, kind, cfg, self.runs_dir, "api", float(duration), args=dict(args))
        self._launch(job)
        return rid

    def _conflict(self, target: str, kind: str) -> str | None:
        worker = self.workers.get(target)
        loads = sch.LOAD_KINDS
        if kind in loads and worker is not None and worker.capture is not None:
            return f"a rollout capture ({worker.capture.run_id}) is open on {target}"
        for handle in self.jobs.values():
            job = handle.job
            same = job.kind == kind or (kind in loads and job.kind in loads)
            if job.target.name == target and same:
                return f"run {job.run_id} ({job.kind}) is still running on {target}"
        return None

    def running_on(self, target: str) -> bool:
        return any(h.job.target.name == target for h in self.jobs.values())

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover, open the index, start every target and the scheduler."""
        loop = asyncio.get_running_loop()
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"serve.runs_dir: cannot create {self.runs_dir}: {exc}") from exc
        self.runs_dir_lock.acquire()  # before recovering: another service's runs are live
        if self.index is None:
            self.index = await loop.run_in_executor(self.blocking, self._open_index)
        if self.metrics is None:
            self.metrics = self._make_metrics()
        if self.config.notify:
            from probes.serve.notify import Notifier

            self.notifier = Notifier(
                self.config.notify, self.config.notify_urls, self._record_notification
            )
        self.recovered = await loop.run_in_executor(self.blocking, self._recover)
        loop.run_in_executor(self.reports, _warm_up)
        served = await loop.run_in_executor(self.blocking, self.served.load)
        for cfg in self.config.targets:
            worker = TargetWorker(self, cfg)
            # a version other than the one serving at the last stop answering: a capture
            worker.state = cap.restore(worker.state, served.get(cfg.name))
            self.workers[cfg.name] = worker
        for coro, name in (
            (self._start_targets(), "start-targets"),
            (self._ticker(), "ticker"),
            (self._flusher(), "flusher"),
            (self._scheduler(), "scheduler"),
            (self._retention(), "retention"),
            (self._load_recent(), "load-rollouts"),
        ):
            task = asyncio.create_task(coro, name=name)
            task.add_done_callback(_log_crash)
            self._tasks.append(task)

    def _open_index(self) -> Any:
        """The run index; an unusable path (unwritable, under a file) is ``serve.index``."""
        import sqlite3

        from probes.serve.index import RunIndex

        path = self.config.serve.index
        try:
            return RunIndex(path, self.runs_dir)
        except (OSError, sqlite3.Error) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"serve.index: cannot use {str(path)!r}: {why}") from exc

    def _make_metrics(self) -> Any:
        from probes.serve.metrics import Metrics

        try:
            version = metadata.version("proton-probe")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return Metrics(version)

    async def _start_targets(self) -> None:
        n = len(self.workers)
        workers = list(self.workers.values())
        results = await asyncio.gather(
            *(w.start(k / n) for k, w in enumerate(workers)), return_exceptions=True
        )
        failed = [(w, r) for w, r in zip(workers, results, strict=True) if isinstance(r, Exception)]
        for worker, exc in failed:  # one target's bug never keeps the others from starting
            worker.last_error = f"could not start: {exc}"
            log.error("target %s could not start", worker.name, exc_info=exc)
        if not self.stopping and not failed:
            self._ready = True
            log.info("ready: %d targets probed", len(self.workers))

    async def serve_http(self) -> None:
        """Listen on ``serve.listen`` with the routes of ``probes.serve.http``."""
        from aiohttp import web

        from probes.serve.http import make_app

        runner = web.AppRunner(make_app(self), access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self.config.serve.host, self.config.serve.port
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"serve.listen: cannot listen on {self.config.serve.listen}: {exc.strerror}"
            ) from exc
        self._http = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else port

    async def run(
        self, *, http: bool = True, on_listening: Callable[[str, int], None] | None = None
    ) -> None:
        """Start, serve until ``request_stop`` (or ``stop_event``), then stop."""
        try:
            await self.start()
            if http:
                await self.serve_http()
                if on_listening is not None and self.bound_port is not None:
                    on_listening(self.config.serve.host, self.bound_port)
            await self.stop_event.wait()
        finally:
            await self.stop(self.stop_reason)

    def request_stop(self, reason: str) -> None:
        """Ask ``run`` to stop (a signal handler calls this)."""
        self.stop_reason = reason
        self.stop_event.set()

    async def stop(self, reason: str = "stopped") -> None:
        """Stop scheduling and runs, close every open run, wait (bounded) for the reports."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_event.set()
        loop = asyncio.get_running_loop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for handle in list(self.jobs.values()):
            handle.stop.set()  # the recording library stops Locust with it
        await asyncio.gather(*(w.stop_probes() for w in self.workers.values()))
        await asyncio.gather(
            *(loop.run_in_executor(self.blocking, w.stop_watcher) for w in self.workers.values())
        )
        for worker in self.workers.values():
            try:
                worker.close_all(reason)
            except Exception:  # one target's close never keeps the others' runs open
                log.exception("target %s: closing its runs failed", worker.name)
        if self.jobs:
            waits = [h.done.wait() for h in self.jobs.values()]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), SHUTDOWN_JOBS_S)
        if self._closing:  # every run's rows on disk and its manifest ended, reports or not
            await asyncio.wait(set(self._closing), timeout=SHUTDOWN_CLOSE_S)
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=SHUTDOWN_REPORT_S)
        if self._http is not None:
            await self._http.cleanup()
        self.reports.shutdown(wait=False, cancel_futures=True)
        for unmade in list(self._pending):  # reports not made in time: the next start makes them
            unmade.cancel()
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=1.0)
        if self.notifier is not None:  # what is queued gets a bounded last chance
            await loop.run_in_executor(self.blocking, self._close_notifier)
        if self.index is not None:
            await loop.run_in_executor(self.blocking, self._close_index)
        self.blocking.shutdown(wait=False)
        self.runs_dir_lock.release()

    def _close_notifier(self) -> None:
        self.notifier.flush(SHUTDOWN_NOTIFY_S)
        self.notifier.close()

    # -- notifications and trends ----------------------------------------------------------

    def notify(self, kind: str, target: str | None, run_id: str | None, **details: Any) -> None:
        """Queue a notification to every ``[[notify]]`` webhook that wants ``kind`` (never
        blocks: the notifier sends from threads of its own)."""
        if self.notifier is not None:
            self.notifier.notify(kind, target, run_id, details)

    def _record_notification(
        self, kind: str, target: str | None, run_id: str | None, status: str, detail: str
    ) -> None:
        if self.index is not None:
            self.index.record_notification(kind, target, run_id, status, detail)

    def _summaries(self, **filters: Any) -> list[dict[str, Any]]:
        """Blocking: the summaries of indexed runs, oldest first (for trends)."""
        rows = self.index.query(limit=TREND_RUNS, **filters) if self.index is not None else []
        summaries = []
        for row in reversed(rows):
            summary = read_summary(self.runs_dir / row.run_id)
            if summary is not None:
                summaries.append(summary)
        return summaries

    def target_trends(self, name: str) -> list[dict[str, Any]]:
        """Blocking: the series that matter run over run for one target (the Target page)."""
        from reports.trends import trends

        return trends(self._summaries(target=name))

    def schedule_trends(self, name: str) -> list[dict[str, Any]]:
        """Blocking: the same for one schedule's runs (the Trends page)."""
        from reports.trends import trends

        return trends(self._summaries(schedule=name))

    def _check_regressions(self, schedule: str, target: str) -> None:
        """Blocking: notify each regression newly found in the schedule's series, once."""
        from reports.trends import regressions

        if not self._regressions_told and self.index is not None:
            told = self.index.notifications(limit=1000)
            self._regressions_told |= {
                (n.detail, n.run_id or "") for n in told if n.kind == "regression"
            }
        for found in regressions(self.schedule_trends(schedule)):
            key = (f"{found['series']}", str(found["run_id"]))
            with self._regressions_lock:
                if key in self._regressions_told:
                    continue
                self._regressions_told.add(key)
            self.notify(
                "regression", target, found["run_id"], schedule=schedule,
                series=found["series"], change=found.get("change"),
                mean_before=found.get("mean_before"), mean_after=found.get("mean_after"),
            )  # fmt: skip

    def _baseline_of(self, schedule: str, run_id: str) -> str | None:
        """The run a schedule's runs are compared with: its pinned run (the oldest, if
        several), else its first run; never ``run_id`` itself."""
        if self.index is None:
            return None
        rows = [
            r for r in self.index.query(schedule=schedule, limit=TREND_RUNS) if r.run_id != run_id
        ]
        rows = [r for r in rows if r.ended_ts is not None and r.state == "closed"]
        pinned = [r for r in rows if r.pinned]
        chosen = min(pinned or rows, key=lambda r: r.started_ts, default=None)
        return chosen.run_id if chosen is not None else None

    def _compare_with_baseline(self, schedule: str, target: str, run_id: str) -> None:
        """Blocking: compare a scheduled run with its schedule's baseline, sample by sample
        (``reports.compare``: written into the run as ``compare-<baseline>.*``); a worse run
        is notified as a regression."""
        from reports.compare import compare_runs, write_comparison

        baseline = self._baseline_of(schedule, run_id)
        run_dir = self.runs_dir / run_id
        if baseline is None or read_summary(run_dir) is None:
            return
        try:
            result = compare_runs(self.runs_dir / baseline, run_dir)
        except ProbesError as exc:
            log.warning("run %s: not compared with %s: %s", run_id, baseline, exc)
            return
        write_comparison(result, run_dir)
        if result["judgement"] == "worse":
            self.notify(
                "regression", target, run_id, schedule=schedule, baseline=baseline,
                series="compared with the baseline run", judgement=result["judgement"],
            )  # fmt: skip

    def schedule_status(self, target: str) -> list[dict[str, Any]]:
        """The Target page's schedules: next fire time, the last run and its result, misses."""
        out = []
        now = time.time()
        for schedule in self.config.schedules:
            if schedule.target != target:
                continue
            entries = [e for e in self.schedule_log if e.get("schedule") == schedule.name]
            started = [e for e in entries if e.get("action") in ("start", "replace")]
            last = started[-1]["run_id"] if started else None
            handle = self.jobs.get(last) if last else None
            out.append(
                {
                    "name": schedule.name,
                    "kind": schedule.kind,
                    "cron": schedule.timing.cron,
                    "every": schedule.timing.describe() if schedule.timing.every_s else None,
                    "next_fire_at": iso(sch.next_fire(schedule.timing, now)),
                    "last_run_id": last,
                    "last_result": "running" if handle is not None else None,
                    "missed": sum(int(e.get("missed") or 0) for e in entries),
                }
            )
        return out

    def _close_index(self) -> None:
        with contextlib.suppress(Exception):
            self.index.flush(5.0)
        self.index.close()

    # -- finishing runs -------------------------------------------------------------------

    def finalize(
        self,
        open_run: OpenRun | OpenCapture,
        interrupted: str | None = None,
        *,
        figures: bool = True,
        target: str | None = None,
        **fields: Any,
    ) -> None:
        """Close a run off the loop: flush its shards and end its manifest (``blocking``
        pool: the rows are on disk first, whatever the reports' queue holds), then report it
        (``reports`` pool) and index it. On stop every close is awaited (bounded by
        ``SHUTDOWN_CLOSE_S``), the reports only for ``SHUTDOWN_REPORT_S``: a run closed but
        not reported is reported at the next start (``_recover``).

        Canary segments are reported without figures (``probes report RUN_DIR`` draws
        them): hundreds of targets' hourly segments would otherwise keep a core drawing."""
        loop = asyncio.get_running_loop()
        ended = time.time()

        worker = self.workers.get(target) if target is not None else None

        async def close() -> OpenRun:
            # a capture whose directory is still being made is closed once it exists
            done = await open_run.opened() if isinstance(open_run, OpenCapture) else open_run
            close_it = functools.partial(_close_run, done, ended, interrupted, fields)
            while True:  # a full disk: retried with backoff; on stop, the next start recovers
                try:
                    await loop.run_in_executor(self.blocking, close_it)
                except Exception as exc:
                    if worker is None or self.stopping:
                        raise
                    worker.recording_failed("closing a run", exc)
                    step = worker.health.steps["closing a run"]
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self.stop_event.wait(), healing.retry_delay(step.failures)
                        )
                    continue
                if worker is not None:
                    worker.recording_works("closing a run")
                return done

        closed = asyncio.ensure_future(close())
        self._closing.add(closed)
        closed.add_done_callback(self._closing.discard)

        async def report() -> None:
            done: OpenRun | None = None
            try:
                done = await closed
                make = functools.partial(_report, done.run.path, figures=figures)
                await loop.run_in_executor(self.reports, make)
            except asyncio.CancelledError:
                pass  # stopping: the next start reports it
            except RuntimeError as exc:  # the reports pool shut down meanwhile (stopping)
                log.info("run %s: left for the next start to report (%s)", open_run.run_id, exc)
            except Exception as exc:
                log.error("run %s: closing failed: %s", open_run.run_id, exc)
            finally:
                if self.index is not None and done is not None:
                    self.index.put_run_dir(done.run.path)

        task = asyncio.ensure_future(report())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _recover(self) -> list[str]:
        """Blocking: runs a crash left open are closed ``interrupted``, reported, indexed;
        service runs closed but never reported are reported."""
        done = []
        from probes.serve.index import run_dirs

        for path in sorted(run_dirs(self.runs_dir).values()):  # no symlink out of runs_dir
            try:
                manifest = read_manifest(path)
            except ProbesError:
                continue
            if manifest.get("trigger") not in SERVICE_TRIGGERS:
                continue
            if manifest.get("ended_ts") is None:
                recover_journals(path)  # the canary rows of its last seconds
                run = Run.open(path)
                reason = "left open by a crash or kill; closed when the service restarted"
                run.finish(ended_at=_last_activity(path, run.started_ts), interrupted=reason)
            elif read_summary(path) is not None and (path / REPORT_HTML_FILE).is_file():
                continue  # closed and reported (a summary without its page: made again)
            _report(path, figures=manifest.get("kind") != "canary")
            if self.index is not None:
                self.index.put_run_dir(path)
            done.append(path.name)
        if done:
            log.info("recovered %d runs: %s", len(done), ", ".join(done))
        return done

    async def _load_recent(self) -> None:
        """After a restart the verdict endpoint answers from each target's latest rollout."""
        loop = asyncio.get_running_loop()
        for worker in self.workers.values():
            if self.index is None or worker.recent:
                continue
            query = functools.partial(self.index.query, target=worker.name, kind="rollout", limit=1)
            rows = await loop.run_in_executor(self.blocking, query)
            for row in rows:
                if row.ended_ts is None:
                    continue
                rollout = await loop.run_in_executor(
                    self.blocking, _load_rollout, self.runs_dir / row.run_id, row
                )
                if rollout is not None and not worker.recent:
                    worker.recent.append(rollout)
                    if self.metrics is not None:
                        self.metrics.verdict(worker.name, worker.verdict(None, None)["verdict"])

    # -- timers ---------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while not self.stopping:
            now = time.time()
            for worker in self.workers.values():
                if worker.started:
                    worker.tick(now)
            await self._save_served()
            await asyncio.sleep(TICK_S - (time.time() % TICK_S) + 0.001)

    async def _save_served(self) -> None:
        """Each target's settled version to disk when one changed (off the loop)."""
        current = {name: w.state.settled for name, w in self.workers.items()}
        changed = self.served.changed(current)
        if changed is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.blocking, self.served.save, changed)

    async def _flusher(self) -> None:
        """Write the canary segments' queued rows to disk, off the loop: every target once per
        ``CANARY_FLUSH_S``, a slice of them each second, so the writes (which hold the GIL
        while building tables) never come as one burst that delays the probes. The others'
        new rows are appended to their shards' journals each second (``ShardWriter.journal``):
        a crash loses at most the last second, and the next start makes them shards."""
        loop = asyncio.get_running_loop()
        slot = 0
        slots = max(1, int(CANARY_FLUSH_S / TICK_S))
        while not self.stopping:
            await asyncio.sleep(TICK_S)
            flush: list[ShardWriter] = []
            journal: list[ShardWriter] = []
            now = time.time()
            for k, w in enumerate(list(self.workers.values())):
                if w.segment is not None:
                    # a failed flush is retried on its backoff (1, 2, 4, 8 s), not its slot:
                    # the rows are on disk within seconds of the disk coming back
                    again = "flushing samples" in w.health.steps and w.health.due(
                        "flushing samples", now
                    )
                    (flush if k % slots == slot or again else journal).append(w.segment.writer)
            slot = (slot + 1) % slots
            if flush or journal:
                await loop.run_in_executor(self.blocking, _flush_all, flush, journal)
            self._flush_health(flush)

    def _flush_health(self, flushed: list[ShardWriter]) -> None:
        """A segment whose flush failed (rows kept queued, bounded) is a recording problem
        of its target until a flush works again."""
        if not flushed:
            return
        writers = {id(w): w for w in flushed}
        for worker in self.workers.values():
            segment = worker.segment
            if segment is None or id(segment.writer) not in writers:
                continue
            error = segment.writer.last_error
            if error is not None:
                worker.recording_failed("flushing samples", error)
            else:
                worker.recording_works("flushing samples")

    async def _retention(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            if self.index is not None:
                days = self.config.serve.retention_days
                gone = await loop.run_in_executor(
                    self.blocking, self.index.expire, time.time(), days
                )
                if gone:
                    log.info("retention: %d runs older than %g days deleted", len(gone), days)
            await asyncio.sleep(RETENTION_EVERY_S)

    # -- the scheduler --------------------------------------------------------------------

    async def _scheduler(self) -> None:
        if not self.config.schedules:
            return
        loop = asyncio.get_running_loop()
        ids = await loop.run_in_executor(
            self.blocking, lambda: [p.name for p in self.runs_dir.iterdir()]
        )
        started = time.time()
        for s in self.config.schedules:
            self.schedule_states[s.name] = sch.initial_state(s.name, ids, started)
        while not self.stopping:
            now = time.time()
            wake = now + TICK_S
            for s in self.config.schedules:
                self._schedule_tick(s, now)
                state = self.schedule_states[s.name]
                wake = min(wake, sch.next_fire(s.timing, max(state.last, now)))
            await asyncio.sleep(max(0.0, wake - time.time()) + 0.001)

    def _schedule_tick(self, s: ScheduleConfig, now: float) -> None:
        worker = self.workers[s.target]
        running = [h for h in self.jobs.values() if h.job.schedule == s.name]
        decision = sch.decide(
            s.name,
            s.timing,
            self.schedule_states[s.name],
            now,
            deadline_s=s.starting_deadline_s,
            concurrency=s.concurrency,
            running=bool(running),
            kind=s.kind,
            capture_open=worker.capture.run_id if worker.capture is not None else None,
            existing=_Existing(self.runs_dir),
        )
        self.schedule_states[s.name] = decision.state
        if decision.action == "wait" and not decision.missed:
            return
        self._record_decision(s, decision)
        if decision.action in ("start", "replace"):
            assert decision.run_id is not None
            job = Job(
                decision.run_id, s.kind, worker.cfg, self.runs_dir, "schedule", s.duration_s,
                schedule=s.name, args=dict(s.args), workers=s.workers,
                expect_workers=s.expect_workers,
            )  # fmt: skip
            if decision.action == "replace":
                for handle in running:
                    handle.stop.set()
                task = asyncio.create_task(self._launch_after(running, job))
                self._tasks.append(task)
            else:
                self._launch(job)

    async def _launch_after(self, previous: list[JobHandle], job: Job) -> None:
        await asyncio.gather(*(h.done.wait() for h in previous))
        if not self.stopping:
            self._launch(job)

    def _record_decision(self, s: ScheduleConfig, d: sch.Decision) -> None:

        entry = {
            "ts": time.time(),
            "at": iso(time.time()),
            "schedule": s.name,
            "target": s.target,
            "action": d.action,
            "fire_at": iso(d.fire_ts) if d.fire_ts is not None else None,
            "run_id": d.run_id,
            "missed": d.missed,
            "reason": d.reason,
        }
        self.schedule_log.append(entry)
        if d.action != "start":
            log.info("schedule %s: %s %s (%s)", s.name, d.action, d.run_id or "", d.reason or "")
        if d.missed or d.action in ("skip", "missed"):
            self.notify(
                "run_missed", s.target, d.run_id, schedule=s.name, missed=d.missed,
                reason=d.reason, fire_at=entry["fire_at"],
            )  # fmt: skip
        if self.metrics is not None:
            for _ in range(min(d.missed, 10_000)):
                self.metrics.missed(s.name)
            if d.action in ("defer", "ran"):
                self.metrics.scheduled_run(
                    s.name, {"defer": "deferred", "ran": "skipped"}[d.action]
                )
        with contextlib.suppress(OSError), (self.runs_dir / SCHEDULER_LOG).open("a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def _launch(self, job: Job) -> JobHandle:
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def body() -> None:
            try:
                result = self.runner.run(job, stop)
            except Exception as exc:  # a broken run is a result, never a dead service
                log.exception("run %s failed", job.run_id)
                path = job.runs_dir / job.run_id
                result = JobResult(job.run_id, path if path.is_dir() else None, failure=repr(exc))
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._job_done, handle, result)

        thread = threading.Thread(target=body, name=f"run-{job.run_id}", daemon=True)
        handle = JobHandle(job, stop, thread, asyncio.Event())
        self.jobs[job.run_id] = handle
        handle.thread.start()
        log.info("run %s started (%s %s on %s)", job.run_id, job.trigger, job.kind, job.target.name)
        loop.call_later(2.0, self._index_if_exists, job.run_id)
        return handle

    def _index_if_exists(self, run_id: str) -> None:
        path = self.runs_dir / run_id
        if self.index is not None and (path / MANIFEST_FILE).exists():
            self.index.put_run_dir(path)

    def _job_done(self, handle: JobHandle, result: JobResult) -> None:
        handle.result = result
        self.jobs.pop(handle.job.run_id, None)
        handle.done.set()
        if result.run_dir is not None and self.index is not None:
            self.index.put_run_dir(result.run_dir)
        if handle.job.schedule is not None and self.metrics is not None:
            self.metrics.scheduled_run(handle.job.schedule, result.result)
        job = handle.job
        if result.result in ("error", "fail"):
            self.notify(
                "run_failed", job.target.name, result.run_id, run_kind=job.kind,
                schedule=job.schedule, result=result.result, failure=result.failure,
                trigger=job.trigger, at=iso(time.time()),
            )  # fmt: skip
        if job.schedule is not None and result.run_dir is not None and not self.stopping:
            # after the index has the run (its writer is a queue: flush off the loop first)
            def check() -> None:
                if self.index is not None:
                    self.index.flush(5.0)
                self._compare_with_baseline(str(job.schedule), job.target.name, result.run_id)
                self._check_regressions(str(job.schedule), job.target.name)

            future = self.blocking.submit(check)
            future.add_done_callback(_log_future_error)
        log.info("run %s ended: %s%s", result.run_id, result.result,
                 f" ({result.failure})" if result.failure else "")  # fmt: skip


# --------------------------------------------------------------------------- helpers (threads)


def _make_capture_run(
    runs_dir: Path,
    run_id: str,
    *,
    target: dict[str, Any],
    settings: dict[str, Any],
    started_at: float,
    fields: dict[str, Any],
) -> tuple[Run, ShardWriter]:
    """Blocking: claim a capture's run directory, write its manifest, open its writer."""
    run = Run.create(
        runs_dir,
        run_id,
        "rollout",
        target=target,
        settings=settings,
        trigger="auto",
        started_at=started_at,
    )
    run.update(**fields)
    return run, run.shard_writer("probe")


def _close_run(
    open_run: OpenRun, ended: float, interrupted: str | None, fields: dict[str, Any]
) -> None:
    """Blocking: flush the run's rows and end its manifest (its report comes after)."""
    open_run.writer.close()
    if interrupted is not None:
        fields = {**fields, "interrupted": interrupted}
    open_run.run.finish(ended_at=ended, **fields)


def _flush_all(writers: list[ShardWriter], journal: Sequence[ShardWriter] = ()) -> None:
    """Blocking: flush ``writers`` and journal ``journal``. A failure keeps the rows queued
    (the next call tries again) and is logged once per writer until it changes or a flush
    works again: a full disk under 500 targets is one warning each, not 500 a second."""
    for writer in writers:
        try:
            writer.flush()
        except Exception as exc:
            _warn_once(writer, "flushing", exc)
        else:
            if writer.last_error is not None:
                log.info("flushing %s works again", writer.directory)
                writer.last_error = None
    for writer in journal:
        try:
            writer.journal()
        except Exception as exc:
            _warn_once(writer, "journaling", exc)


def _warn_once(writer: ShardWriter, what: str, exc: Exception) -> None:
    said = writer.last_error
    if said is None or (type(said), str(said)) != (type(exc), str(exc)):
        log.warning("%s %s failed (rows kept queued): %s", what, writer.directory, exc)
    writer.last_error = exc


def _warm_up() -> None:
    """Import the report code once, early, so that the first capture closing (or a stop)
    does not wait for pandas and matplotlib to load."""
    import reports.figures  # noqa: F401


def _run_ids(runs_dir: Path) -> list[str]:
    return [p.name for p in runs_dir.iterdir() if p.is_dir()]


def _report(path: Path, *, figures: bool = True) -> dict[str, Any] | None:
    from reports import make_report

    try:
        return make_report(path, figures=figures)
    except Exception as exc:  # a run that cannot be reported stays a run (and is indexed)
        log.error("run %s: report failed: %s", path.name, exc)
        return None


def _log_future_error(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("background work failed", exc_info=future.exception())


def _log_crash(task: asyncio.Task[Any]) -> None:
    """A service task that ended with an error says so (an asyncio task's exception is
    otherwise seen only when someone awaits it)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("service task %s failed", task.get_name(), exc_info=task.exception())


def _last_activity(path: Path, started: float) -> float:
    """When a run left open stopped: its last sample's answer (send time plus latency) or
    its last event, from the data. File times are a fallback only: ``recover_journals`` has
    just written the journals' shards, so their mtime is the restart (issue 21: a recovered
    segment ended 31.8 s in instead of 20.1 s, its throughput understated 37 %)."""
    from probes.records import read_events, read_samples

    times: list[float] = []
    with contextlib.suppress(ProbesError, OSError, ValueError, KeyError):
        frame = read_samples(path, ["ts", "latency_ms"])
        if len(frame):
            ends = frame["ts"] + frame["latency_ms"].fillna(0.0) / 1000.0
            times.append(float(ends.max()))
    with contextlib.suppress(ProbesError, OSError, ValueError):
        times += [float(e["ts"]) for e in read_events(path) if isinstance(e.get("ts"), int | float)]
    if not times:
        for p in [path / "events.jsonl", *(path / "samples").glob("*.parquet")]:
            with contextlib.suppress(OSError):
                times.append(p.stat().st_mtime)
    return max([started, *(t for t in times if math.isfinite(t))])


def _load_rollout(path: Path, row: Any) -> Rollout | None:
    """A closed rollout's samples from its run dir (for the verdict after a restart)."""
    from probes.records import read_samples

    try:
        frame = read_samples(path, ["version", "latency_ms", "error"])
    except (ProbesError, OSError, ValueError):
        return None
    return Rollout(
        row.run_id,
        row.from_version,
        row.to_version,
        frame["version"].astype(str).to_numpy(dtype=object),
        frame["latency_ms"].to_numpy(dtype=float),
        frame["error"].isna().to_numpy(dtype=bool),
        row.started_ts,
        row.ended_ts or row.started_ts,
        None,
    )
