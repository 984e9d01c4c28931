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
- ``on_sample`` — a version answering the canary. On a url target, every change of the
  serving version is a capture: a version other than the last *settled* one (the version
  that last held 100 % for ``settle_s``) opens one, so a rollback (v2 -> v1) and a
  re-deploy of a label seen before (v1 -> v2 -> v1 -> v2) are captured like a first
  rollout. The first version ever seen is only learnt; after a restart the service hands
  in the version that served when it stopped (``restore``), and a different one answering
  now is a capture of a change made while the service was down (on api targets too: the
  watcher cannot report a replacement that ended before it started). On every target it tracks
  which version answers: "one version holds 100 %" means every answer with a known version
  since ``holder_since`` came from ``holder``.
- ``on_request`` — someone asked (a Flagger ``event`` webhook): opens a capture now.
- ``on_tick`` — time passing: a capture without a replacement (url targets, requested ones)
  ends once one version has held 100 % for ``settle_s`` (that version is then the settled
  one); any capture closes ``tail_s`` after its rollout ended, and at the latest ``max_s``
  after it opened (nothing settled: the next version to hold ``settle_s`` is learnt, so a
  version flapping for hours is one capture per ``max_s``, not one per flap). Outside a
  capture a version holding ``settle_s`` becomes the settled one (api targets, and after an
  unsettled close).

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
    #: The serving version as last settled (held 100 % for ``settle_s``, or the first seen);
    #: a url target's capture opens when another one answers. None: learn the next holder.
    settled: str | None = None
    #: ``settled`` came from before a restart (``restore``) and no answer was seen since.
    restored: bool = False


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


def restore(state: CaptureState, version: str | None) -> CaptureState:
    """The state of a target whose serving version was ``version`` when the service last
    stopped (None: never known): a different version answering first is a capture."""
    if not version or version == UNKNOWN_VERSION:
        return state
    return replace(state, settled=version, known=state.known | {version}, restored=True)


def _change_reason(state: CaptureState, version: str) -> str:
    if state.restored:
        return (
            f"version {version} answering; {state.settled} served when the service stopped"
            " (changed while it was down)"
        )
    if version in state.known:
        return f"version {version} answering again (after {state.settled})"
    return f"new version {version} answering (after {state.settled})"


def on_sample(policy: CapturePolicy, state: CaptureState, version: str, ts: float) -> Result:
    """A canary answer from ``version`` sent at ``ts``."""
    if version == UNKNOWN_VERSION:
        return state, []
    changes: list[Change] = []
    if state.settled is None and not state.known:
        state = replace(state, settled=version)  # the first version ever seen: learnt
    elif (
        (not policy.api or state.restored)  # api targets: the watcher decides, but it never
        and not state.open  # saw a change made while the service was down
        and state.settled not in (None, version)
    ):
        state, changes = _open(
            state,
            ts,
            _change_reason(state, version),
            baseline=state.settled,
            candidate=version,
        )
    if state.restored:
        state = replace(state, restored=False)
    if version not in state.known:
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
        return _learn(policy, state, now), []
    if state.replacement_id is None and state.ended_ts is None:
        since = max(state.holder_since or opened, opened)
        if now - since >= policy.settle_s:
            state = replace(
                state,
                ended_ts=since + policy.settle_s,
                outcome=_settled(state),
                settled=state.holder or state.settled,
            )
    if state.ended_ts is not None and now >= state.ended_ts + policy.tail_s:
        return _close(state, f"rollout {state.outcome}, tail of {policy.tail_s:g} s recorded")
    if now - opened >= policy.max_s:
        state = replace(state, outcome=state.outcome or "incomplete")
        closed, changes = _close(state, f"capture open for {policy.max_s:g} s, the longest kept")
        return replace(closed, settled=None), changes  # nothing settled: learn what holds next
    return state, []


def _learn(policy: CapturePolicy, state: CaptureState, now: float) -> CaptureState:
    """Outside a capture: the version holding 100 % for ``settle_s`` is the settled one."""
    holder, since = state.holder, state.holder_since
    if holder is None or since is None or holder == state.settled:
        return state
    if now - since >= policy.settle_s and (policy.api or state.settled is None):
        return replace(state, settled=holder)
    return state


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


def judged_roles(
    asked_candidate: str | None,
    asked_baseline: str | None,
    baseline: str | None,
    candidate: str | None,
) -> tuple[str | None, str | None] | None:
    """(baseline, candidate) to judge a rollout with for a verdict request, or None when that
    rollout cannot answer it: asked for candidate v2, a rollback v2 -> v1 (whose baseline is
    v2) is not v2's verdict, and no verdict is ever "v2 -> v2"."""
    base = asked_baseline or baseline
    cand = asked_candidate or candidate
    if base is not None and base == cand:
        return None
    return base, cand


def preroll_start(versions: list[str], baseline: str | None) -> int:
    """Where a url capture's pre-roll begins in the rows before it (``versions`` oldest
    first, the row that opened it last): after the last answer of any version other than
    ``baseline``, so that a rollback's run (v2 -> v1) starts with v2 alone, and its report
    sees v2 first (the report takes the version that answered first as the baseline)."""
    if baseline is None:
        return 0
    for i in range(len(versions) - 2, -1, -1):
        if versions[i] not in (baseline, UNKNOWN_VERSION):
            return i + 1
    return 0
