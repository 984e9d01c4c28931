"""Everything the service does for one target: ``TargetMonitor``.

- a **continuous canary**: ``probes.canary.run_probe`` at ``canary_rate`` in the service's
  loop, with its own client, timeout and in-flight bound, so a slow or dead target never
  stalls another; its rows go to a rolling canary run (``segments``);
- for api targets the control plane (``platform_watch.PlatformWatch``), whose events feed
- the **capture policy** (``probes.serve.capture``, pure) with the canary's versions and the
  clock. On open: a ``rollout_run.RolloutRun`` (its directory made off the loop), the probe
  raised to ``capture_rate`` (the new probe starts before the old one drains, so there is
  no gap), the platform's current state and every later event written to its events. On
  close: handed to ``ctx.finish`` with the rollout block (report, index);
- a **live window** of the last 60 s for ``status`` and the ``/metrics`` shares, and the
  recent rollouts for the verdict endpoint (``recent.RecentRollouts``);
- its **recording health** (``healing.RecordingHealth``): a segment roll, flush, close or
  capture directory a full disk refuses is retried with backoff while the rows wait in
  memory (bounded, the rest counted), shown in ``problems``/``/readyz``/metrics, notified once.

Rows seen during a capture go to both the canary segment and the capture: the canary record
stays continuous, and the rollout run is complete on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from probes.canary import run_probe
from probes.records import Sample, ShardWriter
from probes.run import Run, default_run_id, fresh_run_id, iso
from probes.serve import capture as cap
from probes.serve import healing
from probes.serve.config import TargetConfig
from probes.serve.context import ServeContext
from probes.serve.finishing import OpenRun
from probes.serve.platform_watch import PlatformWatch
from probes.serve.recent import ClosedRollout, RecentRollouts
from probes.serve.rollout_run import RolloutRun, make_rollout_run
from probes.serve.segments import (
    create_segment,
    manifest_settings,
    probe_settings,
    rollout_slos,
)
from probes.settings import RequestSpec

log = logging.getLogger(__name__)

WINDOW_S = 60.0
#: A capture starts with the canary rows of this many seconds before it opened (at most
#: PREROLL_ROWS): its "before" phase and the baseline's evidence for the sequential decision.
#: 30 s at a 2 req/s canary were 60 samples, which bound the baseline's error rate only to
#: ~20 % (alpha 0.01): a candidate with 16 % errors against 141 error-free baseline samples
#: stayed "pending" (error_rate_delta lower bound 0.0047 < 0.005). Ten minutes of canary
#: history (600 error-free samples at 1 req/s bound it to 1.3 %) let the decision fail
#: such a candidate within its first minute; older rows would add drift, not evidence.
PREROLL_S = 600.0
PREROLL_ROWS = 3000
#: Seconds between updates of an open capture's verdict metric.
VERDICT_METRIC_S = 5
#: The recording steps a full or broken disk can refuse (the target's ``problems`` name them).
SEGMENT_STEP = "canary segment"
CAPTURE_STEP = "rollout capture"
FLUSH_STEP = "flushing samples"


class TargetMonitor:
    """One target's canary, captures and views (see the module docstring)."""

    def __init__(self, ctx: ServeContext, cfg: TargetConfig) -> None:
        #: What the service hands every part (io pool, finish, index, metrics, notify, …).
        self.ctx = ctx
        self.cfg = cfg
        self.name = cfg.name
        #: When a capture opens and closes (pure), and what it knows now.
        self.policy = cap.CapturePolicy(
            api=cfg.is_api, settle_s=cfg.settle_s, tail_s=cfg.capture_tail_s
        )
        self.state = cap.CaptureState()
        #: The request probed; an api target's once its workload is resolved.
        self.spec: RequestSpec | None = None if cfg.is_api else cfg.request
        #: The control plane (api targets; idle for url targets).
        self.watch = PlatformWatch(ctx, cfg, on_event=self.on_platform_event)
        #: The canary run taking the rows now, and the roll to the next one under way.
        self.segment: OpenRun | None = None
        self._rolling: asyncio.Task[None] | None = None
        #: The open rollout capture, if any.
        self.capture: RolloutRun | None = None
        #: The last closed rollouts, for the verdict.
        self.recent = RecentRollouts(cfg.name, rollout_slos(cfg))
        #: Captures whose ``verdict_fail`` was told already (during the capture, or at close).
        self._fail_told: set[str] = set()
        #: (ts, version, ok, latency_ms) of the last ``WINDOW_S``.
        #: (ts, version, ok, latency_ms, ttft_ms or NaN) of the last ``WINDOW_S``.
        self.window: deque[tuple[float, str, bool, float, float]] = deque()
        #: Full rows of the last ``PREROLL_S``: a new capture starts with them (its before).
        #: Plain tuples, not Samples: the collector untracks a tuple of plain values, and
        #: 500 targets x 600 rows of tracked NamedTuples would lengthen every full collection.
        self.preroll: deque[tuple[Any, ...]] = deque(maxlen=PREROLL_ROWS)
        self.started = False
        self.last_error: str | None = None
        self._rate_changed = asyncio.Event()
        self._probe_stop: asyncio.Event | None = None
        self._probes: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
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
            spec = await self.watch.resolve()
            if self.ctx.stopping.is_set():
                return
            self.spec = spec
        try:
            first = await asyncio.get_running_loop().run_in_executor(
                self.ctx.io, self._create_segment, time.time()
            )
        except Exception as exc:  # a full disk at start: probe anyway, retry the segment
            self.recording_failed(SEGMENT_STEP, exc)
        else:
            self._adopt_segment(first)
        delay = phase / self.cfg.canary_rate if self.cfg.canary_rate > 0 else 0.0
        self._loop_task = asyncio.create_task(self._probe_loop(delay), name=f"canary-{self.name}")
        self.started = True

    def stop_watcher(self) -> None:
        """Blocking: stop the watcher thread (from an executor)."""
        self.watch.stop()

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
        while not self.ctx.stopping.is_set():
            rate, spec = self.rate(), self.spec
            self._rate_changed.clear()
            if rate > 0 and spec is not None:
                stop = asyncio.Event()
                settings = probe_settings(rate, spec)
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
        ttft_ms = math.nan if sample.ttft_ms is None else sample.ttft_ms
        window.append((sample.ts, sample.version, ok, sample.latency_ms, ttft_ms))
        horizon = sample.ts - WINDOW_S
        while window and window[0][0] < horizon:
            window.popleft()
        preroll = self.preroll
        preroll.append(tuple(sample))
        while preroll and preroll[0][0] < sample.ts - PREROLL_S:  # [0]: ts
            preroll.popleft()
        if self.segment is not None:
            self.segment.writer.add(sample)
        elif self.cfg.canary_rate > 0:  # no segment could be made yet: held, bounded
            self.held.add(sample)
        if self.capture is not None:
            self.capture.add(sample)
        self.ctx.history.add(
            self.name, sample.ts, sample.version, ok, sample.latency_ms, sample.ttft_ms
        )
        metrics = self.ctx.metrics
        outcome = "ok" if ok else str(sample.error)
        ttft = None if sample.ttft_ms is None else sample.ttft_ms / 1000
        metrics.request(self.name, sample.version, "probe", outcome, sample.latency_ms / 1000, ttft)
        if ok:
            metrics.last_success(self.name, sample.ts + sample.latency_ms / 1000)
        self.state, changes = cap.on_sample(self.policy, self.state, sample.version, sample.ts)
        if changes:
            self._apply(changes, sample.ts)
        elif self.capture is not None:
            self.capture.sync(self.state)

    # -- the platform --------------------------------------------------------------------

    def on_platform_event(self, event: dict[str, Any]) -> None:
        """A watcher event (on the loop, once ``PlatformWatch`` remembered it): record it,
        feed the policy."""
        self.state, changes = cap.on_event(self.policy, self.state, event)
        if changes:
            self._apply(changes, float(event["ts"]))
        elif self.capture is not None:
            self.capture.sync(self.state)
            self.capture.events.put(event)

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
        made in the io pool (``make_rollout_run``) and attached when it exists."""
        ctx, spec = self.ctx, self.spec
        if spec is None:
            return
        now = time.time()
        before = [Sample._make(row) for row in self.preroll]
        if not self.cfg.is_api:  # a rollback's run starts with its baseline alone (issue 21)
            before = before[cap.preroll_start([r.version for r in before], self.state.baseline) :]
        start = min([now, ts, *(row.ts for row in before[:1])])
        rid = fresh_run_id(ctx.runs_dir, f"{self.name}-rollout-{default_run_id(now)}")
        loop = asyncio.get_running_loop()
        capture = RolloutRun(
            run_id=rid, started_ts=start, reason=reason, ready=loop.create_future(), opened_ts=now
        )
        capture.sync(self.state)
        self.capture = capture
        for row in before:
            capture.add(row)
        for event in self.watch.snapshot(self.state.replacement_id):
            capture.events.put({**event, "ts": max(float(event["ts"]), start)})
        capture.events.write("marker", "capture opened", ts=now, detail={"reason": reason})
        fields: dict[str, Any] = {"target_name": self.name, "capture": {"reason": reason}}
        if self.watch.platform is not None:
            fields["platform"] = self.watch.manifest_block(capture.replacement_id)
        make = functools.partial(
            make_rollout_run,
            ctx.runs_dir,
            rid,
            target=spec.describe(),
            settings=manifest_settings(
                self.cfg,
                spec,
                self.cfg.capture_rate,
                ctx.serve.segment_s,
                slos=rollout_slos(self.cfg),
                reason=reason,
            ),
            started_at=start,
            fields=fields,
        )
        ctx.tasks.spawn(
            self._attach_capture(capture, make), f"open-{rid}", "opening", log_crash=False
        )
        log.info("target %s: capture %s opened: %s", self.name, rid, reason)
        ctx.notify(
            "rollout_opened", self.name, rid, reason=reason, from_version=capture.baseline,
            to_version=capture.candidate, at=iso(now),
        )  # fmt: skip
        ctx.metrics.rollout(self.name, True)
        ctx.metrics.verdict(self.name, "pending")
        ctx.metrics.keep_versions(self.name, self.recent.kept_versions(self.capture))
        self._rate_changed.set()

    async def _attach_capture(
        self, capture: RolloutRun, make: Callable[[], tuple[Run, ShardWriter]]
    ) -> None:
        """Make the capture's run directory; a full or broken disk is retried with backoff
        (its rows wait in memory, bounded) until it works or the service stops."""
        loop = asyncio.get_running_loop()
        stopping = self.ctx.stopping
        while True:
            try:
                run, writer = await loop.run_in_executor(self.ctx.io, make)
                break
            except Exception as exc:
                log.error("target %s: could not open capture %s: %s", self.name,
                          capture.run_id, exc)  # fmt: skip
                delay = self.recording_failed(CAPTURE_STEP, exc)
                if stopping.is_set():  # left for nobody: the capture is lost, and said so
                    self.health.dropped += capture.waiting
                    capture.fail(exc)
                    if self.capture is capture:
                        self.capture = None
                        self._rate_changed.set()
                        self.ctx.metrics.rollout(self.name, False)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
        self.recording_works(CAPTURE_STEP)
        capture.attach(run, writer)
        self.ctx.index.put_run_dir(run.path)

    def _close_capture(
        self, reason: str, outcome: str | None, interrupted: str | None = None
    ) -> None:
        capture, ctx = self.capture, self.ctx
        assert capture is not None
        self.capture = None
        self._rate_changed.set()
        now = time.time()
        baseline, candidate = capture.roles()
        stopped = self.watch.stopped_marker()
        if stopped is not None:
            capture.events.write("marker", "watch stopped", ts=now, detail=stopped)
        capture.events.write("marker", "capture closed", ts=now, detail={"reason": reason})
        fields: dict[str, Any] = {
            "capture": {
                "reason": capture.reason, "closed": reason, "outcome": outcome,
                # the policy's roles: a change made while the service was down has no
                # baseline sample, so the report alone could not name it (issue 21)
                "from_version": baseline, "to_version": candidate,
            }
        }  # fmt: skip
        if self.watch.platform is not None:
            fields["platform"] = self.watch.manifest_block(capture.replacement_id, outcome)
        versions, latency, ok = capture.samples.arrays()
        rollout = ClosedRollout(
            capture.run_id, baseline, candidate, versions, latency, ok, capture.started_ts, now,
            outcome, ts=np.asarray(capture.samples.ts, dtype=float),
            ttft=np.asarray(capture.samples.ttft, dtype=float),
            opened_ts=capture.opened_ts,
        )  # fmt: skip
        self.recent.add(rollout)
        log.info(
            "target %s: capture %s closed (%s): %s", self.name, capture.run_id, outcome, reason
        )
        ctx.metrics.rollout(self.name, False)
        ctx.metrics.rollout_done(self.name, outcome or "incomplete")
        judged = self.verdict(None, None)
        ctx.metrics.verdict(self.name, judged["verdict"], judged)
        ctx.metrics.keep_versions(self.name, self.recent.kept_versions(self.capture))
        details = {
            "outcome": outcome, "verdict": judged["verdict"], "reason": judged.get("reason"),
            "baseline": baseline, "candidate": candidate, "at": iso(now),
        }  # fmt: skip
        ctx.notify("rollout_closed", self.name, capture.run_id, **details)
        if judged["verdict"] == "fail" and capture.run_id not in self._fail_told:
            ctx.notify("verdict_fail", self.name, capture.run_id, **details)
        ctx.finish(capture, interrupted=interrupted, target=self.name, **fields)

    def _tell_fail(self, run_id: str, judged: dict[str, Any]) -> None:
        """``verdict_fail`` the first time an open capture's verdict fails (the decision can
        fail long before the capture closes: a controller should hear it then)."""
        if judged["verdict"] != "fail" or run_id in self._fail_told:
            return
        self._fail_told.add(run_id)
        self.ctx.notify(
            "verdict_fail", self.name, run_id, outcome=None, verdict="fail",
            reason=judged.get("reason"), baseline=judged.get("baseline"),
            candidate=judged.get("candidate"), decided_at=judged.get("decided_at"),
        )  # fmt: skip

    def request_capture(self, reason: str) -> str | None:
        self.state, changes = cap.on_request(self.policy, self.state, reason, time.time())
        self._apply(changes, time.time())
        return self.capture.run_id if self.capture is not None else None

    # -- segments and time ----------------------------------------------------------------

    def _create_segment(self, now: float) -> OpenRun | None:
        """Blocking (off the loop): the next canary segment (``segments.create_segment``)."""
        return create_segment(self.ctx, self.cfg, self.spec, now)

    def _adopt_segment(self, segment: OpenRun | None) -> None:
        """On the loop: ``segment`` (made by ``_create_segment``) takes this target's rows."""
        ctx = self.ctx
        if segment is None:
            return
        if ctx.stopping.is_set():  # made while the service stopped: closed at once, not left open
            ctx.finish(segment, figures=False)
            return
        self.segment = segment
        held = self.held.take()
        if held:  # rows of a time no segment could be made (a full disk): in order, first
            segment.writer.add_many(sorted(held, key=lambda row: row.ts))
        ctx.index.put_run_dir(segment.run.path)

    async def _roll_segment(self, now: float) -> None:
        """The segment's end: the next one is made off the loop; until it is there, rows go
        on into the old one (its end is when it is closed), so none is lost or unowned."""
        loop = asyncio.get_running_loop()
        try:
            fresh = await loop.run_in_executor(self.ctx.io, self._create_segment, now)
        except Exception as exc:  # a full or broken disk: this target's problem alone
            log.error("target %s: could not open the next canary segment: %s", self.name, exc)
            self.recording_failed(SEGMENT_STEP, exc)
            # the rows go on into the old segment (or wait in memory) until a retry works
            if self.segment is not None:
                self.segment.ends_ts = self.health.steps[SEGMENT_STEP].retry_at
            return
        finally:
            self._rolling = None
        self.recording_works(SEGMENT_STEP)
        old, self.segment = self.segment, None
        self._adopt_segment(fresh)
        if old is not None:
            self.ctx.finish(old, figures=False, target=self.name)

    def tick(self, now: float) -> None:
        """Once a second: roll the segment, let the capture policy see the time, shares."""
        if self._rolling is None and (
            (self.segment is not None and now >= self.segment.ends_ts) or self._segment_due(now)
        ):
            self._rolling = asyncio.create_task(self._roll_segment(now), name=f"roll-{self.name}")
        self._count_dropped()
        self.state, changes = cap.on_tick(self.policy, self.state, now)
        if changes:
            self._apply(changes, now)
        elif self.capture is not None:
            self.capture.sync(self.state)
        metrics = self.ctx.metrics
        if self.window:
            metrics.shares(self.name, self.shares(now))
        if self.capture is not None and int(now) % VERDICT_METRIC_S == 0:
            # the open capture's verdict, as the endpoint answers it (judged from raw samples);
            # verdict_fail is told as soon as the sequential decision fails, once a capture
            judged = self.verdict(None, None)
            metrics.verdict(self.name, judged["verdict"], judged)
            self._tell_fail(self.capture.run_id, judged)

    def close_all(self, interrupted: str) -> None:
        """Close the open runs (on stop): the capture interrupted, the segment cut short."""
        if self.capture is not None:
            outcome = self.capture.outcome
            self._close_capture(f"service stopped ({interrupted})", outcome, interrupted)
        if self.segment is not None:
            old, self.segment = self.segment, None
            self.ctx.finish(old, figures=False, target=self.name)
        if len(self.held):  # nothing could take them before the stop
            self.health.dropped += len(self.held.take())
            self._count_dropped()

    def _segment_due(self, now: float) -> bool:
        """No segment (making one failed): whether the retry's time has come."""
        return (
            self.segment is None
            and self.spec is not None
            and self.cfg.canary_rate > 0
            and SEGMENT_STEP in self.health.steps
            and self.health.due(SEGMENT_STEP, now)
        )

    # -- recording health ---------------------------------------------------------------

    def recording_failed(self, step: str, exc: BaseException) -> float:
        """A step of this target's recording failed: counted, shown, notified once; the
        seconds until it is tried again."""
        now = time.time()
        first = self.health.failed(step, exc, now)
        metrics = self.ctx.metrics
        metrics.recording_error(self.name)
        metrics.recording(self.name, False)
        if first:
            log.error("target %s: recording stopped: %s failed: %s", self.name, step, exc)
            self.ctx.notify(
                "recording_failed", self.name, None, step=step,
                reason=healing.describe(exc), at=iso(now),
            )  # fmt: skip
        return max(0.0, self.health.steps[step].retry_at - now)

    def recording_works(self, step: str) -> None:
        """A step that had failed works again; the end of the outage is said once."""
        if step not in self.health.steps:
            return
        if self.health.works(step):
            self._count_dropped()
            log.info("target %s: recording works again", self.name)
            self.ctx.metrics.recording(self.name, True)
            self.ctx.notify(
                "recording_recovered", self.name, None, at=iso(time.time()),
                rows_dropped=self.rows_dropped(),
            )  # fmt: skip

    def flush_due(self, now: float) -> bool:
        """Whether a failed flush of the segment is to be tried again now (its backoff)."""
        return FLUSH_STEP in self.health.steps and self.health.due(FLUSH_STEP, now)

    def flushed(self, writer: ShardWriter) -> None:
        """The flusher just flushed ``writer``: a failure (rows kept queued, bounded) is a
        recording problem of this target until a flush works again."""
        if self.segment is None or self.segment.writer is not writer:
            return
        if writer.last_error is not None:
            self.recording_failed(FLUSH_STEP, writer.last_error)
        else:
            self.recording_works(FLUSH_STEP)

    def rows_dropped(self) -> int:
        """Rows this target lost to a refusing disk (memory bounds reached), in all."""
        segment = self.segment.writer.dropped if self.segment is not None else 0
        capture = self.capture.dropped if self.capture is not None else 0
        return self.health.dropped + self.held.dropped + segment + capture

    def _count_dropped(self) -> None:
        total = self.rows_dropped()
        if total > self._dropped_told:
            self.ctx.metrics.rows_dropped(self.name, total - self._dropped_told)
        self._dropped_told = max(self._dropped_told, total)

    def recording_problems(self) -> list[str]:
        """What stops its recording now (``health`` ``failing``), one line each."""
        return self.health.problems()

    def notes(self) -> list[str]:
        """Other problems (``health`` ``degraded``): a probe or start error, samples lost."""
        notes = [self.last_error] if self.last_error else []
        dropped = self.rows_dropped()
        if dropped:
            notes.append(f"{dropped} samples lost: the disk refused them and memory was full")
        return notes

    # -- views ----------------------------------------------------------------------------

    def _live(self, now: float) -> list[tuple[float, str, bool, float, float]]:
        return [row for row in self.window if row[0] >= now - WINDOW_S]

    def shares(self, now: float) -> dict[str, float]:
        rows = self._live(now)
        counts: dict[str, int] = {}
        for _, version, *_ in rows:
            counts[version] = counts.get(version, 0) + 1
        total = len(rows)
        return {v: n / total for v, n in counts.items()} if total else {}

    def status(self) -> dict[str, Any]:
        """The CONTRACT ``/api/v1/targets`` item (without ``recent_runs``; the service adds
        ``running``, ``verdict``, ``health`` and ``problems``)."""
        now = time.time()
        rows = self._live(now)
        shares = self.shares(now)
        known = {v: s for v, s in shares.items() if v != "unknown"}
        current = max(known or shares, key=lambda v: (known or shares)[v]) if shares else None
        ok_lat = np.asarray([r[3] for r in rows if r[2]], dtype=float)
        ttft = np.asarray([r[4] for r in rows if r[2] and r[4] == r[4]], dtype=float)
        errors = sum(1 for r in rows if not r[2])
        # "running" (a scheduled or API-started run) is the service's to add: it knows the jobs
        state = "capturing" if self.capture is not None else "idle"
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
            # streamed answers' time to first token (null for a target that does not stream)
            "ttft_p50_ms": float(np.percentile(ttft, 50)) if ttft.size else None,
            "ttft_p99_ms": float(np.percentile(ttft, 99)) if ttft.size else None,
            "rollout": self._rollout_view(),
        }

    def _rollout_view(self) -> dict[str, Any] | None:
        if self.capture is not None:
            baseline, candidate = self.capture.roles()
            status = (
                self.capture.outcome
                or self.watch.replacement_status(self.capture.replacement_id)
                or "capturing"
            )
            return {
                "run_id": self.capture.run_id,
                "from_version": baseline,
                "to_version": candidate,
                # when the change was seen, not the pre-roll's first row
                "started_at": iso(self.capture.opened_ts or self.capture.started_ts),
                "status": status,
            }
        if self.recent:
            last = self.recent[0]
            return {
                "run_id": last.run_id,
                "from_version": last.baseline,
                "to_version": last.candidate,
                "started_at": iso(last.opened_ts or last.started_ts),
                "status": last.outcome or "incomplete",
            }
        return None

    def knows_rollout(self, run_id: str) -> bool:
        """Whether ``run_id`` is the open capture or one of the recent rollouts."""
        return self.recent.knows(self.capture, run_id)

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
        capture = self.capture
        switched = None if capture is None else self.watch.switched_ts(capture.replacement_id)
        return self.recent.verdict(capture, candidate, baseline, run_id, switched)
