"""The service: the composition root of ``probes serve``.

``Service`` builds the parts, hands each a frozen ``ServeContext`` (``context``), starts them
in order and stops them in reverse. It implements the ``ServiceView`` the HTTP layer serves
(``http``) with one-line delegations. Nothing but this module imports this module.

========================= ===================================================================
part                      what
========================= ===================================================================
``target.TargetMonitor``  one per target: the continuous canary, its rolling runs
                          (``segments``), the control plane (``platform_watch``), rollout
                          captures (``rollout_run``), the live window and the recent
                          rollouts for the verdict (``recent``)
``finishing.RunFinisher`` close → report → index every run; crash recovery at start; the
                          bounded waits at stop
``jobs.Jobs``             scheduled and API-started runs (``runner``) in threads
``scheduler.Scheduler``   ``[[schedules]]`` through the pure ``schedule`` policy
``trends.Trends``         series for the pages; baseline comparison and regressions
``tasks.Tasks``           every background task, by group
========================= ===================================================================

Lifecycle: ``start`` takes the runs_dir's lock (one service per runs_dir), marks runs a crash
left open as ``interrupted`` (and reports runs that were closed but never reported), hands
each target the version that served when the service last stopped (``served``: a change
while it was down is a capture), resolves api targets and starts every canary; ``stop``
stops scheduling, stops runs (and with them Locust children), closes every open run (flush,
report, index), waits a bounded time for the reports (its docstring lists the steps) and
frees the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from importlib import metadata
from typing import Any

from aiohttp import web

from probes.errors import ConfigError
from probes.serve import capture as cap
from probes.serve import health
from probes.serve.config import ServeConfig
from probes.serve.context import ServeContext
from probes.serve.finishing import RunFinisher, warm_up
from probes.serve.flagger import CanaryTies
from probes.serve.history import History
from probes.serve.http import Conflict, make_app
from probes.serve.index import RunIndex
from probes.serve.jobs import Jobs
from probes.serve.lock import RunsDirLock
from probes.serve.metrics import Metrics
from probes.serve.notify import Notifier
from probes.serve.recent import load_rollout
from probes.serve.runner import RecordingRunner, Runner
from probes.serve.scheduler import Scheduler
from probes.serve.segments import flush_loop
from probes.serve.served import ServedVersions
from probes.serve.target import TargetMonitor
from probes.serve.tasks import Tasks
from probes.serve.trends import Trends
from probes.serve.verdict import no_rollout_body

log = logging.getLogger("probes.serve")

#: How long the notifier may take to send what is queued at shutdown.
SHUTDOWN_NOTIFY_S = 3.0
TICK_S = 1.0
RETENTION_EVERY_S = 3600.0


class Service:
    """The ``probes serve`` process minus its HTTP routes (``probes.serve.http`` serves it:
    this class implements its ``ServiceView``).

    A composition root: ``start`` opens the index, builds the ``ServeContext`` and the parts
    (``RunFinisher``, ``Trends``, ``Jobs``, ``Scheduler``, one ``TargetMonitor`` per target)
    and starts them; ``stop`` stops them in the reverse order (see its docstring)."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        index: RunIndex | None = None,
        metrics: Metrics | None = None,
        runner: Runner | None = None,
        watch_interval: float | None = None,
    ) -> None:
        self.config = config
        self.auth_token = config.auth_token
        self.runs_dir = config.serve.runs_dir
        #: Opened off the loop by ``start`` unless given (tests give a fake).
        self._given_index = index
        self.index: RunIndex = index  # type: ignore[assignment]  # set by start when None
        self.metrics: Metrics = metrics if metrics is not None else _make_metrics()
        self.runner: Runner = runner or RecordingRunner(config.serve.locust_master)
        #: Every target's recent past in buckets (GET /api/v1/targets/{name}/history).
        self.history = History()
        self.watch_interval = watch_interval
        self.stop_event = asyncio.Event()
        #: Set once ``stop`` begins (``stopping``): nothing new is opened after it.
        self._stopping = asyncio.Event()
        self.tasks = Tasks()
        self.workers: dict[str, TargetMonitor] = {}
        #: Blocking file work (8 threads) and report-making (1 thread: one core drawing).
        self.io_pool: Executor = ThreadPoolExecutor(8, thread_name_prefix="serve-io")
        self.report_pool: Executor = ThreadPoolExecutor(1, thread_name_prefix="serve-report")
        self._ready = False
        self.stop_reason = "stopped"
        self._app_runner: Any = None
        self.bound_port: int | None = None
        self.recovered: list[str] = []
        #: Without ``[[notify]]`` tables it has no webhook and does nothing.
        self.notifier = Notifier(config.notify, config.notify_urls, self._record_notification)
        #: One service per runs_dir: taken in ``start``, freed at the end of ``stop``.
        self.runs_dir_lock = RunsDirLock(self.runs_dir)
        #: Each target's settled serving version, kept across restarts.
        self.served = ServedVersions(self.runs_dir)
        #: Flagger canary checksums -> the capture of that revision.
        self.canary_ties = CanaryTies()
        #: The parts, built by ``start`` once the index is open.
        self.ctx: ServeContext | None = None
        self.finisher: RunFinisher
        self.trends: Trends
        self.jobs: Jobs
        self.scheduler: Scheduler

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` has begun."""
        return self._stopping.is_set()

    def _build(self) -> ServeContext:
        """The context and the parts (once the index is open)."""
        self.finisher = RunFinisher(
            self.runs_dir, self.index, self.io_pool, self.report_pool, self.tasks,
            stopping=self._stopping, recorders=self.workers.get,
        )  # fmt: skip
        ctx = ServeContext(
            serve=self.config.serve,
            io=self.io_pool,
            finish=self.finisher.finish,
            index=self.index,
            metrics=self.metrics,
            notify=self.notify,
            tasks=self.tasks,
            stopping=self._stopping,
            watch_interval=self.watch_interval,
            history=self.history,
        )
        self.trends = Trends(ctx)
        self.jobs = Jobs(ctx, self.runner, on_done=self.trends.after_run)
        targets = {t.name: t for t in self.config.targets}
        self.scheduler = Scheduler(
            ctx, self.config.schedules, targets, self.jobs, capture_open=self._capture_open
        )
        for cfg in self.config.targets:
            self.workers[cfg.name] = TargetMonitor(ctx, cfg)
        return ctx

    def _capture_open(self, target: str) -> str | None:
        """The run id of the rollout capture open on ``target``, or None."""
        worker = self.workers.get(target)
        return worker.capture.run_id if worker is not None and worker.capture else None

    # -- ServiceView ----------------------------------------------------------------------

    def ready(self) -> bool:
        """Started, not stopping, and no target's recording stopped."""
        return self._ready and not self.stopping and all(w.health.ok for w in self.workers.values())

    def target_names(self) -> list[str]:
        return [t.name for t in self.config.targets]

    def target_status(self, name: str) -> dict[str, Any]:
        """The target's item with ``verdict`` (the latest rollout's, as the verdict gauge
        has it), ``health`` and ``problems`` (``health.judge``: its recording, its window's
        errors, that verdict)."""
        worker = self.workers[name]
        status = worker.status()
        if status["state"] == "idle" and self.running_on(name):
            status["state"] = "running"
        status["verdict"] = self.metrics.verdict_of(name)
        status["health"], status["problems"] = health.judge(
            status, recording=worker.recording_problems(), notes=worker.notes()
        )
        return status

    def verdict(self, target: str, candidate: str | None, baseline: str | None) -> dict[str, Any]:
        worker = self.workers.get(target)
        if worker is None:
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
            raise Conflict("the service is stopping")
        cfg = self.config.target(target)  # KeyError -> 404
        return self.jobs.start(cfg, kind, duration_s, args, self._capture_open(target))

    def running_on(self, target: str) -> bool:
        return self.jobs.running_on(target)

    def schedule_status(self, target: str) -> list[dict[str, Any]]:
        """The Target page's schedules (``Scheduler.status``)."""
        return self.scheduler.status(target)

    def target_trends(self, name: str) -> list[dict[str, Any]]:
        """Blocking: one target's series run over run (``Trends.target_trends``)."""
        return self.trends.target_trends(name)

    def schedule_trends(self, name: str) -> list[dict[str, Any]]:
        """Blocking: one schedule's series run over run (``Trends.schedule_trends``)."""
        return self.trends.schedule_trends(name)

    @property
    def schedule_log(self) -> Any:
        """The scheduler's recent decisions (``Scheduler.log``)."""
        return self.scheduler.log

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover, open the index, start every target and the scheduler."""
        loop = asyncio.get_running_loop()
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"serve.runs_dir: cannot create {self.runs_dir}: {exc}") from exc
        self.runs_dir_lock.acquire()  # before recovering: another service's runs are live
        if self._given_index is None:
            self.index = await loop.run_in_executor(self.io_pool, self._open_index)
        self.ctx = self._build()
        self.recovered = await loop.run_in_executor(self.io_pool, self.finisher.recover)
        loop.run_in_executor(self.report_pool, warm_up)
        served = await loop.run_in_executor(self.io_pool, self.served.load)
        for worker in self.workers.values():
            # a version other than the one serving at the last stop answering: a capture
            worker.state = cap.restore(worker.state, served.get(worker.name))
        for coro, name in (
            (self._start_targets(), "start-targets"),
            (self._ticker(), "ticker"),
            (flush_loop(self.ctx, self._monitors), "flusher"),
            (self.scheduler.run(), "scheduler"),
            (self._retention(), "retention"),
            (self._load_recent(), "load-rollouts"),
        ):
            self.tasks.spawn(coro, name)

    def _open_index(self) -> RunIndex:
        """The run index; an unusable path (unwritable, under a file) is ``serve.index``."""
        path = self.config.serve.index
        try:
            return RunIndex(path, self.runs_dir)
        except (OSError, sqlite3.Error) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"serve.index: cannot use {str(path)!r}: {why}") from exc

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
        app_runner = web.AppRunner(make_app(self), access_log=None, handle_signals=False)
        await app_runner.setup()
        host, port = self.config.serve.host, self.config.serve.port
        site = web.TCPSite(app_runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await app_runner.cleanup()
            raise ConfigError(
                f"serve.listen: cannot listen on {self.config.serve.listen}: {exc.strerror}"
            ) from exc
        self._app_runner = app_runner
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
        """Stop in the reverse order of ``start``; each step's reason:

        1. the service's loops (ticker, flusher, scheduler, …): nothing new is decided;
        2. the jobs are asked to stop (the recording library stops Locust with them);
        3. the probes stop and drain (their answers are still recorded), and a segment roll
           under way ends, so that closing sees every row and the latest segment;
        4. the watchers stop (blocking joins, in the io pool);
        5. every target closes its open runs (a capture ``interrupted``);
        6. the jobs' results are awaited (``SHUTDOWN_JOBS_S``);
        7. every close (rows on disk, manifest ended) is awaited, then the reports a while;
        8. the HTTP side stops; reports not made are left for the next start;
        9. the notifier gets a bounded last chance, the index is flushed and closed;
        10. the runs_dir's lock is freed."""
        if self.stopping:
            return
        self._stopping.set()
        self.stop_event.set()
        loop = asyncio.get_running_loop()
        await self.tasks.cancel("service")
        if self.ctx is not None:  # None only when start failed before building the parts
            self.jobs.stop_all()
            await asyncio.gather(*(w.stop_probes() for w in self.workers.values()))
            await asyncio.gather(
                *(loop.run_in_executor(self.io_pool, w.stop_watcher) for w in self.workers.values())
            )
            for worker in self.workers.values():
                try:
                    worker.close_all(reason)
                except Exception:  # one target's close never keeps the others' runs open
                    log.exception("target %s: closing its runs failed", worker.name)
            await self.jobs.wait()
            await self.finisher.drain()
        if self._app_runner is not None:
            await self._app_runner.cleanup()
        if self.ctx is not None:
            await self.finisher.abandon()
        self.report_pool.shutdown(wait=False, cancel_futures=True)
        # what is queued gets a bounded last chance
        await loop.run_in_executor(self.io_pool, self._close_notifier)
        if self.index is not None:  # None only when start failed before opening it
            await loop.run_in_executor(self.io_pool, self._close_index)
        self.io_pool.shutdown(wait=False)
        self.runs_dir_lock.release()

    def _close_notifier(self) -> None:
        self.notifier.flush(SHUTDOWN_NOTIFY_S)
        self.notifier.close()

    def _close_index(self) -> None:
        with contextlib.suppress(Exception):
            self.index.flush(5.0)
        self.index.close()

    # -- notifications ---------------------------------------------------------------------

    def notify(self, kind: str, target: str | None, run_id: str | None, **details: Any) -> None:
        """Queue a notification to every ``[[notify]]`` webhook that wants ``kind`` (never
        blocks: the notifier sends from threads of its own)."""
        self.notifier.notify(kind, target, run_id, details)

    def _record_notification(
        self, kind: str, target: str | None, run_id: str | None, status: str, detail: str
    ) -> None:
        self.index.record_notification(kind, target, run_id, status, detail)

    # -- timers ---------------------------------------------------------------------------

    async def _load_recent(self) -> None:
        """After a restart the verdict endpoint answers from each target's latest rollout."""
        loop = asyncio.get_running_loop()
        for worker in self.workers.values():
            if worker.recent:
                continue
            query = functools.partial(self.index.query, target=worker.name, kind="rollout", limit=1)
            rows = await loop.run_in_executor(self.io_pool, query)
            for row in rows:
                if row.ended_ts is None:
                    continue
                rollout = await loop.run_in_executor(
                    self.io_pool, load_rollout, self.runs_dir / row.run_id, row
                )
                if rollout is not None and not worker.recent:
                    worker.recent.append(rollout)
                    judged = worker.verdict(None, None)
                    self.metrics.verdict(worker.name, judged["verdict"], judged)

    def _monitors(self) -> list[TargetMonitor]:
        return list(self.workers.values())

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
            await loop.run_in_executor(self.io_pool, self.served.save, changed)

    async def _retention(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            days = self.config.serve.retention_days
            gone = await loop.run_in_executor(self.io_pool, self.index.expire, time.time(), days)
            if gone:
                log.info("retention: %d runs older than %g days deleted", len(gone), days)
            await asyncio.sleep(RETENTION_EVERY_S)


def _make_metrics() -> Metrics:
    try:
        version = metadata.version("proton-probe")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return Metrics(version)
