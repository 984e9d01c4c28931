"""The capture policy, table-driven: scripts of watcher events, canary versions, requests and
clock ticks in; the opens and closes (with times and outcomes) out."""

from __future__ import annotations

from typing import Any

import pytest

from probes.serve import capture as c
from probes.serve.capture import CapturePolicy, CaptureState

API = CapturePolicy(api=True, settle_s=10.0, tail_s=5.0)
URL = CapturePolicy(api=False, settle_s=10.0, tail_s=5.0)


def rep(ts: float, status: str, rid: str = "r1") -> tuple[str, Any]:
    return ("event", {"ts": ts, "kind": "replacement", "status": status, "replacement_id": rid})


def proton(ts: float, role: str, version: str, status: str = "running") -> tuple[str, Any]:
    event = {"ts": ts, "kind": "proton", "status": status, "role": role}
    return ("event", {**event, "proton_id": version, "detail": {"version": version}})


def samples(t0: float, t1: float, version: str, step: float = 1.0) -> list[tuple[str, Any]]:
    out, t = [], t0
    while t < t1 - 1e-9:
        out.append(("sample", (version, t)))
        t += step
    return out


def ticks(t0: float, t1: float, step: float = 1.0) -> list[tuple[str, Any]]:
    return [("tick", t0 + i * step) for i in range(int((t1 - t0) / step) + 1)]


def run(policy: CapturePolicy, script: list[tuple[str, Any]]) -> tuple[CaptureState, list[Any]]:
    """Feed a script in time order; every change as (ts, kind, outcome, baseline, candidate)."""
    state, seen = CaptureState(), []

    def key(step: tuple[str, Any]) -> float:
        what, arg = step
        return arg["ts"] if what == "event" else arg[1] if what in ("sample", "request") else arg

    for what, arg in sorted(script, key=key):  # stable: same-time steps keep script order
        if what == "event":
            state, changes = c.on_event(policy, state, arg)
        elif what == "sample":
            state, changes = c.on_sample(policy, state, arg[0], arg[1])
        elif what == "request":
            state, changes = c.on_request(policy, state, arg[0], arg[1])
        else:
            state, changes = c.on_tick(policy, state, arg)
        for ch in changes:
            roles = (state.baseline, state.candidate) if ch.kind == "open" else (None, None)
            seen.append((key((what, arg)), ch.kind, ch.outcome, *roles))
    return state, seen


WATCHED = [proton(0, "active", "app:1")]

CASES = [
    (
        "api: a replacement by someone else, captured to its end plus the tail",
        API,
        [
            *WATCHED,
            *samples(0, 40, "app:1"),
            rep(10, "submitted"),
            proton(11, "candidate", "app:2", "starting"),
            rep(12, "staged"),
            rep(14, "promoting"),
            rep(20, "completed"),
            *ticks(0, 40),
        ],
        [(10, "open", None, "app:1", None), (25, "close", "completed", None, None)],
    ),
    (
        "api: the service starts while one is under way (first poll reports it)",
        API,
        [proton(0, "active", "app:1"), proton(0, "candidate", "app:2"), rep(0, "staged"),
         rep(3, "errored"), *ticks(0, 12)],
        [(0, "open", None, "app:1", "app:2"), (8, "close", "errored", None, None)],
    ),
    (
        "api: a replacement only seen finished still gets its aftermath",
        API,
        [*WATCHED, rep(5, "completed"), *ticks(0, 15)],
        [(5, "open", None, "app:1", None), (10, "close", "completed", None, None)],
    ),
    (
        "api: a finished record still readable is not captured twice",
        API,
        [*WATCHED, rep(5, "submitted"), rep(6, "completed"), *ticks(0, 20), rep(15, "completed")],
        [(5, "open", None, "app:1", None), (11, "close", "completed", None, None)],
    ),
    (
        "api: a new version on the canary alone does not open (the watcher decides)",
        API,
        [*WATCHED, *samples(0, 10, "app:1"), *samples(10, 30, "app:2"), *ticks(0, 30)],
        [],
    ),
    (
        "api: two replacements back to back are two captures",
        API,
        [*WATCHED, rep(1, "submitted", "a"), rep(4, "completed", "a"), rep(6, "submitted", "b"),
         rep(9, "canceled", "b"), *ticks(0, 20)],
        [(1, "open", None, "app:1", None), (6, "close", "completed", None, None),
         (6, "open", None, "app:1", None), (14, "close", "canceled", None, None)],
    ),
    (
        "api: no outcome ever: closed at the longest capture",
        CapturePolicy(api=True, settle_s=10, tail_s=5, max_s=30),
        [*WATCHED, rep(1, "submitted"), *ticks(0, 40)],
        [(1, "open", None, "app:1", None), (31, "close", "incomplete", None, None)],
    ),
    (
        "url: a version not seen before opens; it holds settle_s; tail; closed",
        URL,
        [*samples(0, 10, "v1"), *samples(10, 40, "v2"), *ticks(0, 40)],
        [(10, "open", None, "v1", "v2"), (25, "close", "completed", None, None)],
    ),
    (
        "url: the first version seen is learnt, not a rollout",
        URL,
        [*samples(0, 30, "v1"), *ticks(0, 30)],
        [],
    ),
    (
        "url: unknown answers are neither new nor breaking the hold",
        URL,
        [*samples(0, 5, "v1"), ("sample", ("unknown", 5.5)), *samples(6, 30, "v1", 1.0),
         ("sample", ("unknown", 12.5)), *ticks(0, 30)],
        [],
    ),
    (
        "url: a gradual shift stays open while mixed, closes after one version holds",
        URL,
        [*samples(0, 10, "v1"),
         *[("sample", ("v2" if i % 2 else "v1", 10 + i)) for i in range(20)],
         *samples(30, 60, "v2"), *ticks(0, 60)],
        [(11, "open", None, "v1", "v2"), (44, "close", "completed", None, None)],  # v2 only from 29
    ),
    (
        "url: back to the old version: rolled back",
        URL,
        [*samples(0, 10, "v1"), *samples(10, 13, "v2"), *samples(13, 40, "v1"), *ticks(0, 40)],
        [(10, "open", None, "v1", "v2"), (28, "close", "rolled_back", None, None)],
    ),
    (
        "url: mixed again during the tail reopens the wait",
        URL,
        [*samples(0, 10, "v1"), *samples(10, 22, "v2"), ("sample", ("v1", 22)),
         *samples(23, 60, "v2"), *ticks(0, 60)],
        [(10, "open", None, "v1", "v2"), (38, "close", "completed", None, None)],
    ),
    (
        "url: a requested capture (Flagger event) settles like a url one",
        URL,
        [*samples(0, 40, "v1"), ("request", ("flagger prod/chat Progressing", 5.0)),
         *ticks(0, 40)],
        [(5, "open", None, "v1", None), (20, "close", "rolled_back", None, None)],
    ),
    (
        "url: a second request while open changes nothing",
        URL,
        [*samples(0, 40, "v1"), ("request", ("a", 5.0)), ("request", ("b", 7.0)), *ticks(0, 40)],
        [(5, "open", None, "v1", None), (20, "close", "rolled_back", None, None)],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("case", "policy", "script", "expected"), CASES, ids=[x[0] for x in CASES])
def test_capture_policy(
    case: str, policy: CapturePolicy, script: list[tuple[str, Any]], expected: list[Any]
) -> None:
    state, seen = run(policy, script)
    assert seen == expected
    assert state.open is (len(expected) % 2 == 1)


def test_closes_at_and_open_state() -> None:
    state, _ = run(API, [*WATCHED, rep(10, "submitted"), rep(20, "completed")])
    assert state.open and state.replacement_id == "r1" and state.outcome == "completed"
    assert c.closes_at(API, state) == 25.0
    assert c.closes_at(API, CaptureState()) is None
    still, changes = c.on_tick(API, state, 24.9)
    assert still.open and changes == []


def test_remembers_a_bounded_number_of_replacements() -> None:
    state = CaptureState()
    for i in range(100):
        for status, dt in (("submitted", 0.0), ("completed", 1.0)):
            ev = {"ts": i * 10 + dt, "kind": "replacement", "status": status, "replacement_id": i}
            state, _ = c.on_event(API, state, ev)
        state, _ = c.on_tick(API, state, i * 10 + 9)
    assert len(state.captured) == c.REMEMBER and not state.open


# Issue 21: every change of the serving version is a capture (``known`` only grew before, so
# a rollback and a re-deploy of a label seen before were never captured).
CHANGES = [
    (
        "url: v1 -> v2, then a rollback v2 -> v1: two captures",
        URL,
        [*samples(0, 10, "v1"), *samples(10, 40, "v2"), *samples(40, 70, "v1"), *ticks(0, 70)],
        [(10, "open", None, "v1", "v2"), (25, "close", "completed", None, None),
         (40, "open", None, "v2", "v1"), (55, "close", "completed", None, None)],
    ),
    (
        "url: a re-deploy of labels seen before (v1 -> v2 -> v1 -> v2): three captures",
        URL,
        [*samples(0, 10, "v1"), *samples(10, 40, "v2"), *samples(40, 70, "v1"),
         *samples(70, 100, "v2"), *ticks(0, 100)],
        [(10, "open", None, "v1", "v2"), (25, "close", "completed", None, None),
         (40, "open", None, "v2", "v1"), (55, "close", "completed", None, None),
         (70, "open", None, "v1", "v2"), (85, "close", "completed", None, None)],
    ),
    (
        "url: a candidate rolled back inside its capture, then retried: a second capture",
        URL,
        [*samples(0, 10, "v1"), *samples(10, 13, "v2"), *samples(13, 40, "v1"),
         *samples(40, 70, "v2"), *ticks(0, 70)],
        [(10, "open", None, "v1", "v2"), (28, "close", "rolled_back", None, None),
         (40, "open", None, "v1", "v2"), (55, "close", "completed", None, None)],
    ),
    (
        "url: flapping past the longest capture: learnt once it holds, then captured again",
        CapturePolicy(api=False, settle_s=10, tail_s=5, max_s=30),
        [*samples(0, 10, "v1"),
         *[("sample", ("v2" if i % 2 else "v1", 10 + i)) for i in range(40)],
         *samples(50, 70, "v2"), *samples(70, 100, "v3"), *ticks(0, 100)],
        [(11, "open", None, "v1", "v2"), (41, "close", "incomplete", None, None),
         (70, "open", None, "v2", "v3"), (85, "close", "completed", None, None)],
    ),
    (
        "api: versions on the canary still never open (the watcher decides)",
        API,
        [*WATCHED, *samples(0, 10, "app:1"), *samples(10, 30, "app:2"),
         *samples(30, 60, "app:1"), *ticks(0, 60)],
        [],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "policy", "script", "expected"), CHANGES, ids=[x[0] for x in CHANGES]
)
def test_every_version_change_is_a_capture(
    case: str, policy: CapturePolicy, script: list[tuple[str, Any]], expected: list[Any]
) -> None:
    state, seen = run(policy, script)
    assert seen == expected
    assert state.open is (len(expected) % 2 == 1)


def test_settled_follows_the_serving_version() -> None:
    state, _ = run(URL, [*samples(0, 10, "v1"), *samples(10, 40, "v2"), *ticks(0, 40)])
    assert state.settled == "v2" and not state.open
    api, _ = run(API, [*WATCHED, *samples(0, 5, "app:1"), *samples(5, 30, "app:2"),
                       *ticks(0, 30)])  # fmt: skip
    assert api.settled == "app:2"  # api targets learn it too (persisted across restarts)


@pytest.mark.parametrize(
    ("restored", "first", "opened"),
    [("v1", "v2", True), ("v1", "v1", False), (None, "v2", False), ("unknown", "v2", False)],
)
def test_a_version_changed_while_the_service_was_down_is_a_capture(
    restored: str | None, first: str, opened: bool
) -> None:
    state = c.restore(CaptureState(), restored)
    state, changes = c.on_sample(URL, state, first, 100.0)
    assert [ch.kind for ch in changes] == (["open"] if opened else [])
    if opened:
        assert (state.baseline, state.candidate) == ("v1", "v2")
        assert "while it was down" in changes[0].reason
    state, changes = c.on_sample(URL, state, "v1" if first == "v2" else "v2", 101.0)
    assert not state.restored


@pytest.mark.parametrize(
    ("versions", "baseline", "start"),
    [
        (["v1", "v1", "v2", "v2", "v1"], "v2", 2),  # a rollback: v2 alone first
        (["v1", "v2", "unknown", "v2", "v1"], "v2", 1),
        (["v1", "v1", "v2"], "v1", 0),  # a first rollout: the whole pre-roll
        (["v3", "v1", "v1", "v2"], "v1", 1),
        (["v1", "v2"], None, 0),
        ([], "v1", 0),
    ],
)
def test_a_url_captures_preroll_starts_with_its_baseline_alone(
    versions: list[str], baseline: str | None, start: int
) -> None:
    assert c.preroll_start(versions, baseline) == start


def test_an_api_targets_version_changed_while_down_is_a_capture_once() -> None:
    state = c.restore(CaptureState(), "app:1")
    state, changes = c.on_sample(API, state, "app:2", 100.0)
    assert [ch.kind for ch in changes] == ["open"] and "while it was down" in changes[0].reason
    # the replacement the watcher reports next belongs to that capture
    state, changes = c.on_event(API, state, rep(100.5, "completed", "r9")[1])
    assert changes == [] and state.replacement_id == "r9"
    # afterwards the canary alone never opens one on an api target
    state, _ = c.on_tick(API, state, 200.0)
    assert not state.open
    state, changes = c.on_sample(API, state, "app:1", 201.0)
    assert changes == []
