"""Recording that heals: what one target's recording is failing at, and when to try again.

A full or broken disk refuses a canary segment's roll, a shard flush, a run's close or a
capture's directory. None of these may stop a target for good (before issue 21 one failed
roll left a target unrecorded until the next restart), nor fail silently:

- each failing step is retried with ``retry_delay`` (1, 2, 4, 8 s, then every 8 s), so
  recording resumes within seconds of the disk coming back;
- meanwhile rows wait in memory, bounded (``MAX_HELD_ROWS`` per target; beyond it a row is
  dropped and counted: ``RecordingHealth.dropped``);
- ``RecordingHealth`` holds the problems by step: the target's ``health``/``problems`` in
  ``/api/v1/targets``, ``/readyz`` (503 while one target's recording fails) and the metrics
  ``proton_probe_recording_ok``, ``proton_probe_recording_errors_total`` and
  ``proton_probe_recording_rows_dropped_total`` read it; its transitions tell the service
  when to notify (once per outage, and once when it works again).

Pure bookkeeping: no clock (times are handed in), no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

#: Delays between attempts of one failing step (the last one repeats).
RETRY_S = (1.0, 2.0, 4.0, 8.0)
#: Rows one target keeps in memory while nothing can be written (at 20 requests/s, 25 min).
MAX_HELD_ROWS = 30_000

T = TypeVar("T")


def retry_delay(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failures in a row (>= 1)."""
    return RETRY_S[min(max(failures, 1), len(RETRY_S)) - 1]


def describe(exc: BaseException) -> str:
    """A one-line reason: ``No space left on device`` rather than ``[Errno 28] …: '/path'``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass
class Step:
    """One failing step (``canary segment``, ``rollout capture``, ``flushing samples`` …)."""

    reason: str
    since: float
    failures: int = 1
    retry_at: float = 0.0


@dataclass
class RecordingHealth:
    """One target's recording: the steps failing now, and what was refused."""

    steps: dict[str, Step] = field(default_factory=dict)
    #: Failures counted (each failed attempt of any step).
    errors: int = 0
    #: Rows the disk refused and memory could not hold: lost, and counted.
    dropped: int = 0

    @property
    def ok(self) -> bool:
        return not self.steps

    def failed(self, step: str, exc: BaseException, now: float) -> bool:
        """A failed attempt of ``step`` at ``now``; True when the recording was fine before
        (the first failure of an outage: notify once)."""
        was_ok = self.ok
        self.errors += 1
        known = self.steps.get(step)
        if known is None:
            known = self.steps[step] = Step(describe(exc), now)
        else:
            known.failures += 1
            known.reason = describe(exc)
        known.retry_at = now + retry_delay(known.failures)
        return was_ok

    def works(self, step: str) -> bool:
        """``step`` worked; True when that ended the outage (every step fine again)."""
        if self.steps.pop(step, None) is None:
            return False
        return self.ok

    def due(self, step: str, now: float) -> bool:
        """Whether ``step`` may be tried now (not failing, or its retry time has come)."""
        known = self.steps.get(step)
        return known is None or now >= known.retry_at

    def problems(self) -> list[str]:
        """One line per failing step, for people (``/api/v1/targets`` ``problems``)."""
        return [
            f"recording stopped: {step} failed {s.failures}x ({s.reason}); retrying"
            for step, s in sorted(self.steps.items())
        ]


class HeldRows(Generic[T]):
    """Rows waiting in memory for a run to take them: at most ``limit``; the rest counted."""

    def __init__(self, limit: int = MAX_HELD_ROWS) -> None:
        self.limit = limit
        self.rows: deque[T] = deque()
        self.dropped = 0

    def add(self, row: T) -> None:
        if len(self.rows) >= self.limit:
            self.dropped += 1  # the newest is refused: what is held stays in order
            return
        self.rows.append(row)

    def take(self) -> list[T]:
        """Every held row, oldest first; the buffer is empty after."""
        rows = list(self.rows)
        self.rows.clear()
        return rows

    def __len__(self) -> int:
        return len(self.rows)


def health_of(recording_ok: bool, other_problems: list[str]) -> str:
    """``failing`` while the recording is stopped, ``degraded`` with another problem (a
    control plane not reachable, a probe error), else ``ok`` (CONTRACT: targets' health)."""
    if not recording_ok:
        return "failing"
    return "degraded" if other_problems else "ok"
