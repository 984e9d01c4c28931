"""``probes.locustglue.ratepace``: the open-model rate plan split across Locust workers."""

from __future__ import annotations

import pytest

from probes.locustglue.ratepace import SATURATION_TOLERANCE_S, RateSchedule, SlotQueue

PLAN = {"start_rate": 10.0, "step_rate": 5.0, "step_seconds": 2.0, "max_rate": 20.0,
        "duration_s": 6.0, "n_steps": 3}  # fmt: skip


def schedule(**over: float) -> RateSchedule:
    return RateSchedule.from_plan({**PLAN, **over}, t0=100.0)


def test_every_step_offers_exactly_its_rate() -> None:
    assert schedule().offered() == [20, 30, 40]
    assert schedule(step_rate=0.3, start_rate=0.7, max_rate=1.3).offered() == [2, 2, 3]
    assert schedule(duration_s=5.0).offered() == [20, 30]  # a step cut by the cap is not run


@pytest.mark.parametrize("workers", [1, 2, 3, 7, 100])
def test_workers_split_the_slots_exactly(workers: int) -> None:
    sched = schedule()
    alone = list(sched.slots(0, 1))
    parts = [list(sched.slots(w, workers)) for w in range(workers)]
    assert sorted(t for part in parts for t in part) == alone
    assert len(alone) == sum(sched.offered())
    for part in parts:  # each worker's own slots are in order
        assert part == sorted(part)
    # per step, the due times are the probe's: start + i / rate
    assert alone[:3] == [100.0, 100.1, 100.2] and alone[20] == 102.0
    assert alone[20 + 29] == pytest.approx(102.0 + 29 / 15)


def test_a_slot_due_while_every_user_was_busy_is_not_sent() -> None:
    queue = SlotQueue(iter([1.0, 2.0, 3.0, 4.0]))
    assert queue.take(0.5) == (1.0, [])  # free early: takes the next slot and waits for it
    assert queue.take(1.0 + SATURATION_TOLERANCE_S / 2) == (2.0, [])
    assert queue.take(3.5) == (4.0, [3.0])  # 3.0 was due while no user was free
    assert queue.take(9.0) == (None, [])  # the plan is over
