"""The control plane's lifecycle events folded into rollout state: one fold for every reader.

The rollout watcher writes event rows (``records`` Event: ``ts``, ``kind``, ``status``,
``replacement_id``, ``proton_id``, ``role``, ``detail``); the tool writes ``marker`` rows of
its own (``replacement requested``). The live status line, the Locust Versions tab, the
service and the report all need the same facts from them, so they all fold them here:

- ``status`` — the latest replacement status (``requested`` after the tool's own request
  marker, until the platform says more);
- ``replacement_id`` — the latest replacement named; ``switched_ts`` — the latest switch
  time the platform reported (``detail.switched_ts``, or its ``switchedAt``);
- ``protons`` — per proton its latest status, role and version; ``active_version`` and
  ``candidate_version`` — the versions now in those roles;
- ``baseline`` / ``candidate`` — the first label seen ``active`` and the first seen
  ``candidate`` (else the request marker's version); the same label on both sides is no
  candidate (callers could not tell them apart);
- ``requested_ts`` — when the tool asked for the replacement (its first marker);
- ``replacements`` — every replacement event, in order, for the report's platform block.

Pure: ``fold(events)`` or ``RolloutState().add(event)`` one at a time, no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["REQUESTED", "ProtonState", "ReplacementEvent", "RolloutState", "event_time", "fold"]

#: The marker the tool writes when it asks the platform for a replacement.
REQUESTED = "replacement requested"


def event_time(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class ProtonState:
    status: str | None
    role: str | None
    version: str | None


@dataclass(frozen=True)
class ReplacementEvent:
    ts: float
    status: str | None
    replacement_id: str | None
    switched_ts: float | None


@dataclass
class RolloutState:
    """The rollout as the events so far tell it (see the module docstring)."""

    status: str | None = None
    #: The latest status the platform itself gave a replacement (no tool marker).
    replacement_status: str | None = None
    replacement_id: str | None = None
    switched_ts: float | None = None
    workload_status: str | None = None
    protons: dict[str, ProtonState] = field(default_factory=dict)
    active_version: str | None = None
    candidate_version: str | None = None
    first_active: str | None = None
    first_candidate: str | None = None
    requested_ts: float | None = None
    requested_version: str | None = None
    replacements: list[ReplacementEvent] = field(default_factory=list)
    events: int = 0

    def add(self, event: Mapping[str, Any]) -> RolloutState:
        """Fold one more event in (returns self)."""
        self.events += 1
        kind, status = event.get("kind"), event.get("status")
        detail = event.get("detail")
        detail = detail if isinstance(detail, Mapping) else {}
        label = detail.get("version")
        label = str(label) if label else None
        if kind == "marker" and status == REQUESTED:
            self.status = "requested"
            if self.requested_ts is None:
                self.requested_ts = event_time(event.get("ts"))
            if self.requested_version is None:
                self.requested_version = label
        elif kind == "replacement":
            self._replacement(event, detail)
        elif kind == "proton":
            self._proton(event, label)
        elif kind == "workload":
            self.workload_status = status
        return self

    def _replacement(self, event: Mapping[str, Any], detail: Mapping[str, Any]) -> None:
        self.status = self.replacement_status = event.get("status")
        rid = event.get("replacement_id")
        self.replacement_id = rid or self.replacement_id
        at = event_time(detail.get("switched_ts")) or event_time(detail.get("switchedAt"))
        self.switched_ts = at if at is not None else self.switched_ts
        ts = event_time(event.get("ts"))
        if ts is not None:
            self.replacements.append(ReplacementEvent(ts, self.status, rid, at))

    def _proton(self, event: Mapping[str, Any], label: str | None) -> None:
        role = event.get("role")
        if event.get("proton_id"):
            self.protons[str(event["proton_id"])] = ProtonState(event.get("status"), role, label)
        if role == "active":
            self.active_version = label
            if self.candidate_version == self.active_version:
                self.candidate_version = None
            if self.first_active is None and label:
                self.first_active = label
        elif role == "candidate":
            self.candidate_version = label
            if self.first_candidate is None and label:
                self.first_candidate = label

    @property
    def baseline(self) -> str | None:
        """The version being replaced: the first label seen active."""
        return self.first_active

    @property
    def candidate(self) -> str | None:
        """The version replacing it: the first candidate label, else the request marker's."""
        candidate = self.first_candidate or self.requested_version
        return None if candidate is not None and candidate == self.first_active else candidate

    @property
    def requested(self) -> bool:
        return self.requested_ts is not None

    def roles(self) -> dict[str, str]:
        """Per version its role now, or its status when it has no role (draining, removed)."""
        roles: dict[str, str] = {}
        for proton in self.protons.values():
            label = proton.role or proton.status
            if proton.version and label:
                roles[proton.version] = label
        return roles

    def as_dict(self) -> dict[str, Any]:
        """The state as plain data (the Locust Versions tab's ``rollout``)."""
        return {
            "replacement_id": self.replacement_id,
            "status": self.replacement_status,
            "switched_ts": self.switched_ts,
            "protons": {
                pid: {"status": p.status, "role": p.role, "version": p.version}
                for pid, p in self.protons.items()
            },
            "roles": self.roles(),
            "requested": self.requested,
            "workload_status": self.workload_status,
        }


def fold(events: Iterable[Mapping[str, Any]]) -> RolloutState:
    """Every event folded, in order."""
    state = RolloutState()
    for event in events:
        state.add(event)
    return state
