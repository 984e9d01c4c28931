"""The cyclic GC is kept quiet while a probe runs, and handed back as it was afterwards; the
pacer does not spin on a loop with millisecond timers (uvloop).

Asserted on the collector's settings (thresholds, freeze count) during and after a run, not on
pauses or wall time.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from probes import canary
from probes.canary import (
    GC_YOUNG_THRESHOLD,
    UVLOOP_FLOOR_S,
    ProbeSettings,
    quiet_gc,
    run_probe,
    run_probe_blocking,
    timer_floor,
)
from probes.records import Sample, ShardWriter
from probes.settings import build_request


@pytest.fixture
def gc_state():
    """Run the test from CPython's default thresholds and no freeze; restore what was there."""
    saved = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*saved)


def test_quiet_gc_freezes_raises_the_threshold_and_restores_both(gc_state):
    with quiet_gc():
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_overlapping_probes_share_one_quiet_period(gc_state):
    outer = quiet_gc()
    inner = quiet_gc()
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # the first to start ends first (a rate change)
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD and gc.get_freeze_count() > 0
    inner.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_a_higher_threshold_and_someone_elses_freeze_are_kept(gc_state):
    gc.set_threshold(50_000, 20, 30)
    gc.freeze()
    with quiet_gc():
        assert gc.get_threshold() == (50_000, 20, 30)
    assert gc.get_threshold() == (50_000, 20, 30)
    assert gc.get_freeze_count() > 0  # not unfrozen by us


def test_a_probe_run_is_quiet_and_restores_the_gc(tmp_path, version_server, gc_state):
    srv = version_server()
    seen: list[tuple[tuple[int, int, int], int]] = []

    def on_sample(_: Sample) -> None:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))

    with ShardWriter(tmp_path, "probe") as writer:
        settings = ProbeSettings(rate=100, duration=0.2)
        stats = run_probe_blocking(build_request(srv.url), settings, writer, on_sample=on_sample)
    assert stats.ok == len(seen) == 20
    assert all(t == (GC_YOUNG_THRESHOLD, 10, 10) and frozen > 0 for t, frozen in seen)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0
    assert canary._gc_users == 0


def test_the_pacer_does_not_spin_on_a_millisecond_loop(version_server, monkeypatch):
    """uvloop's timers count whole milliseconds: the pacer sleeps at least one, so a run of
    0.3 s at 3,000 req/s sleeps a few hundred times at most, not tens of thousands."""
    uvloop = pytest.importorskip("uvloop")
    srv = version_server()
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def counting(delay: float, *args: object) -> object:
        sleeps.append(delay)
        return await real_sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", counting)
    settings = ProbeSettings(rate=3000, duration=0.3)
    stats = uvloop.run(run_probe(build_request(srv.url), settings, None))
    assert stats.scheduled == 900
    assert len(sleeps) <= 400 and min(sleeps) >= UVLOOP_FLOOR_S


def test_timer_floor_is_zero_on_asyncio_loops():
    loop = asyncio.new_event_loop()
    try:
        assert timer_floor(loop) == 0.0
    finally:
        loop.close()
