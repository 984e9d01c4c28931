"""What every recording verb takes and returns: where the run goes, how it is stopped, what
it did, and who watches it live.

No click, no printing: the CLI and the service are two callers of the same functions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from probes.run import TRIGGERS
from probes.settings import KEYS, Place, parse_run_id

__all__ = [
    "AnyEvent",
    "NoProgress",
    "Outcome",
    "Platform",
    "Progress",
    "RunLocation",
    "Stop",
    "stop_reason",
]

if TYPE_CHECKING:
    from probes.rollout import PlatformTarget
    from probes.workload import WorkloadClient


@dataclass(frozen=True)
class RunLocation:
    """Where a run is recorded and who asked for it.

    ``run_id`` None: a UTC timestamp id (else letters, digits, ``.``, ``_``, ``-``: a
    ConfigError otherwise). ``place`` names ``runs_dir``/``run_id`` in errors (by key by
    default; the CLI passes ``FLAGS`` for ``--run-id``).
    """

    runs_dir: Path
    run_id: str | None = None
    trigger: str = "cli"
    schedule: str | None = None
    place: Place = KEYS
    #: The service's target the run is for (its manifest's ``target_name``, which the run
    #: index lists); None for runs made at the CLI.
    target_name: str | None = None

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}")
        parse_run_id(self.run_id, self.place("run_id"))
        object.__setattr__(self, "runs_dir", Path(self.runs_dir))


class Stop(threading.Event):
    """A caller-owned stop event that also says why it was set.

    Any ``threading.Event`` works as a verb's ``stop``; a ``Stop`` set with
    ``stop.request("SIGTERM")`` puts that reason in the manifest's ``interrupted`` field.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        """Ask the run to stop (the first reason wins)."""
        if self.reason is None:
            self.reason = reason
        self.set()


def stop_reason(stop: threading.Event) -> str | None:
    """Why ``stop`` was set (``"stop"`` when it does not say), or None if it was not."""
    if not stop.is_set():
        return None
    return getattr(stop, "reason", None) or "stop"


class AnyEvent:
    """Set when any of several events is: the verb's own end joined with the caller's stop.

    Has the two methods the senders use (``is_set``, ``wait``).
    """

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for any of the events (polling every 50 ms)."""
        end = time.monotonic() + timeout
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.events[0].wait(min(left, 0.05))
        return True


class Progress(Protocol):
    """The live view of a run (the CLI's status line; the service's per-target window).

    Called from the recording's threads: implementations must be thread-safe and quick.
    """

    def started(self, total_s: float | None, platform_status: Callable[[], str] | None) -> None:
        """The run began; ``platform_status`` gives the control plane's rollout, if watched."""

    def add(self, version: str, error: str | None, latency_ms: float) -> None:
        """One request finished."""

    def finished(self) -> None:
        """The run ended (before its report is made)."""


class NoProgress:
    """A Progress that shows nothing."""

    def started(self, total_s: float | None, platform_status: Callable[[], str] | None) -> None:
        return None

    def add(self, version: str, error: str | None, latency_ms: float) -> None:
        return None

    def finished(self) -> None:
        return None


@dataclass(frozen=True)
class Platform:
    """A watched Workload: the client (the caller owns and closes it) and the resolved target.

    ``replace_at_s`` asks for a replacement onto ``target.replace_with`` that many seconds
    after the start (None: only watch). ``tail_s``: how long to keep recording after the
    replacement ended (observe ends then; load and capacity run their own length).
    """

    client: WorkloadClient
    target: PlatformTarget
    tail_s: float = 5.0
    replace_at_s: float | None = None
    warmup_minutes: int = 0
    keep_old_minutes: int = 0


@dataclass(frozen=True)
class Outcome:
    """What a run did. The run directory holds everything; this is the caller's summary."""

    run_dir: Path
    run_id: str
    #: ``summary.json`` as written; None when no report could be made.
    summary: dict[str, Any] | None
    #: Why the run stopped early at its caller's request (a signal's name, ``stop``), or None.
    interrupted: str | None = None
    #: Things the caller should tell a person (a sender that did not stop in time, ...).
    warnings: tuple[str, ...] = ()
    #: Why the target or platform could not be used (every request refused, the control
    #: plane unreadable, the replacement refused), or None.
    unusable: str | None = None
    #: Why the run itself failed (Locust did not run); the run directory keeps what was
    #: recorded and is reported when anything was.
    failure: str | None = None
    #: Sample rows recorded.
    recorded: int = 0
    #: Extra results of the verb (capacity: the summary's ``capacity`` block).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str | None:
        """``pass``/``fail``/``inconclusive`` from the summary, or None without one."""
        if self.summary is None:
            return None
        return (self.summary.get("verdict") or {}).get("result", "inconclusive")
