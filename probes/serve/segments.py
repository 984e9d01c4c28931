"""The continuous canary's rolling runs (kind ``canary``, trigger ``continuous``).

Each target's rows are cut into runs of ``segment_s``; segment ends are spread over the
period by the target's name (``segment_end``) so that hundreds of targets do not report at the
same instant. ``create_segment`` claims a segment's directory and writes its manifest off the
loop; ``flush_loop`` writes every segment's queued rows to disk, one slice of the targets a
second (a failed flush is retried on its backoff, and tells the target's recording health).
``manifest_settings`` is the ``settings`` block of every probe run the service makes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from probes.canary import DEFAULT_MAX_IN_FLIGHT, ProbeSettings
from probes.records import ShardWriter
from probes.run import Run, default_run_id, fresh_run_id
from probes.serve import healing
from probes.serve.config import TargetConfig
from probes.serve.context import ServeContext
from probes.serve.finishing import OpenRun
from probes.settings import RequestSpec

log = logging.getLogger(__name__)

BUCKET_S = 1.0
#: Canary segments' rows are written to a shard this often, by one flusher for all targets
#: (a shard per target per second would be thousands of tiny files and a thread each).
CANARY_FLUSH_S = 10.0
#: A run_probe's nominal length; it is restarted when it ends (in practice: on a rate change).
PROBE_SPAN_S = 1e7
#: After a stop, a probe waits this long for requests in flight.
DRAIN_S = 2.0
#: The flusher wakes this often (a slice of the targets is flushed, the rest journaled).
FLUSH_TICK_S = 1.0


def segment_end(start: float, segment_s: float, name: str) -> float:
    """When a canary segment begun at ``start`` ends: the next boundary of the target's own
    phase (``k * segment_s + offset(name)``), at least a tenth of a segment away."""
    offset = zlib.crc32(name.encode()) % max(1, int(segment_s))
    end = (math.floor((start - offset) / segment_s) + 1) * segment_s + offset
    return end + segment_s if end - start < segment_s / 10 else end


def max_in_flight(rate: float, timeout: float) -> int:
    """Per-target in-flight bound: every request of one timeout at ``rate``, at least 4."""
    return min(DEFAULT_MAX_IN_FLIGHT, max(4, math.ceil(rate * timeout) + 1))


def probe_settings(rate: float, spec: RequestSpec) -> ProbeSettings:
    """How the service probes a target at ``rate``: what the probe loop runs and what the
    runs' manifests say (one source for both)."""
    return ProbeSettings(
        rate=rate,
        duration=PROBE_SPAN_S,
        max_in_flight=max_in_flight(rate, spec.timeout),
        drain_s=DRAIN_S,
    )


#: A rollout capture's check when its target names no ``slo``: the error rate of the version
#: being judged. The run-wide ``error_rate<0.01`` of a canary would count the baseline's rows
#: of the pre-roll too: a rollback from a failing version to a healthy one failed by the
#: failing version's own errors (10.2 % over the capture, 0 of 1,419 for the candidate).
ROLLOUT_DEFAULT_SLOS = ("candidate.error_rate<0.01",)


def rollout_slos(cfg: TargetConfig) -> tuple[str, ...]:
    """The checks a rollout capture of ``cfg`` is judged by (its ``slo``, else the default)."""
    return tuple(cfg.slos) or ROLLOUT_DEFAULT_SLOS


def manifest_settings(
    cfg: TargetConfig,
    spec: RequestSpec,
    rate: float,
    segment_s: float,
    *,
    slos: tuple[str, ...] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The manifest's ``settings`` of a probe run of ``cfg`` at ``rate`` (``slos``: the
    checks, default the target's)."""
    probe = probe_settings(rate, spec)
    return {
        "slos": list(cfg.slos if slos is None else slos),
        "bucket_s": BUCKET_S,
        "rate": rate,
        "canary_rate": cfg.canary_rate,
        "capture_rate": cfg.capture_rate,
        "capture_tail_s": cfg.capture_tail_s,
        "settle_s": cfg.settle_s,
        "segment_s": segment_s,
        "max_in_flight": probe.max_in_flight,
        "transport": probe.transport,
        "request": spec.describe(),
        **extra,
    }


def create_segment(
    ctx: ServeContext, cfg: TargetConfig, spec: RequestSpec | None, now: float
) -> OpenRun | None:
    """Blocking (off the loop): claim the canary segment's run directory and write its
    manifest, which fsyncs: a slow disk delays this target's next segment, never the
    loop that sends every target's requests."""
    if spec is None or cfg.canary_rate <= 0:
        return None
    rid = fresh_run_id(ctx.runs_dir, f"{cfg.name}-canary-{default_run_id(now)}")
    run = Run.create(
        ctx.runs_dir,
        rid,
        "canary",
        target=spec.describe(),
        settings=manifest_settings(cfg, spec, cfg.canary_rate, ctx.serve.segment_s),
        trigger="continuous",
        started_at=now,
    )
    run.update(target_name=cfg.name)
    end = segment_end(now, ctx.serve.segment_s, cfg.name)
    # flushed by flush_loop; bounded while flushes fail (a full disk)
    writer = run.shard_writer("probe", background=False, max_pending=healing.MAX_HELD_ROWS)
    return OpenRun(run=run, writer=writer, ends_ts=end)


class Recording(Protocol):
    """A target whose canary segment ``flush_loop`` writes (``TargetMonitor``)."""

    @property
    def segment(self) -> OpenRun | None:
        """The segment taking its rows now, if any."""
        ...

    def flush_due(self, now: float) -> bool:
        """Whether a failed flush of its segment is to be tried again now (its backoff)."""
        ...

    def flushed(self, writer: ShardWriter) -> None:
        """``writer`` (its segment's) was just flushed: a failure is a recording problem
        until a flush works again."""
        ...


async def flush_loop(ctx: ServeContext, targets: Callable[[], Sequence[Recording]]) -> None:
    """Write the canary segments' queued rows to disk, off the loop: every target once per
    ``CANARY_FLUSH_S``, a slice of them each second, so the writes (which hold the GIL
    while building tables) never come as one burst that delays the probes. The others'
    new rows are appended to their shards' journals each second (``ShardWriter.journal``):
    a crash loses at most the last second, and the next start makes them shards.

    A failed flush is retried on its backoff (1, 2, 4, 8 s), not at its slot: the rows are
    on disk within seconds of the disk coming back; the target hears of every outcome."""
    loop = asyncio.get_running_loop()
    slot = 0
    slots = max(1, int(CANARY_FLUSH_S / FLUSH_TICK_S))
    while not ctx.stopping.is_set():
        await asyncio.sleep(FLUSH_TICK_S)
        flush: list[ShardWriter] = []
        journal: list[ShardWriter] = []
        flushed: list[tuple[Recording, ShardWriter]] = []
        now = time.time()
        for k, target in enumerate(targets()):
            segment = target.segment
            if segment is None:
                continue
            if k % slots == slot or target.flush_due(now):
                flush.append(segment.writer)
                flushed.append((target, segment.writer))
            else:
                journal.append(segment.writer)
        slot = (slot + 1) % slots
        if flush or journal:
            await loop.run_in_executor(ctx.io, flush_all, flush, journal)
        for target, writer in flushed:
            target.flushed(writer)


def flush_all(writers: list[ShardWriter], journal: Sequence[ShardWriter] = ()) -> None:
    """Blocking: flush ``writers`` and journal ``journal``. A failure keeps the rows queued
    (the next call tries again) and is logged once per writer until it changes or a flush
    works again: a full disk under 500 targets is one warning each, not 500 a second."""
    for writer in writers:
        try:
            writer.flush()
        except Exception as exc:
            _warn_once(writer, "flushing", exc)
        else:
            if writer.last_error is not None:
                log.info("flushing %s works again", writer.directory)
                writer.last_error = None
    for writer in journal:
        try:
            writer.journal()
        except Exception as exc:
            _warn_once(writer, "journaling", exc)


def _warn_once(writer: ShardWriter, what: str, exc: Exception) -> None:
    said = writer.last_error
    if said is None or (type(said), str(said)) != (type(exc), str(exc)):
        log.warning("%s %s failed (rows kept queued): %s", what, writer.directory, exc)
    writer.last_error = exc
