"""Scheduled and API-started runs: the one module of the service that calls ``probes.recording``.

``RecordingRunner.run(job, stop)`` is blocking and meant for a thread of its own: it resolves
an api target's workload, turns the job's ``args`` into typed settings
(``probes.recording.settings_from_args``), and calls ``observe``/``load``/``capacity`` with a
run location ``<runs_dir>/<run id>`` and the caller's stop event (which also stops Locust
children). Everything below is the library's; nothing here records samples itself.

``probes.serve.config`` checks a schedule's ``args`` at config time through the same
``settings_from_args``, so a bad config is refused at start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from probes.errors import ProbesError
from probes.serve.config import TargetConfig


@dataclass(frozen=True)
class Job:
    """One run to make: from a schedule's fire time, or from ``POST …/runs``."""

    run_id: str
    kind: str
    target: TargetConfig
    runs_dir: Path
    trigger: str  # schedule | api
    duration_s: float
    schedule: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    workers: int = 0
    expect_workers: int = 0


@dataclass(frozen=True)
class JobResult:
    """What became of a job; ``run_dir`` is None when not even the run directory was made."""

    run_id: str
    run_dir: Path | None
    verdict: str | None = None  # pass | fail | inconclusive, from summary.json
    interrupted: str | None = None
    failure: str | None = None

    @property
    def result(self) -> str:
        """The ``scheduled_runs_total`` result label."""
        if self.failure is not None:
            return "error"
        if self.interrupted is not None:
            return "interrupted"
        return self.verdict or "error"


class Runner(Protocol):
    """Makes one run, blocking; returns early when ``stop`` is set."""

    def run(self, job: Job, stop: threading.Event) -> JobResult: ...


#: One Locust master at a time listens on ``[serve] locust_master``: a run with
#: ``expect_workers`` waits here while another one runs (its workers are that master's).
MASTER_LOCK = threading.Lock()
#: How often a run waiting for the master's port looks at its stop event.
MASTER_WAIT_TICK_S = 0.5


class RecordingRunner:
    """The real runner: ``probes.recording`` in the calling thread.

    Runs with ``expect_workers`` start their Locust master on ``locust_master``, one at a
    time (``MASTER_LOCK``): a second one waits for the first to end (its own schedule's
    concurrency policy decides whether it is started at all), or for its stop.
    """

    def __init__(self, locust_master: str | None = None) -> None:
        self.locust_master = locust_master

    def run(self, job: Job, stop: threading.Event) -> JobResult:
        if not job.expect_workers:
            return self._guarded(job, stop)
        while not MASTER_LOCK.acquire(timeout=MASTER_WAIT_TICK_S):
            if stop.is_set():
                return JobResult(job.run_id, None, interrupted="stop")
        try:
            return self._guarded(job, stop)
        finally:
            MASTER_LOCK.release()

    def _guarded(self, job: Job, stop: threading.Event) -> JobResult:
        try:
            return self._run(job, stop)
        except ProbesError as exc:  # unusable target or platform: a result, not a crash
            return JobResult(job.run_id, _existing(job), failure=str(exc))

    def _run(self, job: Job, stop: threading.Event) -> JobResult:
        from probes import recording

        settings = recording.settings_from_args(
            job.kind,
            job.args,
            duration_s=job.duration_s,
            slos=job.target.slos,
            place="args",
            workers=job.workers,
            expect_workers=job.expect_workers,
            master_bind=self.locust_master if job.expect_workers else None,
        )
        where = recording.RunLocation(
            runs_dir=job.runs_dir,
            run_id=job.run_id,
            trigger=job.trigger,
            schedule=job.schedule,
            target_name=job.target.name,
        )
        verbs: dict[str, Callable[..., recording.Outcome]] = {
            "observe": recording.observe,
            "load": recording.load,
            "capacity": recording.capacity,
        }
        verb = verbs[job.kind]
        target = job.target
        if not target.is_api:
            outcome = verb(target.request, where, settings, stop=stop)
            return _result(outcome)
        from probes.rollout import resolve_target
        from probes.workload import WorkloadClient

        assert target.api is not None and target.workload is not None
        with WorkloadClient(target.api, token_env=target.token_env) as client:
            resolved = resolve_target(client, target.workload)
            platform = recording.Platform(client=client, target=resolved)
            spec = target.request_for(resolved.invoke_url)
            outcome = verb(spec, where, settings, stop=stop, platform=platform)
        return _result(outcome)


def _existing(job: Job) -> Path | None:
    path = job.runs_dir / job.run_id
    return path if path.is_dir() else None


def _result(outcome: Any) -> JobResult:
    summary = outcome.summary or {}
    verdict = (summary.get("verdict") or {}).get("result")
    failure = outcome.failure or outcome.unusable
    return JobResult(outcome.run_id, Path(outcome.run_dir), verdict, outcome.interrupted, failure)
