"""When a rollout capture opens and closes: a pure policy over plain values.

The service feeds it what it sees, with the time it saw it, and acts on what comes back:

- ``on_event`` — a control-plane event from the watcher (api targets). A replacement that is
  not over opens a capture (also when the service starts while one is already under way:
  the watcher's first poll reports it); the same replacement reaching a final status
  (completed, errored, canceled, failed) ends the rollout. A replacement that was only seen
  finished (it started and ended between two polls) opens a capture that is already ended,
  so its aftermath is still recorded. Proton events give the roles: the ``active`` proton's
  label when the capture opens is the baseline, the first ``candidate`` proton's the
  candidate.
- ``on_sample`` — a version answering the canary. On a url target, a version not seen
  before opens a capture (the first version seen is only learnt). On every target it
  tracks which version answers: "one version holds 100 %" means every answer with a known
  version since ``holder_since`` came from ``holder``.
- ``on_request`` — someone asked (a Flagger ``event`` webhook): opens a capture now.
- ``on_tick`` — time passing: a capture without a replacement (url targets, requested ones)
  ends once one version has held 100 % for ``settle_s``; any capture closes ``tail_s`` after
  its rollout ended, and at the latest ``max_s`` after it opened.

Closing returns the outcome: the replacement's final status, or for a settled capture
``completed`` (the candidate holds), ``rolled_back`` (the baseline holds) or ``settled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from probes.records import UNKNOWN_VERSION

#: Final replacement statuses (the platform's; ``canceling`` is on its way to ``canceled``).
FINAL = frozenset({"completed", "errored", "canceled", "failed"})
#: A capture never stays open longer than this (a flapping version, a lost outcome).
MAX_CAPTURE_S = 6 * 3600.0
#: How many captured replacement ids are remembered (so one is never captured twice).
REMEMBER = 32


@dataclass(frozen=True)
class CapturePolicy:
    """The knobs of one target: api (watched control plane) or url; ``settle_s``, ``tail_s``."""

    api: bool
    settle_s: float
    tail_s: float
    max_s: float = MAX_CAPTURE_S


@dataclass(frozen=True)
class CaptureState:
    """What the policy knows about one target."""

    open: bool = False
    opened_ts: float | None = None
    reason: str | None = None
    replacement_id: str | None = None
    #: When the rollout ended (its final status, or when the settle time was reached).
    ended_ts: float | None = None
    outcome: str | None = None
    baseline: str | None = None
    candidate: str | None = None
    #: Control-plane roles as last reported (api targets), also between captures.
    active: str | None = None
    candidate_proton: str | None = None
    #: Versions seen answering, and the one answering alone since ``holder_since``.
    known: frozenset[str] = frozenset()
    holder: str | None = None
    holder_since: float | None = None
    captured: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Change:
    """``open`` or ``close``; a close carries the rollout's outcome."""

    kind: str
    reason: str
    outcome: str | None = None


Result = tuple[CaptureState, list[Change]]


def _open(state: CaptureState, ts: float, reason: str, **fields: Any) -> Result:
    opened = replace(
        state,
        open=True,
        opened_ts=ts,
        reason=reason,
        replacement_id=None,
        ended_ts=None,
        outcome=None,
        baseline=state.active,
        candidate=state.candidate_proton,
    )
    opened = replace(opened, **fields)
    return opened, [Change("open", reason)]


def _close(state: CaptureState, reason: str) -> Result:
    outcome = state.outcome or "incomplete"
    closed = replace(
        state,
        open=False,
        opened_ts=None,
        reason=None,
        replacement_id=None,
        ended_ts=None,
        outcome=None,
        baseline=None,
        candidate=None,
    )
    return closed, [Change("close", reason, outcome)]


def on_event(policy: CapturePolicy, state: CaptureState, event: dict[str, Any]) -> Result:
    """A control-plane event (``probes.watch`` format, with its ``ts``)."""
    kind, status, ts = event.get("kind"), str(event.get("status")), float(event["ts"])
    if kind == "proton":
        return _proton(state, event), []
    if kind != "replacement":
        return state, []
    rid = event.get("replacement_id")
    final = status in FINAL
    if state.open and state.replacement_id in (None, rid):
        if rid is not None and rid not in state.captured:
            state = replace(state, captured=(*state.captured, rid)[-REMEMBER:])
        if final:
            return replace(state, replacement_id=rid, ended_ts=ts, outcome=status), []
        return replace(state, replacement_id=rid, ended_ts=None, outcome=None), []
    if rid is not None and rid in state.captured:
        return state, []  # a finished record still readable, or one captured before
    changes: list[Change] = []
    if state.open:  # another replacement while the last one's tail runs: a capture each
        state, changes = _close(state, f"replacement {rid} started")
    captured = (*state.captured, rid)[-REMEMBER:] if rid is not None else state.captured
    reason = f"replacement {rid} {status}" if not final else f"replacement {rid} seen {status}"
    state, opened = _open(state, ts, reason, replacement_id=rid, captured=captured)
    if final:
        state = replace(state, ended_ts=ts, outcome=status)
    return state, changes + opened


def _proton(state: CaptureState, event: dict[str, Any]) -> CaptureState:
    detail = event.get("detail") or {}
    label = detail.get("version") if isinstance(detail, dict) else None
    if not label or label == UNKNOWN_VERSION:
        return state
    role = event.get("role")
    if role == "active":
        state = replace(state, active=label)
        if state.candidate_proton == label:
            state = replace(state, candidate_proton=None)
        if state.open and state.baseline is None:
            state = replace(state, baseline=label)
    elif role == "candidate":
        state = replace(state, candidate_proton=label)
        if state.open and state.candidate is None and label != state.baseline:
            state = replace(state, candidate=label)
    return state


def on_sample(policy: CapturePolicy, state: CaptureState, version: str, ts: float) -> Result:
    """A canary answer from ``version`` sent at ``ts``."""
    if version == UNKNOWN_VERSION:
        return state, []
    changes: list[Change] = []
    if version not in state.known:
        before = state.holder
        if not policy.api and state.known and not state.open:
            state, changes = _open(
                state, ts, f"new version {version} answering", baseline=before, candidate=version
            )
        state = replace(state, known=state.known | {version})
    if state.open and state.candidate is None and version != state.baseline:
        state = replace(state, candidate=version)
    if version != state.holder:
        state = replace(state, holder=version, holder_since=ts)
        if state.open and state.replacement_id is None and state.ended_ts is not None:
            state = replace(state, ended_ts=None, outcome=None)  # mixed again: not settled
    return state, changes


def on_request(policy: CapturePolicy, state: CaptureState, reason: str, ts: float) -> Result:
    """Open a capture now (a Flagger event), unless one is open already."""
    if state.open:
        return state, []
    return _open(state, ts, reason, baseline=state.active or state.holder)


def on_tick(policy: CapturePolicy, state: CaptureState, now: float) -> Result:
    """Time passing: settle, tail, and the longest capture."""
    opened = state.opened_ts
    if not state.open or opened is None:
        return state, []
    if state.replacement_id is None and state.ended_ts is None:
        since = max(state.holder_since or opened, opened)
        if now - since >= policy.settle_s:
            state = replace(state, ended_ts=since + policy.settle_s, outcome=_settled(state))
    if state.ended_ts is not None and now >= state.ended_ts + policy.tail_s:
        return _close(state, f"rollout {state.outcome}, tail of {policy.tail_s:g} s recorded")
    if now - opened >= policy.max_s:
        state = replace(state, outcome=state.outcome or "incomplete")
        return _close(state, f"capture open for {policy.max_s:g} s, the longest kept")
    return state, []


def _settled(state: CaptureState) -> str:
    if state.holder is not None and state.holder == state.candidate:
        return "completed"
    if state.holder is not None and state.holder == state.baseline:
        return "rolled_back"
    return "settled"


def closes_at(policy: CapturePolicy, state: CaptureState) -> float | None:
    """When the open capture will close if nothing changes (None: not decided yet)."""
    if not state.open or state.ended_ts is None:
        return None
    return state.ended_ts + policy.tail_s
