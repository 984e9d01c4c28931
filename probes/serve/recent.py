"""A target's rollouts in memory, for the verdict endpoint: ``RecentRollouts``.

The samples (version, latency, ok) of the open rollout run (its ``SampleBuffer``) and of the
last ``RECENT_ROLLOUTS`` closed ones (``ClosedRollout``, loaded back from their run
directories after a restart); ``verdict`` chooses which one to judge. The one verdict cache
is ``probes.serve.verdict``'s (keyed by the samples themselves), so nothing here caches.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from probes.errors import ProbesError
from probes.records import Sample, read_samples
from probes.serve.capture import judged_roles
from probes.serve.verdict import no_rollout_body, verdict_body

#: Closed rollouts per target whose samples stay in memory for the verdict endpoint.
RECENT_ROLLOUTS = 5


class SampleBuffer:
    """A rollout's samples in memory (version, latency, ok), for the verdict endpoint."""

    def __init__(self) -> None:
        self.versions: list[str] = []
        self.latency: list[float] = []
        self.ok: list[bool] = []
        self.ts: list[float] = []  # send times: the sequential decision's clock
        self.ttft: list[float] = []  # ms to the first token; NaN where no stream
        self.seen: set[str] = set()

    def add(self, sample: Sample) -> None:
        self.seen.add(sample.version)
        self.ts.append(sample.ts)
        self.ttft.append(np.nan if sample.ttft_ms is None else sample.ttft_ms)
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
class ClosedRollout:
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
    ts: np.ndarray | None = None  # send times (None: loaded from a run dir without them)
    ttft: np.ndarray | None = None  # ms to the first token, NaN where no stream
    opened_ts: float | None = None  # when the capture opened (None: loaded from a run dir)

    def __post_init__(self) -> None:
        self.seen = set(self.seen) | {str(v) for v in set(self.versions.tolist())}

    def labels(self) -> set[str]:
        return {v for v in (self.baseline, self.candidate) if v}


class OpenSamples(Protocol):
    """What the verdict needs of the open rollout run (``RolloutRun``)."""

    run_id: str
    samples: SampleBuffer
    started_ts: float

    def roles(self) -> tuple[str | None, str | None]: ...


class RecentRollouts:
    """The last closed rollouts of one target, newest first."""

    def __init__(self, target: str, slos: Sequence[str]) -> None:
        self.target = target
        self.slos = slos
        self.closed: deque[ClosedRollout] = deque(maxlen=RECENT_ROLLOUTS)

    def __len__(self) -> int:
        return len(self.closed)

    def __iter__(self) -> Iterator[ClosedRollout]:
        return iter(self.closed)

    def __getitem__(self, k: int) -> ClosedRollout:
        return self.closed[k]

    def add(self, rollout: ClosedRollout) -> None:
        """A rollout just closed (the newest)."""
        self.closed.appendleft(rollout)

    def append(self, rollout: ClosedRollout) -> None:
        """A rollout loaded back after a restart (older than any closed since)."""
        self.closed.append(rollout)

    def kept_versions(self, open_run: OpenSamples | None) -> list[str]:
        """The versions whose series the metrics keep: of the open and the recent rollouts."""
        keep: set[str] = set()
        if open_run is not None:
            keep |= {v for v in open_run.roles() if v}
        for rollout in self.closed:
            keep |= rollout.labels()
        return sorted(keep)

    def knows(self, open_run: OpenSamples | None, run_id: str) -> bool:
        """Whether ``run_id`` is the open rollout or one of the recent ones."""
        if open_run is not None and open_run.run_id == run_id:
            return True
        return any(r.run_id == run_id for r in self.closed)

    def verdict(
        self,
        open_run: OpenSamples | None,
        candidate: str | None,
        baseline: str | None,
        run_id: str | None = None,
        switched_ts: float | None = None,
    ) -> dict[str, Any]:
        """The verdict body of the open capture, else of the latest rollout that has the
        asked-for versions (``candidate``/``baseline`` None: any); ``run_id``: that one;
        ``switched_ts``: when the platform reported the open capture's switch (the
        no-evidence rule)."""
        now = time.time()
        source = self._source(open_run, candidate, baseline, run_id)
        if source is None:
            return dict(no_rollout_body(self.target, now))
        judged, base, cand, _, arrays, (times, started, ttft) = source
        versions, latency, ok = arrays()
        is_open = open_run is not None and judged == open_run.run_id
        return verdict_body(
            target=self.target,
            run_id=judged,
            baseline=base,
            candidate=cand,
            versions=versions,
            latency_ms=latency,
            ok=ok,
            slos=self.slos,
            updated_at=now,
            ts=times(),
            started_ts=started,
            switched_ts=switched_ts if is_open else None,
            ttft_ms=ttft(),
        )

    def _source(
        self,
        open_run: OpenSamples | None,
        candidate: str | None,
        baseline: str | None,
        run_id: str | None = None,
    ) -> tuple[str, str | None, str | None, int, Callable[[], Any], Any] | None:
        """(run id, baseline, candidate, samples, arrays(), (times(), started_ts, ttft()))
        of the rollout to judge, or None.

        Asked for a candidate, a rollout whose roles would judge it against itself (a
        rollback v2 -> v1 asked for v2) is passed over (``capture.judged_roles``)."""
        asked = [v for v in (candidate, baseline) if v is not None]
        if open_run is not None and run_id in (None, open_run.run_id):
            buffer = open_run.samples
            roles = judged_roles(candidate, baseline, *open_run.roles())
            if roles is not None and all(v in buffer.seen for v in asked):
                return (open_run.run_id, *roles, len(buffer), buffer.arrays,
                        (lambda: np.asarray(buffer.ts, dtype=float), open_run.started_ts,
                         lambda: np.asarray(buffer.ttft, dtype=float)))  # fmt: skip
        for r in self.closed:
            if run_id is not None and r.run_id != run_id:
                continue
            roles = judged_roles(candidate, baseline, r.baseline, r.candidate)
            if roles is not None and all(v in r.seen for v in asked):
                return (r.run_id, *roles, len(r.ok), lambda r=r: (r.versions, r.latency, r.ok),
                        (lambda r=r: r.ts, r.started_ts, lambda r=r: r.ttft))  # fmt: skip
        return None


def load_rollout(path: Path, row: Any) -> ClosedRollout | None:
    """A closed rollout's samples from its run dir (for the verdict after a restart)."""
    try:
        frame = read_samples(path, ["ts", "version", "latency_ms", "error", "ttft_ms"])
    except (ProbesError, OSError, ValueError):
        return None
    return ClosedRollout(
        row.run_id,
        row.from_version,
        row.to_version,
        frame["version"].astype(str).to_numpy(dtype=object),
        frame["latency_ms"].to_numpy(dtype=float),
        frame["error"].isna().to_numpy(dtype=bool),
        row.started_ts,
        row.ended_ts or row.started_ts,
        None,
        ts=frame["ts"].to_numpy(dtype=float),
        ttft=frame["ttft_ms"].to_numpy(dtype=float, na_value=np.nan),
    )
