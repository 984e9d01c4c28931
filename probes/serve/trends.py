"""Run-over-run series and regressions: ``Trends``.

The pages' series come from the summaries of indexed runs (``reports.trends``). After each
scheduled run (``after_run``, the ``Jobs`` callback) the run is compared with its schedule's
baseline run sample by sample (``reports.compare``; a worse run is a regression), and each
regression newly found in the schedule's series is notified once, even across restarts (the
index keeps what was notified).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any

from probes.errors import ProbesError
from probes.run import read_summary
from probes.serve.context import ServeContext
from probes.serve.runner import Job, JobResult

log = logging.getLogger(__name__)

#: Most runs a trend reads (newest).
TREND_RUNS = 200
#: How long the check waits for the index to have the run (its writer is a queue).
INDEX_FLUSH_S = 5.0


class Trends:
    """Series for the pages, and the regression check after each scheduled run."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        #: (series name, run id) of every regression already notified (threads share it).
        self._told: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def after_run(self, job: Job, result: JobResult) -> None:
        """On the loop, when a job ended: check a scheduled run in the io pool."""
        if job.schedule is None or result.run_dir is None or self.ctx.stopping.is_set():
            return
        schedule, target = str(job.schedule), job.target.name

        def check() -> None:
            # after the index has the run (its writer is a queue: flush off the loop first)
            self.ctx.index.flush(INDEX_FLUSH_S)
            self.compare_with_baseline(schedule, target, result.run_id)
            self.check_regressions(schedule, target)

        self.ctx.io.submit(check).add_done_callback(_log_future_error)

    def summaries(self, **filters: Any) -> list[dict[str, Any]]:
        """Blocking: the summaries of indexed runs, oldest first (for trends)."""
        rows = self.ctx.index.query(limit=TREND_RUNS, **filters)
        found = []
        for row in reversed(rows):
            summary = read_summary(self.ctx.runs_dir / row.run_id)
            if summary is not None:
                found.append(summary)
        return found

    def target_trends(self, name: str) -> list[dict[str, Any]]:
        """Blocking: the series that matter run over run for one target (the Target page)."""
        from reports.trends import trends  # pandas: loaded on first use

        return trends(self.summaries(target=name))

    def schedule_trends(self, name: str) -> list[dict[str, Any]]:
        """Blocking: the same for one schedule's runs (the Trends page)."""
        from reports.trends import trends

        return trends(self.summaries(schedule=name))

    def check_regressions(self, schedule: str, target: str) -> None:
        """Blocking: notify each regression newly found in the schedule's series, once."""
        from reports.trends import regressions

        if not self._told:
            told = self.ctx.index.notifications(limit=1000)
            self._told |= {(n.detail, n.run_id or "") for n in told if n.kind == "regression"}
        for found in regressions(self.schedule_trends(schedule)):
            key = (f"{found['series']}", str(found["run_id"]))
            with self._lock:
                if key in self._told:
                    continue
                self._told.add(key)
            self.ctx.notify(
                "regression", target, found["run_id"], schedule=schedule,
                series=found["series"], change=found.get("change"),
                mean_before=found.get("mean_before"), mean_after=found.get("mean_after"),
            )  # fmt: skip

    def baseline_of(self, schedule: str, run_id: str) -> str | None:
        """The run a schedule's runs are compared with: its pinned run (the oldest, if
        several), else its first run; never ``run_id`` itself."""
        query = self.ctx.index.query(schedule=schedule, limit=TREND_RUNS)
        rows = [r for r in query if r.run_id != run_id]
        rows = [r for r in rows if r.ended_ts is not None and r.state == "closed"]
        pinned = [r for r in rows if r.pinned]
        chosen = min(pinned or rows, key=lambda r: r.started_ts, default=None)
        return chosen.run_id if chosen is not None else None

    def compare_with_baseline(self, schedule: str, target: str, run_id: str) -> None:
        """Blocking: compare a scheduled run with its schedule's baseline, sample by sample
        (``reports.compare``: written into the run as ``compare-<baseline>.*``); a worse run
        is notified as a regression."""
        from reports.compare import compare_runs, write_comparison

        baseline = self.baseline_of(schedule, run_id)
        runs_dir = self.ctx.runs_dir
        run_dir = runs_dir / run_id
        if baseline is None or read_summary(run_dir) is None:
            return
        try:
            result = compare_runs(runs_dir / baseline, run_dir)
        except ProbesError as exc:
            log.warning("run %s: not compared with %s: %s", run_id, baseline, exc)
            return
        write_comparison(result, run_dir)
        if result["judgement"] == "worse":
            self.ctx.notify(
                "regression", target, run_id, schedule=schedule, baseline=baseline,
                series="compared with the baseline run", judgement=result["judgement"],
            )  # fmt: skip


def _log_future_error(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("background work failed", exc_info=future.exception())
