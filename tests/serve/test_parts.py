"""The service's parts on their own, each given a ``ServeContext`` of fakes (no Service, no
sockets): ``RunFinisher`` (close, report, index, recover), ``Jobs`` (the conflict rule, a run
in a thread, what its end does), ``Scheduler`` (one tick's decision and its record),
``Trends`` (the baseline, regressions notified once), and the target's parts: ``RolloutRun``
(rows and events wait for the directory), ``RecentRollouts`` (which rollout is judged),
``PlatformWatch`` (the state a capture starts from) and the canary ``segments``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from probes.records import Sample, make_event, read_events, read_manifest, read_samples
from probes.run import Run, read_summary
from probes.serve import trends as trends_mod
from probes.serve.config import ServeConfig
from probes.serve.context import ServeContext
from probes.serve.finishing import OpenRun, RunFinisher
from probes.serve.jobs import Jobs
from probes.serve.platform_watch import PlatformWatch, _EventRouter
from probes.serve.recent import ClosedRollout, RecentRollouts, SampleBuffer, load_rollout
from probes.serve.rollout_run import RolloutRun, make_rollout_run
from probes.serve.runner import Job, JobResult
from probes.serve.schedule import initial_state
from probes.serve.scheduler import SCHEDULER_LOG, Scheduler
from probes.serve.segments import create_segment, max_in_flight, probe_settings, segment_end
from probes.serve.tasks import Tasks
from probes.serve.trends import Trends
from tests.serve.test_service import FakeIndex, FakeMetrics, FakeRunner, config, wait_until

URL = "http://127.0.0.1:9/"  # never contacted: nothing here probes


class Notes:
    """A ``Notify`` that keeps every notification."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, str | None, dict[str, Any]]] = []

    def __call__(self, kind: str, target: str | None, run_id: str | None, **details: Any) -> None:
        self.sent.append((kind, target, run_id, details))

    def kinds(self) -> list[str]:
        return [k for k, *_ in self.sent]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def make_ctx(cfg: ServeConfig, pool: ThreadPoolExecutor, **kw: Any) -> ServeContext:
    cfg.serve.runs_dir.mkdir(parents=True, exist_ok=True)
    return ServeContext(
        serve=cfg.serve,
        io=pool,
        finish=kw.pop("finish", lambda *a, **k: None),
        index=kw.pop("index", FakeIndex()),
        metrics=kw.pop("metrics", FakeMetrics()),
        notify=kw.pop("notify", Notes()),
        tasks=kw.pop("tasks", Tasks()),
        stopping=kw.pop("stopping", asyncio.Event()),
    )


def sample(ts: float, version: str = "v1") -> Sample:
    return Sample(ts, ts, 5.0, "probe", "w", "GET", "/", 200, None, version, "header", 2, None)


# --------------------------------------------------------------------------- RunFinisher


def test_finisher_closes_reports_and_indexes_a_run(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    runs = tmp_path / "runs"
    run = Run.create(runs, "a-canary-1", "canary", target={}, settings={}, trigger="continuous")
    writer = run.shard_writer("probe", background=False)
    now = time.time()
    writer.add_many([sample(now + k / 10) for k in range(7)])
    index, tasks = FakeIndex(), Tasks()
    finisher = RunFinisher(runs, index, pool, pool, tasks)  # type: ignore[arg-type]

    async def main() -> None:
        finisher.finish(OpenRun(run, writer), figures=False, note="x")
        assert tasks.pending("closing") and tasks.pending("reports")
        await finisher.drain()
        assert not tasks.pending("closing") and not tasks.pending("reports")

    asyncio.run(main())
    manifest = read_manifest(run.path)
    assert manifest["ended_ts"] is not None and manifest["note"] == "x"
    assert len(read_samples(run.path)) == 7
    assert read_summary(run.path) is not None
    assert index.ids() == {"a-canary-1"}


class Recorder:
    """A target's recording health as ``RunFinisher`` sees it: what failed, what works."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def recording_failed(self, step: str, exc: BaseException) -> float:
        self.said.append(f"failed {step}: {exc}")
        return 0.05

    def recording_works(self, step: str) -> None:
        self.said.append(f"works {step}")


def test_finisher_retries_a_close_the_disk_refused_and_tells_the_target(
    tmp_path: Path, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probes.serve import finishing

    runs = tmp_path / "runs"
    run = Run.create(runs, "a-canary-2", "canary", target={}, settings={}, trigger="continuous")
    writer = run.shard_writer("probe", background=False)
    writer.add_many([sample(time.time() + k / 10) for k in range(5)])
    refusals = [OSError(28, "No space left on device")] * 2
    close = finishing._close_run

    def full_then_freed(*args: Any) -> None:
        if refusals:
            raise refusals.pop()
        close(*args)

    monkeypatch.setattr(finishing, "_close_run", full_then_freed)
    recorder, tasks = Recorder(), Tasks()
    finisher = RunFinisher(
        runs, FakeIndex(), pool, pool, tasks,  # type: ignore[arg-type]
        recorders={"a": recorder}.get,
    )  # fmt: skip

    async def main() -> None:
        finisher.finish(OpenRun(run, writer), figures=False, target="a")
        await finisher.drain()

    asyncio.run(main())
    assert recorder.said == [
        "failed closing a run: [Errno 28] No space left on device",
        "failed closing a run: [Errno 28] No space left on device",
        "works closing a run",
    ]
    assert read_manifest(run.path)["ended_ts"] is not None
    assert len(read_samples(run.path)) == 5


def test_finisher_recovers_only_the_service_runs(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    runs = tmp_path / "runs"
    crashed = Run.create(runs, "a-canary-x", "canary", target={}, settings={}, trigger="continuous")
    with crashed.shard_writer("probe") as writer:
        writer.add(sample(time.time()))
    unreported = Run.create(runs, "s-1", "observe", target={}, settings={}, trigger="schedule")
    unreported.finish()
    Run.create(runs, "mine", "observe", target={}, settings={})  # a CLI run: not the service's
    index = FakeIndex()
    finisher = RunFinisher(runs, index, pool, pool, Tasks())  # type: ignore[arg-type]
    assert finisher.recover() == ["a-canary-x", "s-1"]
    assert read_manifest(crashed.path)["interrupted"].startswith("left open by a crash")
    assert read_manifest(runs / "mine")["ended_ts"] is None
    assert index.ids() == {"a-canary-x", "s-1"}
    assert finisher.recover() == []  # reported now: nothing left to recover


# --------------------------------------------------------------------------- Jobs


def test_jobs_conflict_rule_and_what_a_run_end_does(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    cfg = config(tmp_path, [{"name": "a", "url": URL, "canary_rate": 1}])
    notes, index, metrics = Notes(), FakeIndex(), FakeMetrics()
    ended: list[tuple[Job, JobResult]] = []
    runner = FakeRunner(hold_s=30.0)

    async def main() -> None:
        ctx = make_ctx(cfg, pool, notify=notes, index=index, metrics=metrics)
        jobs = Jobs(ctx, runner, on_done=lambda job, result: ended.append((job, result)))
        target = cfg.target("a")
        assert (
            jobs.conflict("a", "load", "a-rollout-1")
            == "a rollout capture (a-rollout-1) is open on a"
        )
        assert jobs.conflict("a", "observe", "a-rollout-1") is None  # observing never conflicts
        job = Job("a-load-1", "load", target, cfg.serve.runs_dir, "schedule", 30.0, schedule="s")
        handle = jobs.launch(job)
        assert jobs.running_on("a") and not jobs.running_on("b") and len(jobs) == 1
        assert jobs.conflict("a", "capacity", None) == "run a-load-1 (load) is still running on a"
        assert jobs.conflict("a", "observe", None) is None
        jobs.stop_all()
        await jobs.wait(10.0)
        assert handle.result is not None and handle.result.interrupted == "stopped"
        assert not jobs

    asyncio.run(main())
    assert runner.stopped == ["a-load-1"]
    assert [(j.run_id, r.result) for j, r in ended] == [("a-load-1", "interrupted")]
    assert index.ids() == {"a-load-1"}
    assert metrics.named("scheduled_run") == [("s", "interrupted")]
    assert notes.sent == []  # interrupted is neither an error nor a fail


def test_jobs_a_failing_run_is_notified(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    cfg = config(tmp_path, [{"name": "a", "url": URL, "canary_rate": 1}])
    notes = Notes()

    class Broken:
        def run(self, job: Job, stop: threading.Event) -> JobResult:
            raise RuntimeError("boom")

    async def main() -> None:
        jobs = Jobs(make_ctx(cfg, pool, notify=notes), Broken(), on_done=lambda j, r: None)
        rid = jobs.start(cfg.target("a"), "observe", 1.0, {}, None)
        await wait_until(lambda: not jobs, 5)
        assert rid.startswith("a-observe-")

    asyncio.run(main())
    ((kind, target, _, details),) = notes.sent
    assert (kind, target, details["result"]) == ("run_failed", "a", "error")
    assert details["failure"] == "RuntimeError('boom')"


# --------------------------------------------------------------------------- Scheduler


def test_scheduler_defers_a_load_while_a_capture_is_open_then_starts_it(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    cfg = config(
        tmp_path,
        [{"name": "a", "url": URL, "canary_rate": 1}],
        schedules=[{"name": "soak", "target": "a", "kind": "load", "every": "10s",
                    "duration_s": 5, "args": {"users": 2}}],
    )  # fmt: skip
    (soak,) = cfg.schedules
    metrics, runner = FakeMetrics(), FakeRunner(hold_s=0.0)
    open_capture: dict[str, str | None] = {"a": "a-rollout-1"}

    async def main() -> Scheduler:
        ctx = make_ctx(cfg, pool, metrics=metrics)
        jobs = Jobs(ctx, runner, on_done=lambda j, r: None)
        targets = {t.name: t for t in cfg.targets}
        sched = Scheduler(ctx, cfg.schedules, targets, jobs, capture_open=open_capture.get)
        start = 1_000_000.0
        sched.states["soak"] = initial_state("soak", [], start)
        sched.tick(soak, start + 10.5)  # due, but a capture is open: deferred
        assert not jobs
        open_capture["a"] = None
        sched.tick(soak, start + 11.5)  # the deferred fire time starts now
        await wait_until(lambda: runner.jobs and not jobs, 5)
        return sched

    sched = asyncio.run(main())
    actions = [e["action"] for e in sched.log]
    assert actions == ["defer", "start"]
    (job,) = runner.jobs
    assert (job.schedule, job.kind, job.trigger) == ("soak", "load", "schedule")
    assert ("soak", "deferred") in metrics.named("scheduled_run")
    lines = (cfg.serve.runs_dir / SCHEDULER_LOG).read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["defer", "start"]
    (status,) = sched.status("a")
    assert (status["name"], status["last_run_id"], status["missed"]) == ("soak", job.run_id, 0)
    assert sched.status("b") == []


# --------------------------------------------------------------------------- Trends


def row(run_id: str, started: float, *, pinned: bool = False, closed: bool = True) -> Any:
    return SimpleNamespace(
        run_id=run_id, started_ts=started, ended_ts=started + 1 if closed else None,
        state="closed" if closed else "open", pinned=pinned,
    )  # fmt: skip


class RowsIndex(FakeIndex):
    def __init__(self, rows: list[Any], told: list[Any] = ()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.rows, self.told = rows, list(told)

    def query(self, **kw: Any) -> list[Any]:
        return list(self.rows)

    def notifications(self, **kw: Any) -> list[Any]:
        return self.told


def test_trends_baseline_is_the_oldest_pinned_else_the_first(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    cfg = config(tmp_path, [{"name": "a", "url": URL, "canary_rate": 1}])
    rows = [row("r3", 30), row("r2", 20, pinned=True), row("r1", 10), row("r0", 5, closed=False)]
    trends = Trends(make_ctx(cfg, pool, index=RowsIndex(rows)))
    assert trends.baseline_of("s", "r9") == "r2"
    rows[1].pinned = False
    assert trends.baseline_of("s", "r9") == "r1"  # the open r0 is never a baseline
    assert trends.baseline_of("s", "r1") == "r2"  # never the run itself
    assert Trends(make_ctx(cfg, pool, index=RowsIndex([]))).baseline_of("s", "r1") is None


def test_trends_notify_each_regression_once(
    tmp_path: Path, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reports.trends

    found = [
        {"series": "p99_ms", "run_id": "r5", "change": 0.5},
        {"series": "error_rate", "run_id": "r5"},
    ]
    monkeypatch.setattr(reports.trends, "regressions", lambda series: list(found))
    monkeypatch.setattr(trends_mod.Trends, "schedule_trends", lambda self, name: [])
    cfg = config(tmp_path, [{"name": "a", "url": URL, "canary_rate": 1}])
    told_before = [SimpleNamespace(kind="regression", detail="error_rate", run_id="r5")]
    notes = Notes()
    trends = Trends(make_ctx(cfg, pool, index=RowsIndex([], told_before), notify=notes))
    trends.check_regressions("s", "a")
    trends.check_regressions("s", "a")
    assert notes.sent == [
        ("regression", "a", "r5", {"schedule": "s", "series": "p99_ms", "change": 0.5,
                                   "mean_before": None, "mean_after": None}),
    ]  # fmt: skip


def test_trends_after_run_checks_only_scheduled_runs_with_a_directory(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    cfg = config(tmp_path, [{"name": "a", "url": URL, "canary_rate": 1}])
    checked: list[str] = []

    class Counting(Trends):
        def compare_with_baseline(self, schedule: str, target: str, run_id: str) -> None:
            checked.append(run_id)

        def check_regressions(self, schedule: str, target: str) -> None:
            return None

    trends = Counting(make_ctx(cfg, pool))
    target, runs = cfg.target("a"), cfg.serve.runs_dir
    api = Job("r1", "load", target, runs, "api", 1.0)
    scheduled = Job("r2", "load", target, runs, "schedule", 1.0, schedule="s")
    trends.after_run(api, JobResult("r1", runs / "r1"))
    trends.after_run(scheduled, JobResult("r2", None))  # not even its directory was made
    trends.after_run(scheduled, JobResult("r2", runs / "r2"))
    pool.shutdown(wait=True)
    assert checked == ["r2"]


# --------------------------------------------------------------------------- RolloutRun


def test_rollout_run_holds_rows_and_events_until_its_directory_exists(tmp_path: Path) -> None:
    async def main() -> RolloutRun:
        run = RolloutRun("r", 0.0, "test", asyncio.get_running_loop().create_future())
        now = time.time()
        run.add(sample(now, "v1"))
        run.events.write("marker", "capture opened", ts=now)
        run.add(sample(now + 0.1, "v2"))
        made, writer = make_rollout_run(
            tmp_path, "r", target={}, settings={}, started_at=now, fields={"target_name": "a"}
        )
        run.attach(made, writer)
        run.add(sample(now + 0.2, "v2"))  # straight to the writer now
        run.events.write("marker", "capture closed", ts=now + 0.3)
        opened = await run.opened()
        assert opened.run is made
        writer.close()
        made.finish()
        return run

    run = asyncio.run(main())
    frame = read_samples(tmp_path / "r")
    assert frame["version"].astype(str).tolist() == ["v1", "v2", "v2"]
    statuses = [e["status"] for e in read_events(tmp_path / "r")]
    assert statuses == ["capture opened", "capture closed"]
    assert len(run.samples) == 3 and run.samples.seen == {"v1", "v2"}
    assert run.roles() == ("v1", "v2")  # the order callers saw, without the policy's roles
    run.baseline = "v2"
    assert run.roles() == ("v2", "v1")


def test_rollout_run_that_could_not_be_made_raises_to_whoever_closes_it() -> None:
    async def main() -> None:
        run = RolloutRun("r", 0.0, "test", asyncio.get_running_loop().create_future())
        run.add(sample(time.time()))
        run.fail(OSError(28, "No space left on device"))
        with pytest.raises(OSError, match="No space"):
            await run.opened()

    asyncio.run(main())


# --------------------------------------------------------------------------- RecentRollouts


def closed(run_id: str, versions: list[str], base: str, cand: str) -> ClosedRollout:
    n = len(versions)
    return ClosedRollout(
        run_id, base, cand, np.asarray(versions, dtype=object), np.full(n, 5.0),
        np.ones(n, dtype=bool), 0.0, 1.0, "completed",
    )  # fmt: skip


def test_recent_rollouts_judge_the_open_run_else_the_latest_with_the_asked_versions() -> None:
    recent = RecentRollouts("a", [])
    assert recent.verdict(None, None, None)["reason"] == "no rollout known"
    recent.add(closed("old", ["v1", "v2"] * 60, "v1", "v2"))
    recent.add(closed("new", ["v2", "v3"] * 60, "v2", "v3"))
    assert [r.run_id for r in recent] == ["new", "old"] and recent[0].run_id == "new"
    assert recent.verdict(None, None, None)["run_id"] == "new"
    assert recent.verdict(None, "v2", "v1")["run_id"] == "old"  # only old has v1
    assert recent.verdict(None, "v9", None)["reason"] == "no rollout known"

    class Open:
        run_id = "open"
        samples = SampleBuffer()
        started_ts = 0.0

        def roles(self) -> tuple[str | None, str | None]:
            return ("v3", "v4")

    for k in range(10):
        Open.samples.add(sample(k, "v3" if k % 2 else "v4"))
    body = recent.verdict(Open(), None, None)
    assert (body["run_id"], body["baseline"], body["candidate"]) == ("open", "v3", "v4")
    assert recent.verdict(Open(), None, "v1")["run_id"] == "old"  # the open run lacks v1
    # asked for candidate v1, no rollout judges it (old's baseline is v1: never "v1 -> v1")
    assert recent.verdict(Open(), "v1", None)["reason"] == "no rollout known"
    assert recent.kept_versions(Open()) == ["v1", "v2", "v3", "v4"]


def test_load_rollout_reads_a_closed_rollout_back(tmp_path: Path) -> None:
    made, writer = make_rollout_run(
        tmp_path, "r", target={}, settings={}, started_at=1.0, fields={}
    )
    writer.add_many([sample(1.0, "v1"), sample(2.0, "v2")])
    writer.close()
    made.finish()
    row = SimpleNamespace(run_id="r", from_version="v1", to_version="v2", started_ts=1.0,
                          ended_ts=None)  # fmt: skip
    rollout = load_rollout(tmp_path / "r", row)
    assert rollout is not None
    assert (rollout.baseline, rollout.candidate, rollout.ended_ts) == ("v1", "v2", 1.0)
    assert rollout.seen == {"v1", "v2"} and rollout.ok.tolist() == [True, True]
    missing = load_rollout(tmp_path / "missing", row)  # no samples: an empty rollout
    assert missing is not None and len(missing.ok) == 0


# --------------------------------------------------------------------------- PlatformWatch


def test_platform_watch_remembers_the_state_a_capture_starts_from(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    cfg = config(tmp_path, [{"name": "a", "url": URL, "canary_rate": 1}])
    seen: list[dict[str, Any]] = []
    watch = PlatformWatch(make_ctx(cfg, pool), cfg.target("a"), on_event=seen.append)
    events = [
        make_event("marker", "watch started", ts=1.0),
        make_event("proton", "ready", ts=2.0, proton_id="p2", role="candidate"),
        make_event("proton", "ready", ts=2.5, proton_id="p1", role="active"),
        make_event("workload", "ready", ts=3.0),
        make_event("replacement", "started", ts=4.0, replacement_id="x"),
        make_event("replacement", "started", ts=4.5, replacement_id="y"),
        make_event("replacement", "switching", ts=5.0, replacement_id="x"),
        make_event("proton", "removed", ts=6.0, proton_id="p2"),
    ]

    async def main() -> None:  # the watcher's thread hands events to the loop
        router = _EventRouter(asyncio.get_running_loop(), watch._event)
        for k, event in enumerate(events, start=1):
            fields = _fields(event)
            threading.Thread(target=lambda f=fields: router.write(**f)).start()
            await wait_until(lambda k=k: len(seen) == k, 5)

    asyncio.run(main())
    assert [e["ts"] for e in seen] == [e["ts"] for e in events]  # every event handed on
    snapshot = watch.snapshot("x")
    assert [(e["kind"], e["status"]) for e in snapshot] == [
        ("marker", "watch started"), ("workload", "ready"), ("proton", "ready"),
        ("replacement", "started"), ("replacement", "switching"),
    ]  # fmt: skip
    assert snapshot[2]["proton_id"] == "p1"  # p2 was removed
    assert watch.replacement_status("x") == "switching"
    assert watch.replacement_status("y") == "started" and watch.replacement_status("z") is None
    assert watch.stopped_marker() is None  # a url target has no watcher


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    """An event row as the watcher's ``write`` keywords."""
    return dict(event)


# --------------------------------------------------------------------------- segments


def test_a_segment_manifest_says_how_it_is_probed(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    cfg = config(tmp_path, [{"name": "a", "url": URL, "canary_rate": 2, "capture_rate": 20}])
    ctx = make_ctx(cfg, pool)
    target = cfg.target("a")
    segment = create_segment(ctx, target, target.request, 1000.0)
    assert segment is not None
    segment.writer.close()
    manifest = read_manifest(segment.run.path)
    assert manifest["kind"] == "canary" and manifest["trigger"] == "continuous"
    settings = manifest["settings"]
    probe = probe_settings(2.0, target.request)
    assert (settings["rate"], settings["capture_rate"]) == (2.0, 20.0)
    assert (
        settings["max_in_flight"]
        == probe.max_in_flight
        == max_in_flight(2.0, target.request.timeout)
    )
    assert settings["transport"] == probe.transport == "aiohttp"
    assert segment.ends_ts == segment_end(1000.0, cfg.serve.segment_s, "a")
    idle = config(tmp_path / "idle", [{"name": "b", "url": URL, "canary_rate": 0}])
    assert (
        create_segment(make_ctx(idle, pool), idle.target("b"), idle.target("b").request, 1.0)
        is None
    )
