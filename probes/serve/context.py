"""What every part of the service is handed: ``ServeContext``, frozen; no part holds the Service.

This is Argo Rollouts' ``rolloutContext`` and Flagger's ``CanaryJob`` in Python: a few
collaborator objects, each never None (a ``Notifier`` without ``[[notify]]`` does nothing,
``Metrics`` lives on its own registry, tests pass a fake index), and a part that must tell the
service something is given a callback for it instead of calling up into ``Service``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from probes.serve.config import ServeSettings
from probes.serve.history import History
from probes.serve.index import RunIndex
from probes.serve.metrics import Metrics
from probes.serve.tasks import Tasks


class Notify(Protocol):
    """Queue a notification to every ``[[notify]]`` webhook that wants ``kind``; never blocks."""

    def __call__(self, kind: str, target: str | None, run_id: str | None, **details: Any) -> None:
        """Queue it (the notifier sends from threads of its own)."""


class Finish(Protocol):
    """Close one run off the loop: flush, end its manifest, report, index
    (``probes.serve.finishing.RunFinisher.finish``)."""

    def __call__(
        self,
        open_run: Any,
        interrupted: str | None = None,
        *,
        figures: bool = True,
        **fields: Any,
    ) -> None:
        """Start closing ``open_run`` (a ``Segment`` or a ``RolloutRun``)."""


@dataclass(frozen=True)
class ServeContext:
    """What every part of the service is handed; no part holds the Service."""

    #: ``[serve]``: runs_dir, segment_s, retention_days, …
    serve: ServeSettings
    #: Blocking file work (making run directories, flushing shards), off the loop.
    io: Executor
    #: Close → report → index one run.
    finish: Finish
    #: The run index (one writer thread behind a queue; ``put_run_dir`` never blocks).
    index: RunIndex
    #: Prometheus metrics of this process.
    metrics: Metrics
    #: Notifications to ``[[notify]]`` webhooks.
    notify: Notify
    #: The owner of every background task.
    tasks: Tasks
    #: Set once the service begins to stop: nothing new is opened after it.
    stopping: asyncio.Event
    #: The platform watcher's poll interval (None: ``probes.watch``'s default); tests shorten it.
    watch_interval: float | None = None
    #: Every target's recent past in time buckets (``GET /api/v1/targets/{name}/history``).
    history: History = field(default_factory=History)

    @property
    def runs_dir(self) -> Path:
        """Where every run directory lives (``serve.runs_dir``)."""
        return self.serve.runs_dir
