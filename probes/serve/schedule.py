"""Scheduled runs: when a schedule fires and what happens then. Pure: no clock, no sleep.

Fire times come from ``cron`` (five fields or a macro such as ``@daily``, in ``timezone``,
computed by cronsim, which follows Debian cron across DST changes: a daily job whose time
falls in the skipped spring hour runs right after the change, and once on the repeated
autumn hour) or from ``every = "30m"`` (multiples of the interval since the Unix epoch, so a
restart never shifts them).

What happens at a fire time follows Kubernetes CronJob semantics (``decide``):

- after downtime only the **latest** missed fire time starts, and only if it is no more than
  ``starting_deadline_s`` old; the others are recorded as missed. More than ``MAX_MISSED``
  fire times in the window: none starts (Kubernetes' "too many missed start times");
- ``forbid``: a fire time while the schedule's previous run still runs is skipped and
  recorded as missed; ``replace``: the previous run is stopped and the new one starts;
  ``allow``: both run;
- a run's id is ``<schedule>-<fire epoch seconds>`` (``run_id``), and a fire time whose run
  directory exists is never run again;
- a schedule does not start load (``load``, ``capacity``) on a target while a rollout
  capture is open there: the fire time is *deferred* and starts once the capture closes,
  unless its deadline passed or a newer fire time took its place (then it is missed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Container
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

#: More missed fire times than this in the deadline window: none is started (Kubernetes).
MAX_MISSED = 100
#: Counting missed fire times before the deadline window stops here (they are only counted).
COUNT_CAP = 10_000
#: Kinds that put load on the target (deferred while a rollout capture is open there).
LOAD_KINDS = frozenset({"load", "capacity"})
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = re.compile(r"\s*(\d+)\s*([smh])\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600}


# --------------------------------------------------------------------------- parsing


def zone(name: str) -> tzinfo:
    """The IANA time zone ``name``; ValueError showing the expected form."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None


def parse_cron(expr: str, tz: tzinfo) -> str:
    """A five-field cron expression (or macro) checked by cronsim; the expression to use."""
    text = MACROS.get(expr.strip().lower(), expr.strip())
    if len(text.split()) != 5:
        raise ValueError(
            f"{expr!r} is not a five-field cron expression (minute hour day month weekday,"
            ' e.g. "0 2 * * *") or a macro (@hourly, @daily, @weekly, @monthly, @yearly)'
        )
    try:
        next(CronSim(text, datetime(2000, 1, 1, tzinfo=tz)))
    except (CronSimError, StopIteration) as exc:
        raise ValueError(f"{expr!r} is not a valid cron expression: {exc}") from None
    return text


def parse_every(text: str) -> float:
    """``"30m"`` -> 1800.0: a whole number of s, m or h, > 0."""
    match = _EVERY.fullmatch(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not an interval (N s|m|h with N > 0, e.g. 30m)")
    return float(int(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: ``cron`` in ``timezone``, or every ``every_s`` seconds."""

    cron: str | None = None
    every_s: float | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_s is None):
            raise ValueError("a Timing has exactly one of cron and every_s")

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.timezone})"
        return f"every {self.every_s:g} s"


# --------------------------------------------------------------------------- fire times


def next_fire(timing: Timing, after: float) -> float:
    """The first fire time strictly after ``after`` (epoch seconds)."""
    if timing.every_s is not None:
        return (math.floor(after / timing.every_s) + 1) * timing.every_s
    assert timing.cron is not None
    start = datetime.fromtimestamp(after, zone(timing.timezone))
    # cronsim drops sub-seconds and steps at least one second: the result is > after.
    return next(CronSim(timing.cron, start)).timestamp()


def fire_times(timing: Timing, after: float, until: float, limit: int) -> list[float]:
    """Fire times in ``(after, until]``, oldest first, at most ``limit`` of them (the first)."""
    out: list[float] = []
    if until <= after:
        return out
    if timing.every_s is not None:
        step = timing.every_s
        first = math.floor(after / step) + 1
        last = math.floor(until / step)
        return [k * step for k in range(first, min(last, first + limit - 1) + 1)]
    assert timing.cron is not None
    it = CronSim(timing.cron, datetime.fromtimestamp(after, zone(timing.timezone)))
    while len(out) < limit:
        ts = next(it).timestamp()
        if ts > until:
            break
        out.append(ts)
    return out


def count_between(timing: Timing, after: float, until: float, cap: int = COUNT_CAP) -> int:
    """How many fire times fall in ``(after, until]`` (exact for every, capped for cron)."""
    if until <= after:
        return 0
    if timing.every_s is not None:
        return max(0, math.floor(until / timing.every_s) - math.floor(after / timing.every_s))
    return len(fire_times(timing, after, until, cap))


def latest_due(timing: Timing, after: float, now: float) -> tuple[float | None, int]:
    """(the latest fire time in ``(after, now]`` or None, how many there are: exact for
    every, at most ``MAX_MISSED + 1`` for cron)."""
    if timing.every_s is not None:
        n = count_between(timing, after, now)
        latest = math.floor(now / timing.every_s) * timing.every_s if n else None
        return latest, n
    times = fire_times(timing, after, now, MAX_MISSED + 1)
    return (times[-1] if times else None), len(times)


def run_id(schedule: str, fire_ts: float) -> str:
    """``<schedule>-<fire epoch seconds>``: one id per fire time, so it never runs twice."""
    return f"{schedule}-{int(fire_ts)}"


def fire_of(schedule: str, run_id_: str) -> float | None:
    """The fire time a run id of ``schedule`` stands for, or None if it is not one."""
    prefix = f"{schedule}-"
    tail = run_id_[len(prefix) :] if run_id_.startswith(prefix) else ""
    return float(tail) if tail.isdigit() else None


# --------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class ScheduleState:
    """What the scheduler remembers of one schedule between ticks."""

    #: The latest fire time already dealt with (started, skipped, missed or deferred).
    last: float
    #: A deferred fire time waiting for the target's rollout capture to close.
    pending: float | None = None


#: Decision actions: nothing due; start a run; stop the running one, then start; skip it
#: (forbid: counted missed); wait for a capture (deferred); nothing started, ``missed``
#: counted; the fire time's run directory exists already.
ACTIONS = ("wait", "start", "replace", "skip", "defer", "missed", "ran")


@dataclass(frozen=True)
class Decision:
    action: str
    state: ScheduleState
    fire_ts: float | None = None
    run_id: str | None = None
    #: Fire times recorded as missed by this decision.
    missed: int = 0
    reason: str | None = None


def decide(
    name: str,
    timing: Timing,
    state: ScheduleState,
    now: float,
    *,
    deadline_s: float | None,
    concurrency: str,
    running: bool,
    kind: str,
    capture_open: str | None = None,
    existing: Container[str] = frozenset(),
) -> Decision:
    """What to do about schedule ``name`` at ``now``.

    ``running``: a run of this schedule is still going; ``capture_open``: the target's
    open rollout capture (its run id) or None; ``existing``: run ids whose directories
    exist. Call it again with the returned state at the next tick.
    """
    earliest = state.last
    if deadline_s is not None:  # a fire time exactly ``deadline_s`` old is still on time
        earliest = max(earliest, math.nextafter(now - deadline_s, -math.inf))
    missed = count_between(timing, state.last, earliest)  # older than the deadline
    latest, due = latest_due(timing, earliest, now)
    pending = state.pending
    if pending is not None and deadline_s is not None and pending + deadline_s < now:
        missed, pending = missed + 1, None  # its deadline passed while deferred
    if due > MAX_MISSED:
        done = ScheduleState(last=max(state.last, latest or now))
        too_many = f"more than {MAX_MISSED} fire times missed: none started"
        return Decision("missed", done, missed=missed + due, reason=too_many)
    chosen = pending
    if latest is not None:
        missed += due - 1 + (pending is not None)  # older due times and a superseded one
        chosen = latest
    last = max(state.last, latest) if latest is not None else state.last
    if chosen is None:
        action = "missed" if missed else "wait"
        late = "its starting deadline passed" if missed else None
        return Decision(action, ScheduleState(last=last), missed=missed, reason=late)
    rid = run_id(name, chosen)
    base = Decision("wait", ScheduleState(last=last), chosen, rid, missed)
    if rid in existing:
        return replace(base, action="ran", reason=f"run {rid} exists already")
    if capture_open is not None and kind in LOAD_KINDS:
        deferred = replace(base, state=ScheduleState(last=last, pending=chosen))
        if chosen == state.pending:
            return deferred  # still waiting; recorded when first deferred
        reason = f"rollout capture {capture_open} is open on the target"
        return replace(deferred, action="defer", reason=reason)
    if running and concurrency == "forbid":
        reason = "the previous run is still running (concurrency forbid)"
        return replace(base, action="skip", missed=missed + 1, reason=reason)
    if running and concurrency == "replace":
        return replace(base, action="replace", reason="the previous run is stopped (replace)")
    return replace(base, action="start")


def initial_state(name: str, existing_ids: list[str], started: float) -> ScheduleState:
    """Where a schedule resumes: after its newest run on disk, else at the service's start
    (like a CronJob created now, a new schedule has missed nothing)."""
    fires = [f for f in (fire_of(name, rid) for rid in existing_ids) if f is not None]
    return ScheduleState(last=max(fires) if fires else started)
