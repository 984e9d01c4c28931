"""Open-model rate steps on Locust workers: which request slots a worker offers, and when.

A capacity run in rate mode beyond one machine (``probes capacity --mode rate
--expect-workers W``) offers the plan's rate ``r(k)`` in step ``k`` as the one probe would:
slot ``i`` of step ``k`` is due at ``t0 + k*S + i/r(k)`` for ``i = 0, 1, ...`` while inside
the step (``S`` = ``step_seconds``). Slots are numbered across steps (``j``); worker ``w`` of
``W`` offers the slots ``j ≡ w (mod W)``, so the workers together offer exactly the plan, each
``r(k)/W``. Within a worker its users take the worker's slots in order (``SlotQueue``); a
slot already due when the next user is free to take it was due while every user of the
worker was in flight: it is not sent, and recorded ``client_saturated`` (the users are the
worker's in-flight bound, as ``--max-in-flight`` is the probe's).

Locust-free and pure (plain values in, plain values out), tested table-driven.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RATE_LEAD_S", "SATURATION_TOLERANCE_S", "RateSchedule", "SlotQueue"]

#: Seconds between the master's test start and the first slot: the users spawn meanwhile.
RATE_LEAD_S = 3.0
#: A slot taken later than this past its due time is ``client_saturated``, not sent late.
SATURATION_TOLERANCE_S = 0.005


@dataclass(frozen=True)
class RateSchedule:
    """The plan's slots from ``t0`` (``RatePlan.describe()`` values)."""

    start_rate: float
    step_rate: float
    step_seconds: float
    max_rate: float
    duration_s: float
    n_steps: int
    t0: float

    @classmethod
    def from_plan(cls, plan: Mapping[str, Any], t0: float) -> RateSchedule:
        return cls(
            float(plan["start_rate"]), float(plan["step_rate"]), float(plan["step_seconds"]),
            float(plan["max_rate"]), float(plan["duration_s"]), int(plan["n_steps"]), float(t0),
        )  # fmt: skip

    def rate(self, k: int) -> float:
        return min(self.max_rate, self.start_rate + k * self.step_rate)

    def steps(self) -> Iterator[tuple[float, float, int]]:
        """``(start, rate, slots)`` of every step inside ``duration_s``."""
        for k in range(self.n_steps):
            if (k + 1) * self.step_seconds > self.duration_s + 1e-9:
                return
            rate = self.rate(k)
            # i/rate < S for i = 0 .. ceil(S*rate) - 1 (as the probe's pacer schedules them)
            yield self.t0 + k * self.step_seconds, rate, math.ceil(self.step_seconds * rate - 1e-9)

    def slots(self, worker: int, workers: int) -> Iterator[float]:
        """Due times of the slots ``j ≡ worker (mod workers)``, in order."""
        base = 0
        for start, rate, count in self.steps():
            first = (worker - base) % workers
            for i in range(first, count, workers):
                yield start + i / rate
            base += count

    def offered(self) -> list[int]:
        """Slots per step (all workers together)."""
        return [count for _, _, count in self.steps()]


class SlotQueue:
    """A worker's slots, taken in order by its users (one greenlet at a time)."""

    def __init__(self, due_times: Iterator[float]) -> None:
        self._due = due_times

    def take(self, now: float) -> tuple[float | None, list[float]]:
        """``(slot to send, slots missed)``: the next slot not already overdue at ``now``
        (None when the plan is over), and the overdue ones before it, which every user was
        too busy to send (``client_saturated``)."""
        missed: list[float] = []
        for due in self._due:
            if due >= now - SATURATION_TOLERANCE_S:
                return due, missed
            missed.append(due)
        return None, missed
