"""Scheduled and API-started runs in threads: ``Jobs``.

Each job (``probes.serve.runner.Job``) runs ``Runner.run`` in a thread of its own with its own
stop event (which also stops Locust children); its end comes back to the loop, where it is
indexed, counted, notified when it failed, and handed to ``on_done`` (the trends check). A
job only starts and stops (Flagger's per-canary job); the conflict rule says which may start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from probes.errors import ConfigError
from probes.records import MANIFEST_FILE
from probes.run import default_run_id, fresh_run_id, iso
from probes.serve.config import KINDS, TargetConfig
from probes.serve.context import ServeContext
from probes.serve.http import Conflict
from probes.serve.runner import Job, JobResult, Runner
from probes.serve.schedule import LOAD_KINDS

log = logging.getLogger(__name__)

#: Bound on waiting for scheduled runs to stop (their own stop events end them sooner).
SHUTDOWN_JOBS_S = 20.0
#: A job's run is indexed this long after it starts (when its directory exists by then).
INDEX_AFTER_S = 2.0


@dataclass
class JobHandle:
    """A job under way: its stop event, thread, and ``done`` once its result is in."""

    job: Job
    stop: threading.Event
    thread: threading.Thread
    done: asyncio.Event
    result: JobResult | None = None


class Jobs:
    """The jobs under way, by run id (see the module docstring)."""

    def __init__(
        self, ctx: ServeContext, runner: Runner, on_done: Callable[[Job, JobResult], None]
    ) -> None:
        self.ctx = ctx
        self.runner = runner
        self.on_done = on_done
        self.handles: dict[str, JobHandle] = {}

    def __len__(self) -> int:
        return len(self.handles)

    def __iter__(self) -> Iterator[JobHandle]:
        return iter(list(self.handles.values()))

    def get(self, run_id: str) -> JobHandle | None:
        return self.handles.get(run_id)

    def running_on(self, target: str) -> bool:
        """Whether a job of any kind runs on ``target``."""
        return any(h.job.target.name == target for h in self.handles.values())

    def of_schedule(self, schedule: str) -> list[JobHandle]:
        return [h for h in self.handles.values() if h.job.schedule == schedule]

    def conflict(self, target: str, kind: str, capture_open: str | None) -> str | None:
        """Why a run of ``kind`` may not start on ``target`` now, or None: load-ish runs
        exclude an open rollout capture and each other; a kind never runs twice at once."""
        if kind in LOAD_KINDS and capture_open is not None:
            return f"a rollout capture ({capture_open}) is open on {target}"
        for handle in self.handles.values():
            job = handle.job
            same = job.kind == kind or (kind in LOAD_KINDS and job.kind in LOAD_KINDS)
            if job.target.name == target and same:
                return f"run {job.run_id} ({job.kind}) is still running on {target}"
        return None

    def start(
        self,
        cfg: TargetConfig,
        kind: str,
        duration_s: float | None,
        args: Mapping[str, Any],
        capture_open: str | None,
    ) -> str:
        """Start a run now (``POST /api/v1/targets/{name}/runs``); its run id. ConfigError
        naming a bad field; Conflict when ``conflict`` says no."""
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
        from probes.recording import settings_from_args  # heavy: loaded on first use

        settings_from_args(kind, args, duration_s=float(duration), slos=cfg.slos, place="args")
        busy = self.conflict(cfg.name, kind, capture_open)
        if busy is not None:
            raise Conflict(busy)
        runs_dir = self.ctx.runs_dir
        rid = fresh_run_id(runs_dir, f"{cfg.name}-{kind}-{default_run_id(time.time())}")
        self.launch(Job(rid, kind, cfg, runs_dir, "api", float(duration), args=dict(args)))
        return rid

    def launch(self, job: Job) -> JobHandle:
        """Run ``job`` in a thread of its own (on the loop)."""
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
                loop.call_soon_threadsafe(self._done, handle, result)

        thread = threading.Thread(target=body, name=f"run-{job.run_id}", daemon=True)
        handle = JobHandle(job, stop, thread, asyncio.Event())
        self.handles[job.run_id] = handle
        handle.thread.start()
        log.info("run %s started (%s %s on %s)", job.run_id, job.trigger, job.kind, job.target.name)
        loop.call_later(INDEX_AFTER_S, self._index_if_exists, job.run_id)
        return handle

    async def launch_after(self, previous: list[JobHandle], job: Job) -> None:
        """Launch ``job`` once every one of ``previous`` has ended (``replace``)."""
        await asyncio.gather(*(h.done.wait() for h in previous))
        if not self.ctx.stopping.is_set():
            self.launch(job)

    def stop_all(self) -> None:
        """Ask every job to stop (the recording library stops Locust with it)."""
        for handle in self:
            handle.stop.set()

    async def wait(self, timeout: float | None = None) -> None:
        """Wait (at most ``SHUTDOWN_JOBS_S``) for every job's result."""
        if self.handles:
            waits = [h.done.wait() for h in self]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), timeout or SHUTDOWN_JOBS_S)

    def _index_if_exists(self, run_id: str) -> None:
        path = self.ctx.runs_dir / run_id
        if (path / MANIFEST_FILE).exists():
            self.ctx.index.put_run_dir(path)

    def _done(self, handle: JobHandle, result: JobResult) -> None:
        handle.result = result
        self.handles.pop(handle.job.run_id, None)
        handle.done.set()
        job, ctx = handle.job, self.ctx
        if result.run_dir is not None:
            ctx.index.put_run_dir(result.run_dir)
        if job.schedule is not None:
            ctx.metrics.scheduled_run(job.schedule, result.result)
        if result.result in ("error", "fail"):
            ctx.notify(
                "run_failed", job.target.name, result.run_id, run_kind=job.kind,
                schedule=job.schedule, result=result.result, failure=result.failure,
                trigger=job.trigger, at=iso(time.time()),
            )  # fmt: skip
        self.on_done(job, result)
        log.info("run %s ended: %s%s", result.run_id, result.result,
                 f" ({result.failure})" if result.failure else "")  # fmt: skip
