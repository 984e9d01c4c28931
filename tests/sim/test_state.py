"""The simulator's pure rollout and routing policy, table-driven (no clock, no sockets)."""

from __future__ import annotations

import pytest

from probes.sim import state
from probes.sim.state import Facts, Timing

T = Timing(warmup_s=60, keep_old_s=120, dwell_s=1, completed_ttl_s=5, ready_timeout_s=300)


def run(steps: list[tuple[float, Facts]], timing: Timing = T) -> list[tuple[str, tuple[str, ...]]]:
    """Feed (now, facts) steps; the (status, actions) after each."""
    r = state.start(0.0, timing)
    out = []
    for now, facts in steps:
        r, actions = state.next_state(r, now, facts)
        out.append((r.status, actions))
    return out


READY = Facts(candidate_spawned=True, candidate_ready=True)


def test_happy_path_order_and_actions():
    steps = [
        (0.5, Facts()),  # dwell in submitted
        (1.0, Facts()),  # -> initializing, spawn
        (10.0, Facts(candidate_spawned=True)),  # launching
        (20.0, READY),  # gate passed, warmup starts
        (79.0, READY),  # still warming (60 s from 20)
        (80.0, READY),  # -> staged
        (80.5, READY),  # dwell in staged
        (81.0, READY),  # -> promoting, switch
        (82.0, READY),  # -> finalizing (dwell elapsed, nothing in flight)
        (150.0, READY),  # keep-old window (120 s from 81) not over
        (201.0, Facts(candidate_ready=True, old_inflight=1)),  # -> retire (a request runs)
        (201.5, Facts(candidate_ready=True, old_inflight=1)),  # it finishes first
        (201.6, READY),  # -> stop_old
        (202.0, Facts(candidate_ready=True, old_stopped=True)),  # -> completed
        (206.0, Facts(old_stopped=True)),  # completed visible
        (207.0, Facts(old_stopped=True)),  # -> clear
    ]
    assert run(steps) == [
        ("submitted", ()),
        ("initializing", ("spawn_candidate",)),
        ("initializing", ()),
        ("initializing", ()),
        ("initializing", ()),
        ("staged", ()),
        ("staged", ()),
        ("promoting", ("switch", "cut_old_inflight")),
        ("finalizing", ()),
        ("finalizing", ()),
        ("finalizing", ("retire_old",)),
        ("finalizing", ()),
        ("finalizing", ("stop_old",)),
        ("completed", ()),
        ("completed", ()),
        ("completed", ("clear",)),
    ]


@pytest.mark.parametrize(
    ("status_steps", "expected"),
    [
        ([(1.0, Facts())], "canceling"),  # from submitted
        ([(1.0, Facts()), (2.0, Facts())], "canceling"),  # from initializing
    ],
)
def test_cancel_before_promoting(status_steps, expected):
    r = state.start(0.0, T)
    for now, f in status_steps:
        r, _ = state.next_state(r, now, f)
    r, actions = state.next_state(r, 3.0, Facts(cancel_requested=True))
    assert (r.status, actions) == (expected, ("stop_candidate",))
    r, actions = state.next_state(r, 3.5, Facts(cancel_requested=True, candidate_stopped=True))
    assert r.status == "canceling"  # dwell not over yet
    r, actions = state.next_state(r, 4.5, Facts(cancel_requested=True, candidate_stopped=True))
    assert (r.status, actions) == ("canceled", ("clear",))


def test_cancel_ignored_after_switch():
    r = state.Rollout(status="promoting", since=10, created=0, timing=T, switched_at=10)
    r2, actions = state.next_state(r, 10.2, Facts(cancel_requested=True, old_inflight=1))
    assert r2.status == "promoting"
    assert "stop_candidate" not in actions


@pytest.mark.parametrize(
    ("facts", "now", "status", "msg_part"),
    [
        (Facts(candidate_spawned=True), 299.0, "initializing", None),
        (Facts(candidate_spawned=True), 300.0, "errored", "did not become ready"),
        (Facts(candidate_failed="exit 1"), 5.0, "errored", "exit 1"),
    ],
)
def test_errors(facts, now, status, msg_part):
    r = state.Rollout(status="initializing", since=1, created=0, timing=T)
    r2, actions = state.next_state(r, now, facts)
    assert r2.status == status
    if msg_part:
        assert msg_part in (r2.message or "")
        assert actions == ("stop_candidate",)
        # errored is sticky
        r3, actions3 = state.next_state(r2, now + 1000, Facts())
        assert (r3.status, actions3) == ("errored", ())


def test_no_ready_timeout_waits_forever():
    t = Timing(ready_timeout_s=None)
    r = state.Rollout(status="initializing", since=0, created=0, timing=t)
    assert state.next_state(r, 1e9, Facts())[0].status == "initializing"


@pytest.mark.parametrize(
    ("timing", "elapsed", "facts", "status"),
    [
        # default drain bound 30 s: requests in flight or pinned connections hold it that long
        (T, 10, Facts(old_inflight=2), "promoting"),
        (T, 10, Facts(old_pinned=1), "promoting"),
        (T, 10, Facts(), "finalizing"),
        (T, 0.5, Facts(), "promoting"),  # dwell 1 s
        (T, 29.9, Facts(old_inflight=3, old_pinned=4), "promoting"),
        # busy pinned keep-alive traffic never holds the replacement up past drain_s
        (T, 30, Facts(old_inflight=3, old_pinned=4), "finalizing"),
        (Timing(drain_s=180), 179, Facts(old_pinned=1), "promoting"),
        (Timing(drain_s=180), 180, Facts(old_inflight=1, old_pinned=1), "finalizing"),
        (Timing(drain_s=180), 1, Facts(), "finalizing"),  # every pinned connection closed
        (Timing(drain_s=0), 0, Facts(old_inflight=1, old_pinned=1), "finalizing"),
        # the drain starts after a weighted shift
        (Timing(shift_s=100, drain_s=30), 120, Facts(old_pinned=1), "promoting"),
        (Timing(shift_s=100, drain_s=30), 130, Facts(old_pinned=1), "finalizing"),
        (Timing(shift_s=100, drain_s=30), 99, Facts(), "promoting"),
    ],
)
def test_drain_is_bounded(timing, elapsed, facts, status):
    r = state.Rollout(status="promoting", since=10, created=0, timing=timing, switched_at=10)
    assert state.next_state(r, 10 + elapsed, facts)[0].status == status


@pytest.mark.parametrize(
    ("keep_old_s", "steps", "expected"),
    [
        # kept 60 s after the switch (at 10): served pinned connections meanwhile
        (60, [(50, Facts(old_inflight=2, old_pinned=2))], [("finalizing", ())]),
        # then retired even while busy, stopped once its last request finished
        (
            60,
            [
                (70, Facts(old_inflight=2, old_pinned=2)),
                (70.1, Facts(old_inflight=1)),
                (70.2, Facts(old_inflight=1)),
                (70.3, Facts()),
                (70.4, Facts()),  # stopping takes a moment: asked again, idempotent
                (70.5, Facts(old_stopped=True)),
            ],
            [
                ("finalizing", ("retire_old",)),
                ("finalizing", ()),
                ("finalizing", ()),
                ("finalizing", ("stop_old",)),
                ("finalizing", ("stop_old",)),
                ("completed", ()),
            ],
        ),
        # keep 0: retired at once when the drain is over
        (0, [(40, Facts(old_pinned=3)), (40.1, Facts())], [
            ("finalizing", ("retire_old",)), ("finalizing", ("stop_old",))
        ]),
    ],
)  # fmt: skip
def test_keep_then_retire_then_stop(keep_old_s, steps, expected):
    t = Timing(keep_old_s=keep_old_s)
    r = state.Rollout(status="finalizing", since=40, created=0, timing=t, switched_at=10)
    out = []
    for now, facts in steps:
        r, actions = state.next_state(r, now, facts)
        out.append((r.status, actions))
    assert out == expected


@pytest.mark.parametrize(
    ("timing", "elapsed", "expected"),
    [
        (Timing(), -1.0, (("old", 1.0),)),  # not switched yet is handled by switched_at None
        (Timing(), 0.0, (("new", 1.0),)),  # atomic
        (Timing(gap_s=2), 1.0, ()),  # inside the gap: nobody
        (Timing(gap_s=2), 2.0, (("new", 1.0),)),
        (Timing(shift_s=10), 0.0, (("old", 1.0), ("new", 0.0))),
        (Timing(shift_s=10), 2.5, (("old", 0.75), ("new", 0.25))),
        (Timing(shift_s=10), 10.0, (("new", 1.0),)),
    ],
)
def test_weights(timing, elapsed, expected):
    switched = None if elapsed < 0 else 100.0
    r = state.Rollout(status="promoting", since=100, created=0, timing=timing, switched_at=switched)
    assert state.weights(r, 100.0 + max(elapsed, 0), "old", "new") == expected


def test_weights_without_rollout():
    assert state.weights(None, 5.0, "old", None) == (("old", 1.0),)
    assert state.weights(None, 5.0, None, None) == ()


@pytest.mark.parametrize(
    ("ws", "r", "expected"),
    [
        ((("a", 1.0),), 0.99, "a"),
        ((("a", 0.25), ("b", 0.75)), 0.0, "a"),
        ((("a", 0.25), ("b", 0.75)), 0.2499, "a"),
        ((("a", 0.25), ("b", 0.75)), 0.25, "b"),
        ((("a", 0.0), ("b", 1.0)), 0.0, "b"),
        ((), 0.5, None),
        ((("a", 0.0),), 0.5, None),
    ],
)
def test_route(ws, r, expected):
    assert state.route(ws, r) == expected


def test_route_shares_match_weights():
    ws = (("a", 0.3), ("b", 0.7))
    picks = [state.route(ws, i / 1000) for i in range(1000)]
    assert picks.count("a") == 300


@pytest.mark.parametrize(
    ("streak", "status", "threshold", "expected"),
    [
        (0, 200, 1, (1, True)),
        (0, 200, 2, (1, False)),
        (1, 204, 2, (2, True)),
        (1, 503, 2, (0, False)),
        (1, None, 2, (0, False)),
        (5, 200, 0, (6, True)),
    ],
)
def test_readiness(streak, status, threshold, expected):
    assert state.readiness(streak, status, threshold) == expected


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, "provisioning"),
        ({"spawned": True}, "launching"),
        ({"spawned": True, "ready": True}, "running"),
        ({"spawned": True, "ready": True, "warming": True}, "warming"),
        ({"spawned": True, "ready": True, "draining": True}, "draining"),
        ({"spawned": True, "ready": True, "stopping": True}, "stopping"),
        ({"stopped": True}, "stopped"),
        ({"spawned": True, "failed": True}, "errored"),
    ],
)
def test_proton_status(kw, expected):
    base = {
        "stopped": False,
        "spawned": False,
        "ready": False,
        "warming": False,
        "draining": False,
        "failed": False,
    }
    assert state.proton_status(**{**base, **kw}) == expected
