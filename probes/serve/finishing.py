"""Closing, reporting and indexing the service's runs: ``RunFinisher``.

``finish(run)`` closes one run off the loop: its shards are flushed and its manifest ended in
the io pool (the rows are on disk first, whatever the reports' queue holds), then it is
reported in the one-thread report pool and indexed; a close a full or broken disk refuses is
retried with backoff (the target's recording health says so meanwhile). ``recover()`` at
start closes the runs a crash left open (``interrupted``, ending at their last sample) and
reports the runs closed but never reported (a summary without its ``report.html`` too);
``drain()`` at stop waits for every close in full (bounded by ``SHUTDOWN_CLOSE_S``) and for
the reports only ``SHUTDOWN_REPORT_S``: a run closed but unreported is reported at the next start.

It takes anything ``Closable`` (a canary segment, a rollout run whose directory may still be
being made), so it imports neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from probes.errors import ProbesError
from probes.records import (
    ShardWriter,
    read_events,
    read_manifest,
    read_samples,
    recover_journals,
)
from probes.run import REPORT_HTML_FILE, Run, read_summary
from probes.serve.index import RunIndex, run_dirs
from probes.serve.tasks import Tasks

log = logging.getLogger(__name__)

#: On stop, reports still unmade after this long are made at the next start instead.
SHUTDOWN_REPORT_S = 20.0
#: On stop, how long closing the open runs (flush, manifest) may take in all: a slow disk
#: beyond it leaves runs for the next start to close as interrupted.
SHUTDOWN_CLOSE_S = 30.0
#: Triggers of runs the service makes: only those are recovered after a crash.
SERVICE_TRIGGERS = frozenset({"continuous", "auto", "schedule", "api"})


@dataclass
class OpenRun:
    """A run the service is writing: its directory and sample writer."""

    run: Run
    writer: ShardWriter
    ends_ts: float = math.inf

    @property
    def run_id(self) -> str:
        return self.run.run_id

    async def opened(self) -> OpenRun:
        """Itself (a ``Closable`` whose directory exists from the start)."""
        return self


class Closable(Protocol):
    """A run ``RunFinisher.finish`` can close: a canary segment or a rollout run."""

    @property
    def run_id(self) -> str: ...

    async def opened(self) -> OpenRun:
        """The run and writer once made (raises what making them raised)."""
        ...


class Recorder(Protocol):
    """The recording health of the target a run belongs to (``TargetMonitor``)."""

    def recording_failed(self, step: str, exc: BaseException) -> float:
        """``step`` failed: counted, shown, notified once; seconds until the next try."""
        ...

    def recording_works(self, step: str) -> None:
        """``step`` worked (the end of an outage is said once)."""
        ...


def _no_recorder(target: str) -> Recorder | None:
    return None


#: The step a refused close is shown as in the target's ``problems``.
CLOSE_STEP = "closing a run"


class RunFinisher:
    """Close → report → index, for every run the service makes (see the module docstring).

    ``recorders(target)`` finds the target a run belongs to (the service hands it its
    monitors' lookup), so that a close the disk refuses is retried and shown as that
    target's recording problem; ``stopping`` ends the retries (the next start recovers)."""

    def __init__(
        self,
        runs_dir: Path,
        index: RunIndex,
        io: Executor,
        reports: Executor,
        tasks: Tasks,
        *,
        stopping: asyncio.Event | None = None,
        recorders: Callable[[str], Recorder | None] = _no_recorder,
    ) -> None:
        self.runs_dir = runs_dir
        self.index = index
        self.io = io
        self.reports = reports
        self.tasks = tasks
        self.stopping = stopping or asyncio.Event()
        self.recorders = recorders

    def finish(
        self,
        open_run: Closable,
        interrupted: str | None = None,
        *,
        figures: bool = True,
        target: str | None = None,
        **fields: Any,
    ) -> None:
        """Close a run off the loop: flush its shards and end its manifest (``io`` pool: the
        rows are on disk first, whatever the reports' queue holds), then report it
        (``reports`` pool) and index it. A close of ``target``'s run that the disk refuses
        is retried with backoff until it works or the service stops.

        Canary segments are reported without figures (``probes report RUN_DIR`` draws
        them): hundreds of targets' hourly segments would otherwise keep a core drawing."""
        loop = asyncio.get_running_loop()
        ended = time.time()
        recorder = self.recorders(target) if target is not None else None

        async def close() -> OpenRun:
            # a rollout run whose directory is still being made is closed once it exists
            done = await open_run.opened()
            close_it = functools.partial(_close_run, done, ended, interrupted, fields)
            while True:  # a full disk: retried with backoff; on stop, the next start recovers
                try:
                    await loop.run_in_executor(self.io, close_it)
                except Exception as exc:
                    if recorder is None or self.stopping.is_set():
                        raise
                    delay = recorder.recording_failed(CLOSE_STEP, exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), delay)
                    continue
                if recorder is not None:
                    recorder.recording_works(CLOSE_STEP)
                return done

        closed = self.tasks.track(asyncio.ensure_future(close()), "closing")

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
                if done is not None:
                    self.index.put_run_dir(done.run.path)

        self.tasks.track(asyncio.ensure_future(report()), "reports")

    async def drain(self) -> None:
        """On stop: every run's rows on disk and its manifest ended (``SHUTDOWN_CLOSE_S``),
        then the reports a while (``SHUTDOWN_REPORT_S``)."""
        await self.tasks.wait("closing", SHUTDOWN_CLOSE_S)
        await self.tasks.wait("reports", SHUTDOWN_REPORT_S)

    async def abandon(self) -> None:
        """Reports not made in time are cancelled: the next start makes them."""
        self.reports.shutdown(wait=False, cancel_futures=True)
        await self.tasks.cancel("reports", grace=1.0)

    def recover(self) -> list[str]:
        """Blocking: runs a crash left open are closed ``interrupted``, reported, indexed;
        service runs closed but never reported are reported."""
        done = []
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
            self.index.put_run_dir(path)
            done.append(path.name)
        if done:
            log.info("recovered %d runs: %s", len(done), ", ".join(done))
        return done


def _close_run(
    open_run: OpenRun, ended: float, interrupted: str | None, fields: dict[str, Any]
) -> None:
    """Blocking: flush the run's rows and end its manifest (its report comes after)."""
    open_run.writer.close()
    if interrupted is not None:
        fields = {**fields, "interrupted": interrupted}
    open_run.run.finish(ended_at=ended, **fields)


def warm_up() -> None:
    """Import the report code once, early, so that the first capture closing (or a stop)
    does not wait for pandas and matplotlib to load."""
    import reports.figures  # noqa: F401


def _report(path: Path, *, figures: bool = True) -> dict[str, Any] | None:
    from reports import make_report  # heavy (pandas, matplotlib): loaded off the loop

    try:
        return make_report(path, figures=figures)
    except Exception as exc:  # a run that cannot be reported stays a run (and is indexed)
        log.error("run %s: report failed: %s", path.name, exc)
        return None


def _last_activity(path: Path, started: float) -> float:
    """When a run left open stopped: its last sample's answer (send time plus latency) or
    its last event, from the data. File times are a fallback only: ``recover_journals`` has
    just written the journals' shards, so their mtime is the restart (issue 21: a recovered
    segment ended 31.8 s in instead of 20.1 s, its throughput understated 37 %)."""
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
