"""Rollout watcher: transition detection (pure, table-driven) and the polling loop."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from probes.errors import TargetError
from probes.records import EventLog, read_events
from probes.watch import (
    Observation,
    PlatformTimeline,
    ProtonView,
    ReplacementView,
    Watcher,
    WatchState,
    WorkloadView,
    needs_history,
    step,
)

LABELS = {"art-1": "app:1", "art-2": "app:2"}
WL = WorkloadView("running", "pr-1", "art-1")
OLD = ProtonView("pr-1", "running", "active", "art-1")
NEW = ProtonView("pr-2", "launching", "candidate", "art-2")
REP = ReplacementView("rep-1", "initializing", artifact_id="art-2")
SWITCHED = replace(REP, status="promoting", switched_at="2026-07-01T12:00:00Z", switched_ts=1.5e9)


def seen(*protons: ProtonView, rep: ReplacementView | None = None) -> WatchState:
    """A state in which the given protons and replacement were already seen."""
    return WatchState(workload=WL, protons={p.id: p for p in protons}, replacement=rep, primed=True)


def brief(events):
    """Events as (kind, status, id, role, inferred) tuples, for compact expectations."""
    out = []
    for e in events:
        ident = e.get("replacement_id") or e.get("proton_id")
        out.append((e["kind"], e["status"], ident, e.get("role"), e["detail"].get("inferred")))
    return out


CASES = [
    (
        "first poll writes the whole picture",
        WatchState(),
        Observation(WL, None, True, (OLD,)),
        [
            ("workload", "running", None, None, None),
            ("proton", "running", "pr-1", "active", None),
        ],
    ),
    (
        "a record already over at the first poll is an earlier rollout's",
        WatchState(),
        Observation(None, replace(REP, status="errored"), True, None),
        [],
    ),
    (
        "an active record at the first poll is written",
        WatchState(),
        Observation(None, SWITCHED, True, None),
        [("replacement", "promoting", "rep-1", None, False)],
    ),
    ("nothing changed: nothing written", seen(OLD), Observation(WL, None, True, (OLD,)), []),
    (
        "a replacement appears with its candidate",
        seen(OLD),
        Observation(WL, REP, True, (OLD, NEW)),
        [
            ("proton", "launching", "pr-2", "candidate", None),
            ("replacement", "initializing", "rep-1", None, False),
        ],
    ),
    (
        "status change only",
        seen(OLD, NEW, rep=REP),
        Observation(WL, replace(REP, status="staged"), True, (OLD, NEW)),
        [("replacement", "staged", "rep-1", None, False)],
    ),
    (
        "switch: roles move, old drains",
        seen(OLD, NEW, rep=REP),
        Observation(
            WL,
            SWITCHED,
            True,
            (
                replace(OLD, status="draining", role=None),
                replace(NEW, status="running", role="active"),
            ),
        ),
        [
            ("proton", "draining", "pr-1", None, None),
            ("proton", "running", "pr-2", "active", None),
            ("replacement", "promoting", "rep-1", None, False),
        ],
    ),
    (
        "record vanishes, one active proton: completed, inferred",
        seen(replace(NEW, status="running", role="active"), rep=SWITCHED),
        Observation(WL, None, True, (replace(NEW, status="running", role="active"),)),
        [("replacement", "completed", "rep-1", None, True)],
    ),
    (
        "record vanishes while two protons are active: not decided yet",
        seen(rep=SWITCHED),
        Observation(WL, None, True, (OLD, replace(NEW, role="active"))),
        [
            ("proton", "running", "pr-1", "active", None),
            ("proton", "launching", "pr-2", "active", None),
        ],
    ),
    (
        "record vanishes and the old artifact is still active: errored, inferred",
        seen(OLD, rep=REP),
        Observation(WL, None, True, (OLD,)),
        [("replacement", "errored", "rep-1", None, True)],
    ),
    (
        "record vanishes after canceling: canceled",
        seen(OLD, rep=replace(REP, status="canceling")),
        Observation(WL, None, True, (OLD,)),
        [("replacement", "canceled", "rep-1", None, True)],
    ),
    (
        "history tells the real outcome of a vanished record",
        seen(OLD, rep=REP),
        Observation(
            WL, None, True, (OLD,), history_head=replace(REP, status="errored", message="x")
        ),
        [("replacement", "errored", "rep-1", None, True)],
    ),
    (
        "a failed replacement poll is not a disappearance",
        seen(OLD, rep=SWITCHED),
        Observation(WL, None, False, (OLD,)),
        [],
    ),
    (
        "a failed protons poll writes no proton events",
        seen(OLD),
        Observation(WL, None, True, None),
        [],
    ),
    (
        "a finished record still readable is not written twice",
        replace(seen(OLD, rep=replace(REP, status="completed")), finished=frozenset({"rep-1"})),
        Observation(WL, replace(REP, status="completed"), True, (OLD,)),
        [],
    ),
    (
        "a proton no longer listed is removed",
        seen(OLD, NEW),
        Observation(WL, None, True, (OLD,)),
        [("proton", "removed", "pr-2", None, None)],
    ),
    (
        "workload switches its active proton",
        seen(OLD),
        Observation(WorkloadView("running", "pr-2", "art-2"), None, True, (OLD,)),
        [("workload", "running", None, None, None)],
    ),
    (
        "a requested replacement finished between two polls: from history",
        replace(seen(OLD), expected_since=100.0, expected_id="rep-1"),
        Observation(WL, None, True, (OLD,), history_head=replace(SWITCHED, status="completed")),
        [("replacement", "completed", "rep-1", None, True)],
    ),
    (
        "an older history record is not mistaken for the one requested",
        replace(seen(OLD), expected_since=100.0),
        Observation(
            WL, None, True, (OLD,), history_head=replace(REP, status="completed", created_ts=50.0)
        ),
        [],
    ),
]


@pytest.mark.parametrize(("name", "state", "obs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_step(name, state, obs, expected):
    _, events = step(state, obs, LABELS)
    assert brief(events) == expected


def test_step_carries_labels_and_switch_time():
    state, events = step(
        seen(OLD, NEW, rep=REP), Observation(WL, SWITCHED, True, (OLD, NEW)), LABELS
    )
    assert events[0]["detail"] == {
        "switched_ts": 1.5e9,
        "switchedAt": "2026-07-01T12:00:00Z",
        "message": None,
        "inferred": False,
        "artifact_id": "art-2",
    }
    # A later answer without switchedAt keeps the time learnt before.
    _, events = step(state, Observation(WL, replace(REP, status="finalizing"), True, None), LABELS)
    assert events[0]["detail"]["switched_ts"] == 1.5e9
    _, events = step(WatchState(), Observation(None, None, True, (NEW,)), {})
    assert events[0]["detail"] == {"version": "art-2", "artifact_id": "art-2"}


def test_needs_history():
    assert needs_history(seen(OLD, rep=REP), Observation(WL, None, True, (OLD,)))
    assert not needs_history(seen(OLD, rep=REP), Observation(WL, REP, True, (OLD,)))
    assert not needs_history(seen(OLD, rep=REP), Observation(WL, None, False, (OLD,)))
    assert not needs_history(seen(OLD), Observation(WL, None, True, (OLD,)))
    assert needs_history(replace(seen(OLD), expected_since=1.0), Observation(WL, None, True, ()))


def test_timeline_status_line():
    tl = PlatformTimeline()
    assert tl.status_line() == "rollout none"
    tl.add({"kind": "marker", "status": "replacement requested", "detail": {}})
    assert tl.status_line() == "rollout requested"
    tl.add(
        {"kind": "proton", "status": "running", "role": "active", "detail": {"version": "app:1"}}
    )
    tl.add(
        {"kind": "proton", "status": "warming", "role": "candidate", "detail": {"version": "app:2"}}
    )
    tl.add({"kind": "replacement", "status": "promoting", "detail": {"switched_ts": 5.0}})
    assert tl.status_line() == "rollout promoting · active app:1 · candidate app:2"
    tl.add(
        {"kind": "proton", "status": "running", "role": "active", "detail": {"version": "app:2"}}
    )
    assert tl.status_line() == "rollout promoting · active app:2" and tl.state.switched_ts == 5.0


class FakeClient:
    """Replays a script of (workload, replacement, protons) answers; an Exception is raised."""

    def __init__(self, script):
        self.script = list(script)
        self.i = 0
        self.artifact_calls = 0

    def _now(self):
        return self.script[min(self.i - 1, len(self.script) - 1)]

    def get_workload(self, wid):
        from probes.workload import Workload

        self.i += 1  # one poll = one workload call first
        return Workload.from_json({"id": wid, "status": "running", "protonId": "pr-1"})

    def get_replacement(self, wid):
        rep = self._now()[0]
        if isinstance(rep, Exception):
            raise rep
        return rep

    def list_protons(self, wid):
        return self._now()[1]

    def history(self, wid, limit=None):
        return []

    def get_artifact(self, aid):
        from probes.workload import Artifact

        self.artifact_calls += 1
        return Artifact.from_json({"id": aid, "name": "app", "version": int(aid[-1])})


def _proton(pid, aid, role, status="running"):
    from probes.workload import Proton

    return Proton.from_json({"id": pid, "artifactId": aid, "role": role, "status": status})


def _rep(status):
    from probes.workload import Replacement

    return Replacement.from_json({"id": "rep-1", "status": status, "candidateArtifactId": "art-2"})


def test_watcher_writes_events_tolerates_errors_and_infers_completion(tmp_path):
    both = [_proton("pr-1", "art-1", "active"), _proton("pr-2", "art-2", "candidate")]
    after = [_proton("pr-2", "art-2", "active")]
    script = [
        (None, [_proton("pr-1", "art-1", "active")]),
        (_rep("initializing"), both),
        (TargetError("boom"), both),
        (TargetError("boom"), both),
        (_rep("promoting"), after),
        (None, after),
        (None, after),
    ]
    client = FakeClient(script)
    log = EventLog(tmp_path)
    clock = iter(range(100, 200))
    watcher = Watcher(
        client, "wl-1", log, labels={"art-1": "app:1"}, clock=lambda: float(next(clock))
    )
    for _ in script:
        watcher.poll_once()
    log.close()
    rows = [(e["kind"], e["status"]) for e in read_events(tmp_path)]
    kinds = [r for r in rows if r[0] != "workload"]
    assert kinds == [
        ("proton", "running"),
        ("proton", "running"),
        ("replacement", "initializing"),
        ("marker", "watch error"),
        ("marker", "watch recovered"),
        ("proton", "running"),
        ("proton", "removed"),
        ("replacement", "promoting"),
        ("replacement", "completed"),
    ]
    events = read_events(tmp_path)
    done = events[-1]
    assert done["detail"]["inferred"] is True and watcher.outcome == "completed"
    assert watcher.ended.is_set() and watcher.errors == 2
    # Labels: the given one is kept, the unknown artifact is looked up once.
    assert client.artifact_calls == 1 and watcher.labels == {"art-1": "app:1", "art-2": "app:2"}
    versions = {e["proton_id"]: e["detail"]["version"] for e in events if e["kind"] == "proton"}
    assert versions == {"pr-1": "app:1", "pr-2": "app:2"}


def test_watcher_loop_is_bounded_by_deadline_and_stop(tmp_path):
    client = FakeClient([(None, [_proton("pr-1", "art-1", "active")])])
    log = EventLog(tmp_path)
    watcher = Watcher(client, "wl-1", log, interval=0.01, labels=LABELS)
    import time

    watcher.run(deadline=time.time() + 0.2)  # returns by itself
    assert watcher.polls >= 2
    watcher2 = Watcher(client, "wl-1", log, interval=0.01, labels=LABELS).start(time.time() + 60)
    stopper = threading.Timer(0.1, watcher2.stop)
    stopper.start()
    stopper.join()
    watcher2.stop()  # second call is a no-op
    log.close()
    markers = [e["status"] for e in read_events(tmp_path) if e["kind"] == "marker"]
    assert markers == ["watch started", "watch stopped"]
    started = next(e for e in read_events(tmp_path) if e["status"] == "watch started")
    assert started["detail"] == {"poll_s": 0.01, "workload_id": "wl-1"}


def test_status_line_carries_the_platform_text():
    from probes.statusline import StatusLine, Tally

    tl = PlatformTimeline()
    tl.add({"kind": "replacement", "status": "staged", "detail": {}})
    line = StatusLine(Tally(), 10.0, quiet=True, extra=tl.status_line).line()
    assert line.endswith(" · rollout staged")
    assert " · " not in StatusLine(Tally(), 10.0, quiet=True, extra=lambda: "").line()
