"""The rollout and routing policy of the simulator: pure functions of plain values.

Nothing here reads a clock, sleeps or touches a process. The server feeds the current
platform time (seconds since the simulator started, scaled by ``--time-scale``) and the
facts it observed (candidate processes up, readiness streaks, cancel asked), and performs
the actions returned. Tests drive these functions table-driven.

Replacement statuses (decisions doc): ``submitted → initializing → staged → promoting →
finalizing → completed``; ``errored`` when the candidate dies or misses ``ready_timeout``;
``canceling → canceled`` when cancelled before ``promoting``. ``canceled`` and ``completed``
records are then cleared (the server hides them); ``errored`` stays until the next one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

IN_PROGRESS = ("submitted", "initializing", "staged", "promoting", "finalizing", "canceling")
CANCELABLE = ("submitted", "initializing", "staged")
#: terminal outcomes recorded in history
OUTCOMES = ("completed", "errored", "canceled")


def public_status(status: str) -> str:
    """A replacement status as the API shows it: ``canceled`` is the engine's own end state
    and not in the documented vocabulary, so a canceled record stays ``canceling`` (its last
    documented state); history says how it ended in ``outcome``."""
    return "canceling" if status == "canceled" else status


@dataclass(frozen=True)
class Timing:
    """Durations of one replacement, all in platform seconds."""

    warmup_s: float = 0.0
    keep_old_s: float = 0.0
    shift_s: float = 0.0  # weighted shift length; 0 = atomic switch
    gap_s: float = 0.0  # no proton routed for this long after the switch
    drain_s: float = 30.0  # longest drain after the shift (pinned connections still open)
    dwell_s: float = 0.0  # minimum time in submitted/staged/promoting/canceling (for pollers)
    completed_ttl_s: float = 1.0  # completed record visible this long
    ready_timeout_s: float | None = None  # candidate not ready by then -> errored


@dataclass(frozen=True)
class Rollout:
    """Where one replacement is. ``since`` is when ``status`` was entered."""

    status: str
    since: float
    created: float
    timing: Timing
    ready_at: float | None = None  # gate satisfied (every replica ready successThreshold times)
    switched_at: float | None = None
    retired: bool = False  # the old proton gets no more requests; its connections are closed
    message: str | None = None


@dataclass(frozen=True)
class Facts:
    """What the server observed about the candidate and the old proton."""

    candidate_spawned: bool = False  # every replica process is listening
    candidate_ready: bool = False  # every replica passed its readiness gate
    candidate_failed: str | None = None  # a replica process died: why
    cancel_requested: bool = False
    candidate_stopped: bool = False  # after a cancel/error: processes are gone
    old_inflight: int = 0  # requests still in flight on the old proton
    old_pinned: int = 0  # client connections still pinned to the old proton (open)
    old_stopped: bool = False


def start(now: float, timing: Timing) -> Rollout:
    """A freshly submitted replacement."""
    return Rollout(status="submitted", since=now, created=now, timing=timing)


def _to(r: Rollout, status: str, now: float, **changes: object) -> Rollout:
    return replace(r, status=status, since=now, **changes)  # type: ignore[arg-type]


def next_state(r: Rollout, now: float, f: Facts) -> tuple[Rollout, tuple[str, ...]]:
    """One step of the replacement lifecycle: the new state and the actions to perform.

    Actions: ``spawn_candidate``, ``stop_candidate``, ``switch`` (candidate becomes active,
    old becomes draining), ``cut_old_inflight``, ``retire_old`` (no request reaches the old
    proton any more, its pinned connections are closed), ``stop_old`` (its processes stop),
    ``clear`` (hide the record). Call repeatedly; a state that does not change returns no
    actions.
    """
    t = r.timing
    dwelt = now - r.since >= t.dwell_s
    if f.cancel_requested and r.status in CANCELABLE:
        return _to(r, "canceling", now), ("stop_candidate",)
    if r.status == "submitted":
        return (_to(r, "initializing", now), ("spawn_candidate",)) if dwelt else (r, ())
    if r.status in ("initializing", "staged") and f.candidate_failed:
        msg = f"Candidate proton failed: {f.candidate_failed}"
        return _to(r, "errored", now, message=msg), ("stop_candidate",)
    if r.status == "initializing":
        return _initializing(r, now, f)
    if r.status == "staged":
        if not dwelt:
            return r, ()
        # the cut is part of the switch: the requests in flight on the old proton at that
        # instant are the ones cut (a later tick would only find those that outlived it)
        return _to(r, "promoting", now, switched_at=now), ("switch", "cut_old_inflight")
    if r.status == "promoting":
        return _promoting(r, now, f)
    if r.status == "finalizing":
        return _finalizing(r, now, f)
    if r.status == "completed":
        return (r, ("clear",)) if now - r.since >= t.completed_ttl_s else (r, ())
    if r.status == "canceling":
        if f.candidate_stopped and dwelt:
            return _to(r, "canceled", now), ("clear",)
        return r, ()
    return r, ()  # errored, canceled: sticky


def _initializing(r: Rollout, now: float, f: Facts) -> tuple[Rollout, tuple[str, ...]]:
    t = r.timing
    if f.candidate_ready and r.ready_at is None:
        r = replace(r, ready_at=now)
    if r.ready_at is not None:
        if now - r.ready_at >= t.warmup_s:
            return _to(r, "staged", now), ()
        return r, ()
    if t.ready_timeout_s is not None and now - r.created >= t.ready_timeout_s:
        msg = (
            f"Candidate proton did not become ready within {t.ready_timeout_s:g} s "
            "(readiness probe never passed)."
        )
        return _to(r, "errored", now, message=msg), ("stop_candidate",)
    return r, ()


def _promoting(r: Rollout, now: float, f: Facts) -> tuple[Rollout, tuple[str, ...]]:
    t = r.timing
    switched_at = r.switched_at
    assert switched_at is not None
    elapsed = now - switched_at
    shifted = elapsed >= max(t.shift_s, t.gap_s, t.dwell_s)
    # Drain: requests in flight on the old proton finish and the connections pinned to it
    # close before the rollout moves on, for ``drain_s`` at most: clients that keep their
    # connections busy (keep-alive) must not hold the replacement up forever.
    drained = f.old_inflight == 0 and f.old_pinned == 0
    if shifted and (drained or elapsed >= t.shift_s + t.drain_s):
        return _to(r, "finalizing", now), ()
    return r, ()


def _finalizing(r: Rollout, now: float, f: Facts) -> tuple[Rollout, tuple[str, ...]]:
    """The old proton is kept (rollback window), then retired, then stopped.

    Kept: it still serves its pinned connections until ``keep_old_s`` after the switch.
    Retired: nothing new reaches it and its pinned connections are closed, so clients
    reconnect to the new proton; the requests it still holds finish, then it stops. Retiring
    first means stopping never cuts a request.
    """
    t = r.timing
    assert r.switched_at is not None
    if f.old_stopped:
        return _to(r, "completed", now), ()
    if not r.retired:
        if now >= r.switched_at + max(t.keep_old_s, t.shift_s):
            return replace(r, retired=True), ("retire_old",)
        return r, ()
    if f.old_inflight == 0:
        return r, ("stop_old",)
    return r, ()


def weights(
    r: Rollout | None, now: float, old: str | None, new: str | None
) -> tuple[tuple[str, float], ...]:
    """Which protons get new requests, with what weight, at platform time ``now``.

    Before the switch (and after an error or cancel) only the old proton; for ``gap_s``
    after the switch nobody (the gateway answers 503); then the candidate's weight rises
    linearly from 0 to 1 over ``shift_s`` (atomic when 0).
    """
    if r is None or r.switched_at is None or new is None:
        return ((old, 1.0),) if old else ()
    t = r.timing
    elapsed = now - r.switched_at
    if elapsed < t.gap_s:
        return ()
    if t.shift_s > 0 and elapsed < t.shift_s and old is not None:
        w = max(0.0, min(1.0, elapsed / t.shift_s))
        return ((old, 1.0 - w), (new, w))
    return ((new, 1.0),)


def route(ws: tuple[tuple[str, float], ...], r: float) -> str | None:
    """The proton for a uniform draw ``r`` in [0, 1) under weights ``ws`` (None: nobody)."""
    live = [(p, w) for p, w in ws if w > 0]
    if not live:
        return None
    total = sum(w for _, w in live)
    cumulative = []
    acc = 0.0
    for _, w in live:
        acc += w / total
        cumulative.append(acc)
    i = bisect.bisect_right(cumulative, r)
    return live[min(i, len(live) - 1)][0]


def readiness(streak: int, status: int | None, success_threshold: int) -> tuple[int, bool]:
    """A replica's readiness streak after one probe: (new streak, ready?).

    Ready = the probe returned 2xx ``success_threshold`` times in a row; any other answer
    (or none, ``status`` None) resets the streak.
    """
    streak = streak + 1 if status is not None and 200 <= status < 300 else 0
    return streak, streak >= max(1, success_threshold)


def proton_status(
    *,
    stopped: bool,
    spawned: bool,
    ready: bool,
    warming: bool,
    draining: bool,
    failed: bool,
    stopping: bool = False,
) -> str:
    """A proton's status from what is known about its replicas (worst state wins)."""
    if failed:
        return "errored"
    if stopped:
        return "stopped"
    if stopping:
        return "stopping"
    if not spawned:
        return "provisioning"
    if not ready:
        return "launching"
    if draining:
        return "draining"
    if warming:
        return "warming"
    return "running"
