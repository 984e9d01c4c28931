"""The rollout watcher: what the control plane said, and when, as event rows.

It polls the workload, its replacement and its protons (default every 0.5 s) and writes an
event row to ``events.jsonl`` for every transition it sees, in the formats agreed between
the stages (``marker``, ``replacement``, ``proton``, ``workload``; see ``probes.records``).

Transition detection is a pure function, ``step(state, observation, labels)``, so that the
rules (what counts as a transition, when a vanished record means "completed") are tested
table-driven with plain values. ``Watcher`` is the thin loop around it: fetch, step, write;
bounded by a stop event and a deadline; a failed poll is recorded and the next one tried.

A ``completed`` record lives about a second before ``GET …/replacement`` answers 404, so a
poller may never see it. When a replacement that was seen disappears and exactly one active
proton remains, the watcher writes ``completed`` with ``detail.inferred`` true (or the
record's real outcome, when the workload's history has it).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from probes.errors import ProbesError
from probes.lifecycle import RolloutState
from probes.records import EventLog
from probes.workload import TERMINAL_REPLACEMENT, Proton, Replacement, Workload, WorkloadClient

DEFAULT_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ProtonView:
    """The part of a proton the watcher tracks."""

    id: str
    status: str
    role: str | None
    artifact_id: str | None

    @classmethod
    def of(cls, proton: Proton) -> ProtonView:
        return cls(proton.id, proton.status, proton.role, proton.artifact_id)


@dataclass(frozen=True)
class ReplacementView:
    """The part of a replacement record the watcher tracks."""

    id: str
    status: str
    switched_at: str | None = None
    switched_ts: float | None = None
    message: str | None = None
    artifact_id: str | None = None
    created_ts: float | None = None

    @classmethod
    def of(cls, rep: Replacement) -> ReplacementView:
        from probes.workload import parse_time

        return cls(
            rep.id,
            rep.status,
            rep.switched_at,
            rep.switched_ts,
            rep.message,
            rep.candidate_artifact_id,
            parse_time(rep.raw.get("createdAt")),
        )


@dataclass(frozen=True)
class WorkloadView:
    """The part of a workload the watcher tracks."""

    status: str
    proton_id: str | None
    artifact_id: str | None

    @classmethod
    def of(cls, workload: Workload) -> WorkloadView:
        return cls(workload.status, workload.proton_id, workload.artifact_id)


@dataclass(frozen=True)
class Observation:
    """What one poll returned. A part whose request failed is None and ``*_known`` False,
    so that a transient error never reads as "the record disappeared"."""

    workload: WorkloadView | None = None
    replacement: ReplacementView | None = None
    replacement_known: bool = True
    protons: tuple[ProtonView, ...] | None = None
    #: The newest history record, when the loop fetched it (see ``needs_history``).
    history_head: ReplacementView | None = None


@dataclass(frozen=True)
class WatchState:
    """What the watcher knows between polls."""

    workload: WorkloadView | None = None
    protons: Mapping[str, ProtonView] = field(default_factory=dict)
    #: The last replacement record seen (kept after it vanishes until its end is written).
    replacement: ReplacementView | None = None
    #: Ids of replacements whose final status has been written.
    finished: frozenset[str] = frozenset()
    #: Set when this tool asked for a replacement: (request time, id from the POST answer).
    expected_since: float | None = None
    expected_id: str | None = None
    #: False until the first observation: what was already over then is history, not news.
    primed: bool = False


Event = dict[str, Any]


def needs_history(state: WatchState, obs: Observation) -> bool:
    """Whether the loop should fetch the history head before ``step``: a record we were
    following has vanished, or one we asked for finished before we ever saw it."""
    if not obs.replacement_known or obs.replacement is not None:
        return False
    rep = state.replacement
    if rep is not None and rep.id not in state.finished:
        return True
    return state.expected_since is not None and (
        state.expected_id is None or state.expected_id not in state.finished
    )


def step(
    state: WatchState, obs: Observation, labels: Mapping[str, str]
) -> tuple[WatchState, list[Event]]:
    """The events one observation implies, and the new state. Pure.

    ``labels`` maps artifact ids to version labels (unknown ids are shown as the id).
    Events carry no ``ts``: the caller stamps them with the poll's time.
    """
    events: list[Event] = []
    if obs.workload is not None:
        state, new = _workload_step(state, obs.workload)
        events += new
    if obs.protons is not None:
        state, new = _protons_step(state, obs.protons, labels)
        events += new
    if obs.replacement_known:
        if (
            not state.primed
            and obs.replacement is not None
            and obs.replacement.status in (TERMINAL_REPLACEMENT)
        ):
            # A record that was already over when we started (an errored one stays readable
            # until the next replacement) belongs to an earlier rollout: no event.
            state = replace(state, finished=state.finished | {obs.replacement.id})
        state, new = _replacement_step(state, obs)
        events += new
        state = replace(state, primed=True)
    return state, events


def _workload_step(state: WatchState, wl: WorkloadView) -> tuple[WatchState, list[Event]]:
    if wl == state.workload:
        return state, []
    event = {
        "kind": "workload",
        "status": wl.status,
        "detail": {"protonId": wl.proton_id, "artifactId": wl.artifact_id},
    }
    return replace(state, workload=wl), [event]


def _protons_step(
    state: WatchState, protons: tuple[ProtonView, ...], labels: Mapping[str, str]
) -> tuple[WatchState, list[Event]]:
    events = []
    seen = {p.id: p for p in protons}
    for proton in protons:
        before = state.protons.get(proton.id)
        if before is None or (before.status, before.role) != (proton.status, proton.role):
            events.append(_proton_event(proton, proton.status, proton.role, labels))
    for gone in state.protons.values():
        if gone.id not in seen:  # no longer listed: torn down or removed after draining
            events.append(_proton_event(gone, "removed", None, labels))
    return replace(state, protons=seen), events


def _proton_event(
    proton: ProtonView, status: str, role: str | None, labels: Mapping[str, str]
) -> Event:
    aid = proton.artifact_id
    version = labels.get(aid, aid) if aid else "unknown"
    return {
        "kind": "proton",
        "status": status,
        "proton_id": proton.id,
        "role": role,
        "detail": {"version": version, "artifact_id": aid},
    }


def _replacement_event(rep: ReplacementView, status: str, *, inferred: bool) -> Event:
    return {
        "kind": "replacement",
        "status": status,
        "replacement_id": rep.id,
        "detail": {
            "switched_ts": rep.switched_ts,
            "switchedAt": rep.switched_at,
            "message": rep.message,
            "inferred": inferred,
            "artifact_id": rep.artifact_id,
        },
    }


def _replacement_step(state: WatchState, obs: Observation) -> tuple[WatchState, list[Event]]:
    cur = obs.replacement
    if cur is not None:
        return _seen_step(state, cur)
    last = state.replacement
    if last is not None and last.id not in state.finished:
        return _vanished_step(state, last, obs)
    head = obs.history_head
    if (
        head is not None
        and head.status in TERMINAL_REPLACEMENT
        and head.id not in state.finished
        and _is_expected(state, head)
    ):
        # The replacement we asked for started and ended between two polls.
        done = replace(state, replacement=head, finished=state.finished | {head.id})
        return done, [_replacement_event(head, head.status, inferred=True)]
    return state, []


def _is_expected(state: WatchState, rep: ReplacementView) -> bool:
    if state.expected_id is not None:
        return rep.id == state.expected_id
    if state.expected_since is None or rep.created_ts is None:
        return False
    return rep.created_ts >= state.expected_since - 1.0  # clocks of two hosts may differ a bit


def _seen_step(state: WatchState, cur: ReplacementView) -> tuple[WatchState, list[Event]]:
    if cur.id in state.finished:
        return state, []  # a finished record still readable (completed TTL, sticky errored)
    last = state.replacement if state.replacement and state.replacement.id == cur.id else None
    # Keep what we learnt (switchedAt) even if a later answer omits it.
    if last is not None and cur.switched_at is None and last.switched_at is not None:
        cur = replace(cur, switched_at=last.switched_at, switched_ts=last.switched_ts)
    finished = state.finished | {cur.id} if cur.status in TERMINAL_REPLACEMENT else state.finished
    new_state = replace(state, replacement=cur, finished=finished)
    if last is not None and last.status == cur.status:
        return new_state, []
    return new_state, [_replacement_event(cur, cur.status, inferred=False)]


def _vanished_step(
    state: WatchState, last: ReplacementView, obs: Observation
) -> tuple[WatchState, list[Event]]:
    head = obs.history_head
    if head is not None and head.id == last.id and head.status in TERMINAL_REPLACEMENT:
        outcome = replace(
            head,
            switched_at=head.switched_at or last.switched_at,
            switched_ts=head.switched_ts or last.switched_ts,
        )
        status = head.status
    elif last.status == "canceling":
        outcome, status = last, "canceled"
    else:
        actives = [p for p in (obs.protons or ()) if p.role == "active"]
        if obs.protons is None or len(actives) != 1:
            return state, []  # not settled yet: decide on a later poll
        landed = last.artifact_id is None or actives[0].artifact_id == last.artifact_id
        status = "completed" if landed else "errored"
        message = last.message
        if not landed:
            message = message or "the replacement record vanished and the candidate is not active"
        outcome = replace(last, message=message)
    new_state = replace(state, replacement=outcome, finished=state.finished | {last.id})
    return new_state, [_replacement_event(outcome, status, inferred=True)]


# -- the in-memory platform timeline ----------------------------------------------------------


@dataclass
class PlatformTimeline:
    """What the control plane has said so far (``lifecycle.RolloutState``), plus the last
    error polling it, for the live status line."""

    events: list[Event] = field(default_factory=list)
    state: RolloutState = field(default_factory=RolloutState)
    last_error: str | None = None

    def add(self, event: Event) -> None:
        self.events.append(event)
        self.state.add(event)

    def status_line(self) -> str:
        """``rollout promoting · active app:1 · candidate app:2``."""
        state = self.state
        parts = [f"rollout {state.status or 'none'}"]
        if state.active_version:
            parts.append(f"active {state.active_version}")
        if state.candidate_version:
            parts.append(f"candidate {state.candidate_version}")
        if self.last_error:
            parts.append(f"control plane: {self.last_error}")
        return " · ".join(parts)


# -- the polling loop ---------------------------------------------------------------------------


class Watcher:
    """Polls one workload and writes its lifecycle to a run's event log.

    Use ``start(deadline)`` / ``stop()`` to run it in a background thread, or ``poll_once``
    to drive it by hand. ``ended`` is set once a replacement reached a final status.
    """

    def __init__(
        self,
        client: WorkloadClient,
        workload_id: str,
        events: EventLog,
        *,
        interval: float = DEFAULT_INTERVAL_S,
        labels: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.workload_id = workload_id
        self.events = events
        self.interval = interval
        self.labels: dict[str, str] = dict(labels or {})
        self.timeline = PlatformTimeline()
        self.state = WatchState()
        self.ended = threading.Event()
        self.outcome: str | None = None
        self.polls = 0
        self.errors = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error_streak = 0
        self._stopped = False

    # -- what the tool itself did -------------------------------------------------------------

    def mark(self, status: str, **detail: Any) -> Event:
        """Write a marker event (something this tool did) and add it to the timeline."""
        event = self.events.write("marker", status, ts=self._clock(), detail=detail or None)
        self.timeline.add(event)
        return event

    def expect_replacement(self, since: float, replacement_id: str | None = None) -> None:
        """Tell the watcher a replacement was requested (so a fast one is not missed)."""
        with self._lock:
            self.state = replace(
                self.state,
                expected_since=since,
                expected_id=replacement_id or self.state.expected_id,
            )

    # -- polling ------------------------------------------------------------------------------

    def observe(self) -> Observation:
        """Fetch workload, replacement and protons; a failing part is left unknown."""
        errors: list[str] = []
        workload = _try(lambda: WorkloadView.of(self.client.get_workload(self.workload_id)), errors)
        rep = _try(lambda: self.client.get_replacement(self.workload_id), errors, missing=False)
        protons = _try(
            lambda: tuple(ProtonView.of(p) for p in self.client.list_protons(self.workload_id)),
            errors,
        )
        self._note_errors(errors)
        return Observation(
            workload=workload,
            replacement=ReplacementView.of(rep) if isinstance(rep, Replacement) else None,
            replacement_known=rep is not False,
            protons=protons,
        )

    def poll_once(self) -> list[Event]:
        """One poll: observe, fill in history and labels when needed, step, write events."""
        obs = self.observe()
        ts = self._clock()
        with self._lock:
            state = self.state
        if needs_history(state, obs):
            errors: list[str] = []
            head = _try(lambda: self.client.history(self.workload_id, limit=1), errors)
            if head:
                obs = replace(obs, history_head=ReplacementView.of(head[0]))
        self._learn_labels(obs)
        with self._lock:
            self.state, new = step(self.state, obs, self.labels)
        written = []
        for event in new:
            fields = {k: v for k, v in event.items() if k not in ("kind", "status")}
            row = self.events.write(event["kind"], event["status"], ts=ts, **fields)
            self.timeline.add(row)
            written.append(row)
            if event["kind"] == "replacement" and event["status"] in TERMINAL_REPLACEMENT:
                self.outcome = event["status"]
                self.ended.set()
        self.polls += 1
        return written

    def _learn_labels(self, obs: Observation) -> None:
        ids = {p.artifact_id for p in obs.protons or () if p.artifact_id}
        for aid in sorted(ids - set(self.labels)):
            errors: list[str] = []
            artifact = _try(functools.partial(self.client.get_artifact, aid), errors)
            if artifact is not None:
                self.labels[aid] = artifact.label

    @property
    def error_streak(self) -> int:
        """Polls in a row, up to the latest, in which some call failed."""
        return self._error_streak

    def _note_errors(self, errors: list[str]) -> None:
        if not errors:
            if self._error_streak:
                self.mark("watch recovered", failed_polls=self._error_streak)
            self._error_streak = 0
            self.timeline.last_error = None
            return
        self.errors += 1
        self._error_streak += 1
        self.timeline.last_error = errors[0]
        if self._error_streak == 1:  # one marker per streak keeps the log short
            self.mark("watch error", error="; ".join(errors))

    def run(self, deadline: float) -> None:
        """Poll until ``stop()`` or the deadline (epoch seconds); never raises on poll errors."""
        while not self._stop.is_set() and self._clock() < deadline:
            started = time.monotonic()
            try:
                self.poll_once()
            except ProbesError as exc:  # e.g. a label lookup refused: keep watching
                self.timeline.last_error = str(exc)
            wait = self.interval - (time.monotonic() - started)
            if wait > 0 and self._stop.wait(min(wait, max(0.0, deadline - self._clock()))):
                break

    def start(self, deadline: float) -> Watcher:
        """Run in a daemon thread until ``stop()`` or ``deadline``.

        Writes the marker ``watch started`` (with ``poll_s``, which timeline attribution
        uses as its certainty margin) before the first poll.
        """
        self.mark("watch started", poll_s=self.interval, workload_id=self.workload_id)
        self._thread = threading.Thread(
            target=self.run, args=(deadline,), name="rollout-watcher", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, final_poll: bool = True) -> None:
        """Stop the loop; with ``final_poll``, look once more so the last state is written.
        Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 15)
        # A control plane that is failing is not asked again: the run must not hang on it.
        if final_poll and not self._error_streak:
            try:
                self.poll_once()
            except ProbesError as exc:
                self.timeline.last_error = str(exc)
        # Timeline attribution trusts the watcher's view only up to its last look.
        self.mark("watch stopped", polls=self.polls, failed_polls=self.errors)


def _try(fetch: Callable[[], Any], errors: list[str], missing: Any = None) -> Any:
    """Run one control-plane call; on a ProbesError note it and return ``missing``."""
    try:
        return fetch()
    except ProbesError as exc:
        errors.append(str(exc))
        return missing
