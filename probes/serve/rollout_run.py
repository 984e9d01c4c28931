"""A rollout capture being recorded: ``RolloutRun`` (a run of kind ``rollout``, trigger
``auto``).

Its run directory is made off the loop (``Run.create`` fsyncs, and a slow disk must not stall
every target's requests): until ``attach`` its rows and events wait in memory, in order, and
``ready`` is set once they are in the run. ``RunFinisher.finish`` awaits ``opened()``, so a
rollout closed before its directory exists is closed once it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probes.records import EventLog, Sample, ShardWriter, make_event
from probes.run import Run
from probes.serve import healing
from probes.serve.capture import CaptureState
from probes.serve.finishing import OpenRun
from probes.serve.recent import SampleBuffer


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
class RolloutRun:
    """An open rollout capture (see the module docstring)."""

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
    #: When the capture opened (the change was seen); ``started_ts`` is its first row's, the
    #: pre-roll's, minutes earlier.
    opened_ts: float | None = None
    _rows: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        if self.writer is not None:
            self.writer.add(sample)
        elif len(self._rows) < healing.MAX_HELD_ROWS:  # its directory is not there yet
            self._rows.append(sample)
        else:
            self.dropped += 1
        self.samples.add(sample)

    @property
    def waiting(self) -> int:
        """Rows held in memory until its directory exists."""
        return len(self._rows)

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

    def sync(self, state: CaptureState) -> None:
        if state.open:
            self.replacement_id = state.replacement_id or self.replacement_id
            self.baseline = state.baseline or self.baseline
            self.candidate = state.candidate or self.candidate
            self.outcome = state.outcome

    def roles(self) -> tuple[str | None, str | None]:
        """(baseline, candidate): the policy's, else the order callers saw."""
        baseline, candidate = self.baseline, self.candidate
        if baseline is None or candidate is None:
            seen = [v for v in dict.fromkeys(self.samples.versions) if v != "unknown"]
            baseline = baseline or (seen[0] if seen else None)
            others = [v for v in seen if v != baseline]
            candidate = candidate or (others[0] if others else None)
        return baseline, candidate


def _write_event(log_: EventLog, event: Mapping[str, Any], ts: float | None = None) -> None:
    fields = {k: v for k, v in event.items() if k not in ("kind", "status", "ts")}
    log_.write(str(event["kind"]), str(event["status"]), ts=ts or event["ts"], **fields)


def make_rollout_run(
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
