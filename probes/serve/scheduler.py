"""The scheduler loop: ``Scheduler`` runs ``[[schedules]]`` through ``probes.serve.schedule``.

Each tick asks the pure policy (``schedule.decide``) what to do for every schedule, given its
state, the jobs of that schedule still running and whether its target has a rollout capture
open (``capture_open``, handed in); it launches what is due through ``Jobs``, and keeps every
decision worth telling in a log: in memory for the Target page (``status``) and appended to
``<runs_dir>/scheduler.jsonl``. Missed fire times are counted and notified.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from probes.run import iso
from probes.serve.config import ScheduleConfig, TargetConfig
from probes.serve.context import ServeContext
from probes.serve.jobs import Jobs
from probes.serve.runner import Job
from probes.serve.schedule import Decision, ScheduleState, decide, initial_state, next_fire

log = logging.getLogger(__name__)

SCHEDULER_LOG = "scheduler.jsonl"
#: The loop wakes at least this often (and at each schedule's next fire time).
TICK_S = 1.0
#: Decisions kept in memory for the pages.
LOG_KEPT = 200


class _Existing:
    """``run_id in existing``: whether a run directory of that name exists."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir

    def __contains__(self, run_id: object) -> bool:
        return isinstance(run_id, str) and (self.runs_dir / run_id).exists()


class Scheduler:
    """Fires the schedules' runs (see the module docstring)."""

    def __init__(
        self,
        ctx: ServeContext,
        schedules: Sequence[ScheduleConfig],
        targets: dict[str, TargetConfig],
        jobs: Jobs,
        capture_open: Callable[[str], str | None],
    ) -> None:
        self.ctx = ctx
        self.schedules = list(schedules)
        self.targets = targets
        self.jobs = jobs
        #: The run id of the rollout capture open on a target, or None.
        self.capture_open = capture_open
        self.states: dict[str, ScheduleState] = {}
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_KEPT)

    async def run(self) -> None:
        """The loop, until the service stops (returns at once without schedules)."""
        if not self.schedules:
            return
        loop = asyncio.get_running_loop()
        runs_dir = self.ctx.runs_dir
        ids = await loop.run_in_executor(self.ctx.io, lambda: [p.name for p in runs_dir.iterdir()])
        started = time.time()
        for s in self.schedules:
            self.states[s.name] = initial_state(s.name, ids, started)
        while not self.ctx.stopping.is_set():
            now = time.time()
            wake = now + TICK_S
            for s in self.schedules:
                self.tick(s, now)
                state = self.states[s.name]
                wake = min(wake, next_fire(s.timing, max(state.last, now)))
            await asyncio.sleep(max(0.0, wake - time.time()) + 0.001)

    def tick(self, s: ScheduleConfig, now: float) -> None:
        """Decide for one schedule at ``now`` and act on it."""
        running = self.jobs.of_schedule(s.name)
        decision = decide(
            s.name,
            s.timing,
            self.states[s.name],
            now,
            deadline_s=s.starting_deadline_s,
            concurrency=s.concurrency,
            running=bool(running),
            kind=s.kind,
            capture_open=self.capture_open(s.target),
            existing=_Existing(self.ctx.runs_dir),
        )
        self.states[s.name] = decision.state
        if decision.action == "wait" and not decision.missed:
            return
        self.record(s, decision)
        if decision.action in ("start", "replace"):
            assert decision.run_id is not None
            job = Job(
                decision.run_id, s.kind, self.targets[s.target], self.ctx.runs_dir, "schedule",
                s.duration_s, schedule=s.name, args=dict(s.args), workers=s.workers,
                expect_workers=s.expect_workers,
            )  # fmt: skip
            if decision.action == "replace":
                for handle in running:
                    handle.stop.set()
                self.ctx.tasks.spawn(self.jobs.launch_after(running, job), f"replace-{job.run_id}")
            else:
                self.jobs.launch(job)

    def record(self, s: ScheduleConfig, d: Decision) -> None:
        """Log, count and (for misses) notify one decision."""
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
        self.log.append(entry)
        if d.action != "start":
            log.info("schedule %s: %s %s (%s)", s.name, d.action, d.run_id or "", d.reason or "")
        if d.missed or d.action in ("skip", "missed"):
            self.ctx.notify(
                "run_missed", s.target, d.run_id, schedule=s.name, missed=d.missed,
                reason=d.reason, fire_at=entry["fire_at"],
            )  # fmt: skip
        metrics = self.ctx.metrics
        for _ in range(min(d.missed, 10_000)):
            metrics.missed(s.name)
        if d.action in ("defer", "ran"):
            metrics.scheduled_run(s.name, {"defer": "deferred", "ran": "skipped"}[d.action])
        path = self.ctx.runs_dir / SCHEDULER_LOG
        with contextlib.suppress(OSError), path.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def status(self, target: str) -> list[dict[str, Any]]:
        """The Target page's schedules: next fire time, the last run and its result, misses."""
        out = []
        now = time.time()
        for schedule in self.schedules:
            if schedule.target != target:
                continue
            entries = [e for e in self.log if e.get("schedule") == schedule.name]
            started = [e for e in entries if e.get("action") in ("start", "replace")]
            last = started[-1]["run_id"] if started else None
            handle = self.jobs.get(last) if last else None
            out.append(
                {
                    "name": schedule.name,
                    "kind": schedule.kind,
                    "cron": schedule.timing.cron,
                    "every": schedule.timing.describe() if schedule.timing.every_s else None,
                    "next_fire_at": iso(next_fire(schedule.timing, now)),
                    "last_run_id": last,
                    "last_result": "running" if handle is not None else None,
                    "missed": sum(int(e.get("missed") or 0) for e in entries),
                }
            )
        return out
