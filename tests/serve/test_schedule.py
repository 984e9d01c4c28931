"""The scheduler's pure policies, table-driven: fire times (every, cron across DST) and the
Kubernetes CronJob rules (missed runs after downtime, deadline, forbid/replace/allow,
one run per fire time, deferral while a rollout capture is open)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from probes.serve import schedule as s
from probes.serve.schedule import Decision, ScheduleState, Timing

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = Timing(every_s=60.0)


def berlin(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800.0), ("1h", 3600.0), ("45s", 45.0), (" 2 h ", 7200.0), ("90m", 5400.0)],
)
def test_parse_every(text: str, seconds: float) -> None:
    assert s.parse_every(text) == seconds


@pytest.mark.parametrize("text", ["0m", "30", "m", "1.5h", "1d", "-5m", "30 minutes", ""])
def test_parse_every_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="N s\\|m\\|h"):
        s.parse_every(text)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [("0 2 * * *", "0 2 * * *"), ("@daily", "0 0 * * *"), ("@HOURLY", "0 * * * *")],
)
def test_parse_cron(expr: str, expected: str) -> None:
    assert s.parse_cron(expr, UTC) == expected


@pytest.mark.parametrize(
    "expr", ["0 2 * *", "0 0 2 * * *", "61 * * * *", "0 25 * * *", "0 0 30 2 *", "@often", "x"]
)
def test_parse_cron_rejects(expr: str) -> None:
    with pytest.raises(ValueError):
        s.parse_cron(expr, UTC)


def test_zone() -> None:
    assert s.zone("Europe/Berlin") == BERLIN
    with pytest.raises(ValueError, match="IANA"):
        s.zone("Mars/Olympus")
    with pytest.raises(ValueError, match="IANA"):
        s.zone("../etc/passwd")


# --------------------------------------------------------------------------- fire times


@pytest.mark.parametrize(
    ("timing", "after", "expected"),
    [
        (MINUTE, 0.0, 60.0),
        (MINUTE, 59.999, 60.0),
        (MINUTE, 60.0, 120.0),  # strictly after
        (Timing(every_s=1800.0), utc(2026, 1, 1, 10, 10), utc(2026, 1, 1, 10, 30)),
        (Timing(cron="0 2 * * *"), utc(2026, 1, 1, 1, 59, 59), utc(2026, 1, 1, 2, 0)),
        (Timing(cron="0 2 * * *"), utc(2026, 1, 1, 2, 0), utc(2026, 1, 2, 2, 0)),
        (Timing(cron="0 2 * * *"), utc(2026, 1, 1, 2, 0) + 0.5, utc(2026, 1, 2, 2, 0)),
        # a zone moves the wall-clock time: 02:00 Berlin in winter is 01:00 UTC
        (Timing(cron="0 2 * * *", timezone="Europe/Berlin"), utc(2026, 1, 1), utc(2026, 1, 1, 1)),
        # DST, Debian cron: 02:30 does not exist on 29 March -> runs at 03:00 CEST (01:00 UTC)
        (
            Timing(cron="30 2 * * *", timezone="Europe/Berlin"),
            berlin(2026, 3, 29, 0, 0),
            utc(2026, 3, 29, 1, 0),
        ),
        # ... and the next day at 02:30 CEST again
        (
            Timing(cron="30 2 * * *", timezone="Europe/Berlin"),
            utc(2026, 3, 29, 1, 0),
            utc(2026, 3, 30, 0, 30),
        ),
        # 02:30 happens twice on 25 October: the job runs at the first (CEST, 00:30 UTC) only
        (
            Timing(cron="30 2 * * *", timezone="Europe/Berlin"),
            berlin(2026, 10, 25, 0, 0),
            utc(2026, 10, 25, 0, 30),
        ),
        (
            Timing(cron="30 2 * * *", timezone="Europe/Berlin"),
            utc(2026, 10, 25, 0, 30),
            utc(2026, 10, 26, 1, 30),
        ),
    ],
)
def test_next_fire(timing: Timing, after: float, expected: float) -> None:
    assert s.next_fire(timing, after) == expected


@pytest.mark.parametrize(
    ("day", "runs"),
    [
        ((2026, 3, 28), 24),
        ((2026, 3, 29), 23),  # spring forward: one wall-clock hour does not exist
        ((2026, 10, 25), 25),  # fall back: 02:00-03:00 happens twice, both real hours run
    ],
)
def test_hourly_cron_on_dst_days_runs_every_real_hour(day: tuple[int, int, int], runs: int) -> None:
    timing = Timing(cron="0 * * * *", timezone="Europe/Berlin")
    y, m, d = day
    start, end = berlin(y, m, d, 0, 0), berlin(y, m, d + 1, 0, 0)
    times = s.fire_times(timing, start - 1, end - 1, 100)
    assert len(times) == runs
    assert times[0] == start
    assert all(b - a == 3600 for a, b in itertools.pairwise(times))


def test_fire_times_limit_and_bounds() -> None:
    assert s.fire_times(MINUTE, 0, 300, 100) == [60, 120, 180, 240, 300]
    assert s.fire_times(MINUTE, 0, 300, 2) == [60, 120]
    assert s.fire_times(MINUTE, 300, 300, 5) == []
    assert s.count_between(MINUTE, 0, 6000) == 100
    assert s.count_between(Timing(cron="* * * * *"), 0, 600) == 10


def test_run_ids_round_trip() -> None:
    assert s.run_id("nightly", 1767232800.0) == "nightly-1767232800"
    assert s.fire_of("nightly", "nightly-1767232800") == 1767232800.0
    assert s.fire_of("nightly", "nightly-capacity-1767232800") is None
    assert s.fire_of("nightly", "other-1767232800") is None
    ids = ["nightly-600", "nightly-1200", "nightly-x", "other-5000"]
    assert s.initial_state("nightly", ids, started=9999.0) == ScheduleState(last=1200.0)
    assert s.initial_state("nightly", [], started=9999.0) == ScheduleState(last=9999.0)


# --------------------------------------------------------------------------- the policy

BASE: dict[str, Any] = {
    "deadline_s": None,
    "concurrency": "forbid",
    "running": False,
    "kind": "load",
    "capture_open": None,
    "existing": frozenset(),
}

# (case, last, pending, now, overrides, action, fire, missed, new_last, new_pending)
POLICY = [
    ("nothing due yet", 600, None, 659.9, {}, "wait", None, 0, 600, None),
    ("one due, on time", 600, None, 660.02, {}, "start", 660, 0, 660, None),
    ("one due, late but no deadline", 600, None, 710, {}, "start", 660, 0, 660, None),
    ("downtime: only the latest runs", 600, None, 1000.5, {}, "start", 960, 5, 960, None),
    (
        "downtime: latest within the deadline",
        600, None, 1000, {"deadline_s": 100}, "start", 960, 5, 960, None,
    ),
    (
        "downtime: latest past the deadline",
        600, None, 1000, {"deadline_s": 30}, "missed", None, 6, 600, None,
    ),
    (
        "deadline 0: exactly on time runs",
        600, None, 660, {"deadline_s": 0}, "start", 660, 0, 660, None,
    ),
    (
        "deadline 0: a moment late is missed",
        600, None, 660.5, {"deadline_s": 0}, "missed", None, 1, 600, None,
    ),
    ("101 missed: none starts", 0, None, 60 * 101, {}, "missed", None, 101, 6060, None),
    ("100 missed: the latest starts", 0, None, 60 * 100, {}, "start", 6000, 99, 6000, None),
    (
        "the deadline window keeps it under 100",
        0, None, 9001, {"deadline_s": 300}, "start", 9000, 149, 9000, None,
    ),
    (
        "forbid while running: skipped, missed",
        600, None, 661, {"running": True}, "skip", 660, 1, 660, None,
    ),
    (
        "replace while running",
        600, None, 661, {"running": True, "concurrency": "replace"}, "replace", 660, 0, 660, None,
    ),
    (
        "allow while running",
        600, None, 661, {"running": True, "concurrency": "allow"}, "start", 660, 0, 660, None,
    ),
    (
        "a fire time never runs twice",
        600, None, 661, {"existing": frozenset({"s-660"})}, "ran", 660, 0, 660, None,
    ),
    (
        "load deferred while a capture is open",
        600, None, 661, {"capture_open": "chat-rollout-1"}, "defer", 660, 0, 660, 660,
    ),
    (
        "capacity deferred too",
        600, None, 661, {"capture_open": "r", "kind": "capacity"}, "defer", 660, 0, 660, 660,
    ),
    (
        "observe is not load",
        600, None, 661, {"capture_open": "r", "kind": "observe"}, "start", 660, 0, 660, None,
    ),
    (
        "still deferred: silent",
        660, 660, 690, {"capture_open": "r"}, "wait", 660, 0, 660, 660,
    ),
    ("capture closed: the deferred run starts", 660, 660, 690, {}, "start", 660, 0, 660, None),
    (
        "deferred past its deadline: missed",
        660, 660, 700, {"deadline_s": 30}, "missed", None, 1, 660, None,
    ),
    (
        "deferred, then a newer fire time: the newer runs, the older is missed",
        660, 660, 721, {}, "start", 720, 1, 720, None,
    ),
    (
        "deferred, newer fire time, capture still open: the newer waits",
        660, 660, 721, {"capture_open": "r"}, "defer", 720, 1, 720, 720,
    ),
    (
        "deferred run starts under forbid only if the last run ended",
        660, 660, 690, {"running": True}, "skip", 660, 1, 660, None,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "last", "pending", "now", "overrides", "action", "fire", "missed", "nlast", "npend"),
    POLICY,
    ids=[row[0] for row in POLICY],
)
def test_decide(
    case: str,
    last: float,
    pending: float | None,
    now: float,
    overrides: dict[str, Any],
    action: str,
    fire: float | None,
    missed: int,
    nlast: float,
    npend: float | None,
) -> None:
    kw = {**BASE, **overrides}
    d = s.decide("s", MINUTE, ScheduleState(last, pending), now, **kw)
    assert (d.action, d.fire_ts, d.missed) == (action, fire, missed), d
    assert d.state == ScheduleState(nlast, npend)
    assert d.run_id == (None if fire is None else f"s-{int(fire)}")
    if action not in ("wait", "start"):
        assert d.reason  # every skip, deferral, miss and replace says why


def test_deferral_reason_names_the_capture() -> None:
    d = s.decide("s", MINUTE, ScheduleState(600), 661, **{**BASE, "capture_open": "chat-rollout-7"})
    assert d.action == "defer" and "chat-rollout-7" in (d.reason or "")


def test_dst_day_in_berlin_policy() -> None:
    """Daily 02:30 Europe/Berlin across both DST changes: one run each day, at the right
    instant, nothing recorded as missed; after downtime over the spring change only the
    latest runs."""
    timing = Timing(cron="30 2 * * *", timezone="Europe/Berlin")
    kw = {**BASE, "kind": "capacity"}
    spring_state = ScheduleState(berlin(2026, 3, 29, 0, 0))
    spring = s.decide("n", timing, spring_state, berlin(2026, 3, 29, 3, 0, 5), **kw)
    assert (spring.action, spring.fire_ts, spring.missed) == ("start", utc(2026, 3, 29, 1, 0), 0)
    autumn_state = ScheduleState(berlin(2026, 10, 25, 0, 0))
    autumn = s.decide("n", timing, autumn_state, berlin(2026, 10, 25, 4, 0), **kw)
    assert (autumn.action, autumn.fire_ts, autumn.missed) == ("start", utc(2026, 10, 25, 0, 30), 0)
    # Down from 27 March to 30 March 03:00: three fire times, the latest (30 March 02:30 CEST)
    # runs, the two before are missed.
    down_state = ScheduleState(berlin(2026, 3, 27, 12, 0))
    down = s.decide("n", timing, down_state, berlin(2026, 3, 30, 3, 0), **kw)
    assert (down.action, down.fire_ts, down.missed) == ("start", utc(2026, 3, 30, 0, 30), 2)


def test_a_day_of_ticks_runs_each_fire_time_once() -> None:
    """Feeding the policy a tick every 7 s for a day of a 30-minute schedule: 48 runs,
    each fire time once, none missed."""
    timing = Timing(every_s=1800.0)
    state = ScheduleState(last=utc(2026, 6, 1))
    started: list[float] = []
    now = state.last
    while now < utc(2026, 6, 2):
        now += 7.0
        d: Decision = s.decide("h", timing, state, now, **BASE)
        assert d.missed == 0
        if d.action == "start":
            assert d.fire_ts is not None and 0 <= now - d.fire_ts < 7.0
            started.append(d.fire_ts)
        state = d.state
    assert len(started) == 48 == len(set(started))
